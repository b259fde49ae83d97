"""``load_foley`` on the file forms a Foley model comes in: ``.pth`` and ``.safetensors``, bf16 storage
computed in float32 on CPU, a wrapper prefix, an explicit dtype."""
import pytest
import torch
from safetensors.torch import save_file

import hyvideo_core
from hyvideo_core.v2a.config import FOLEY_VARIANTS
from hyvideo_core.v2a.model import HunyuanVideoFoley

CFG = FOLEY_VARIANTS["foley-tiny"].model


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(3)
    model = HunyuanVideoFoley(CFG).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.randn_like(p) / max(1, p[0].numel()) ** 0.5).bfloat16().float())  # bf16-exact values
    return model


def _inputs():
    torch.manual_seed(4)
    return (torch.randn(2, CFG.audio_latent_dim, 12), torch.tensor([900.0, 50.0]), torch.randn(2, 5, CFG.visual_dim),
            torch.randn(2, 3, CFG.text_dim), torch.randn(2, 16, CFG.sync_dim))


def test_bf16_safetensors_under_a_prefix_computes_in_float32(tmp_path, reference):
    path = tmp_path / "foley_bf16.safetensors"
    save_file({f"model.diffusion_model.{k}": v.bfloat16() for k, v in reference.state_dict().items()}, str(path))
    model = hyvideo_core.load_foley(path)
    assert model.variant == "foley-tiny" and model.compute_dtype == torch.float32
    assert model.triple_blocks[0].audio_self_attn_qkv.weight.dtype == torch.bfloat16   # kept as stored
    with torch.no_grad():
        torch.testing.assert_close(model(*_inputs()), reference(*_inputs()), rtol=0, atol=1e-5)


def test_explicit_dtype_converts_every_weight(tmp_path, reference):
    path = tmp_path / "hunyuanvideo_foley.pth"
    torch.save(reference.state_dict(), path)
    model = hyvideo_core.load_foley(path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        out, expected = model(*_inputs()), reference(*_inputs())
    assert out.dtype == torch.bfloat16
    assert (out.float() - expected).abs().max() < 0.1 * expected.abs().max()
