import logging

import pytest
import torch

from hyvideo_core.attention import (_varlen_segments, attention, available_backends, reference_attention,
                                    resolve_backend)
from hyvideo_core.errors import BackendUnavailableError


def _qkv(b=2, length=10, heads=3, dim=16):
    return [torch.randn(b, length, heads, dim) for _ in range(3)]


@pytest.mark.parametrize("backend", [n for n, why in available_backends("cpu").items() if why is None])
def test_usable_backends_match_reference(backend):
    q, k, v = _qkv()
    key_mask = torch.ones(2, 10, dtype=torch.bool)
    key_mask[1, 6:] = False
    full = key_mask[:, None, :, None] & key_mask[:, None, None, :]
    full[..., 0] = True
    for mask in (None, key_mask, full):
        torch.testing.assert_close(attention(q, k, v, mask=mask, backend=backend),
                                   reference_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)


def test_masked_keys_have_no_influence():
    q, k, v = _qkv(b=1)
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 7:] = False
    k2, v2 = k.clone(), v.clone()
    k2[:, 7:], v2[:, 7:] = 100.0, -100.0
    torch.testing.assert_close(attention(q, k, v, mask=mask), attention(q, k2, v2, mask=mask))


def test_unavailable_backends_say_why_and_fall_back_once(caplog):
    reasons = available_backends("cpu")
    assert reasons["sdpa"] is None and reasons["reference"] is None
    assert "CUDA" in reasons["flash_varlen"] or "not installed" in reasons["flash_varlen"]
    q, k, v = _qkv()
    with caplog.at_level(logging.WARNING, logger="hyvideo_core.attention"):
        for _ in range(3):
            out = attention(q, k, v, backend="sage")
    fallback_lines = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(fallback_lines) <= 1   # one line per process, not per call
    torch.testing.assert_close(out, reference_attention(q, k, v), atol=1e-5, rtol=1e-5)
    with pytest.raises(BackendUnavailableError, match="sage"):
        resolve_backend("sage", torch.device("cpu"), strict=True)
    with pytest.raises(BackendUnavailableError, match="registered"):
        resolve_backend("xformers-please", torch.device("cpu"))


def test_varlen_segments_follow_the_official_split():
    # 2 samples of length L = 118800 image + 256 text, with 11 and 256 valid text tokens
    length, img = 118800 + 256, 118800
    mask = torch.zeros(2, length, dtype=torch.bool)
    mask[0, : img + 11] = True
    mask[1] = True
    cu = _varlen_segments(mask, 2, length, "cpu")
    assert cu.tolist() == [0, 118811, length, 2 * length, 2 * length]


@pytest.mark.parametrize("backend", [n for n, why in available_backends("cpu").items() if why is None])
def test_cross_attention_queries_and_keys_of_different_lengths(backend):
    q = torch.randn(2, 7, 3, 16)
    k, v = torch.randn(2, 5, 3, 16), torch.randn(2, 5, 3, 16)
    key_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    for mask in (None, key_mask):
        out = attention(q, k, v, mask=mask, backend=backend)
        assert out.shape == (2, 7, 3, 16)
        torch.testing.assert_close(out, reference_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)


def _varlen_oracle(q, k, v, cu_q, cu_k, max_q, max_k):
    """What flash_attn_varlen_func computes: attention within each (query, key) segment pair."""
    out = torch.zeros_like(q)
    for i in range(len(cu_q) - 1):
        qs, ks = slice(int(cu_q[i]), int(cu_q[i + 1])), slice(int(cu_k[i]), int(cu_k[i + 1]))
        if ks.stop > ks.start and qs.stop > qs.start:
            out[qs] = reference_attention(q[None, qs], k[None, ks], v[None, ks])[0]
    return out


def test_flash_varlen_packing_for_cross_attention(monkeypatch):
    """The varlen path's segment and key packing, run against a reference varlen kernel (flash-attn
    itself needs CUDA): cross-attention with padded keys equals masked reference attention."""
    import sys
    import types

    from hyvideo_core.attention import flash_varlen_attention

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=_varlen_oracle))
    q, k, v = torch.randn(2, 7, 3, 16), torch.randn(2, 5, 3, 16), torch.randn(2, 5, 3, 16)
    key_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    for mask in (None, key_mask):
        torch.testing.assert_close(flash_varlen_attention(q, k, v, mask), reference_attention(q, k, v, mask),
                                   atol=1e-5, rtol=1e-5)
