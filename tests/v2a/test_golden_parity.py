"""Our Foley DiT against the official code, through the committed golden fixture
(tests/v2a/foley_golden.safetensors, recorded by tests/v2a/make_golden_fixture.py from the official
HunyuanVideo-Foley at the commit named in its metadata). Runs without the official source.

The fixture's state dict goes through ``load_foley`` as a ``.pth`` file (identity key map, every
key used, variant detected from shapes); forward passes and a 3-step CFG sample must match the
official outputs at 1e-4 in float32. Random weights everywhere make each quirk count: the
interleaved audio/visual RoPE, both qkv layouts, the inert final adaLN (its weights are random and
must not act), the learned empty features of the CFG negative.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.golden_files import read_fixture

from hyvideo_core.v2a.load import load_foley
from hyvideo_core.v2a.sample import FoleyConditions, sample_audio_latents

FIXTURE = Path(__file__).resolve().parent / "foley_golden.safetensors"
TOL = 1e-4


def _fixture():
    return read_fixture(FIXTURE)


@pytest.fixture(scope="module")
def golden():
    return _fixture()


@pytest.fixture(scope="module")
def model(golden, tmp_path_factory):
    tensors, _ = golden
    path = tmp_path_factory.mktemp("foley") / "hunyuanvideo_foley_tiny.pth"
    torch.save({k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}, path)
    return load_foley(path, attention_backend="sdpa")


def test_fixture_is_small_and_names_the_official_commit(golden):
    _, metadata = golden
    assert FIXTURE.stat().st_size <= 2 * 1024 * 1024
    assert metadata["official_repo"] == "Tencent-Hunyuan/HunyuanVideo-Foley"
    assert len(metadata["official_commit"]) == 40


def test_official_state_dict_loads_with_identity_map(model, golden):
    tensors, _ = golden
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    assert model.variant == "foley-tiny"
    ours = model.state_dict()
    assert sorted(ours) == sorted(state)
    assert all(torch.equal(ours[k], v) for k, v in state.items())


@pytest.mark.parametrize("case", ["fwd_a", "fwd_b"])
def test_forward_matches_official(model, golden, case):
    tensors, _ = golden
    g = lambda name: tensors[f"{case}.{name}"]  # noqa: E731
    with torch.no_grad():
        out = model(g("x"), g("t"), g("visual"), g("text"), g("sync"))
    expected = g("out")
    assert expected.abs().mean() > 0.1   # a real signal, not a zero output that anything would match
    torch.testing.assert_close(out, expected, rtol=0, atol=TOL)


def test_final_adaln_is_inert_as_released(model, golden):
    """The released final layer ignores its adaLN (spec §E.11); applying it would change the output."""
    tensors, _ = golden
    g = lambda name: tensors[f"fwd_b.{name}"]  # noqa: E731
    final = model.final_layer
    with torch.no_grad():
        audio = torch.randn(1, 6, model.config.hidden_size)
        shift, scale = final.adaLN_modulation(torch.randn(1, 6, model.config.hidden_size)).chunk(2, -1)
        applied = final.linear(torch.nn.functional.layer_norm(audio, audio.shape[-1:], eps=1e-6) * (1 + scale) + shift)
        assert (applied - final(audio)).abs().max() > 0.1   # the weights would act if applied
        out = model(g("x"), g("t"), g("visual"), g("text"), g("sync"))
    torch.testing.assert_close(out, g("out"), rtol=0, atol=TOL)


def test_three_step_cfg_sample_matches_official(model, golden):
    tensors, _ = golden
    g = lambda name: tensors[f"sample.{name}"]  # noqa: E731
    cond = FoleyConditions(g("visual"), g("sync"), g("text"))
    with torch.no_grad():
        out = sample_audio_latents(model, g("noise"), cond, g("negative_text"), steps=3, shift=1.0, cfg_scale=4.5)
    expected = g("out")
    assert expected.abs().mean() > 0.1
    torch.testing.assert_close(out, expected, rtol=0, atol=TOL)
    # the learned empty features take part: with other values the sample differs
    saved = model.empty_clip_feat.detach().clone(), model.empty_sync_feat.detach().clone()
    try:
        with torch.no_grad():
            model.empty_clip_feat.zero_()
            model.empty_sync_feat.zero_()
            zero_empty = sample_audio_latents(model, g("noise"), cond, g("negative_text"), steps=3, cfg_scale=4.5)
    finally:
        with torch.no_grad():
            model.empty_clip_feat.copy_(saved[0])
            model.empty_sync_feat.copy_(saved[1])
    assert (zero_empty - expected).abs().max() > 1e-2

OFFICIAL = os.environ.get("HUNYUANVIDEO_FOLEY_SRC")


@pytest.mark.slow
@pytest.mark.skipif(not OFFICIAL, reason="set HUNYUANVIDEO_FOLEY_SRC to a checkout/export of "
                                         "Tencent-Hunyuan/HunyuanVideo-Foley to re-record the fixture")
def test_fixture_rerecords_identically_from_the_official_source(tmp_path, golden):
    """The committed fixture is what the script makes from the official code (run as its own process:
    the script puts stand-in modules into sys.modules)."""
    tensors, metadata = golden
    out = tmp_path / "again.safetensors"
    script = Path(__file__).resolve().parent / "make_golden_fixture.py"
    subprocess.run([sys.executable, str(script), OFFICIAL, "--commit", metadata["official_commit"], "--out", str(out)],
                   check=True)
    again, _ = read_fixture(out)
    assert sorted(again) == sorted(tensors)
    for k, v in tensors.items():
        torch.testing.assert_close(again[k], v, rtol=0, atol=1e-6, msg=k)
