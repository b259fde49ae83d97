"""Our transformer, loaded from every supported layout, against diffusers' reference."""
import pytest
import torch

from hyvideo_core import load_transformer
from hyvideo_core.checkpoints.layouts import DIFFUSERS, from_native
from hyvideo_core.variants import VARIANTS
from tests.reference_models import (dequantized, diffusers_forward, diffusers_transformer, dit_inputs,
                                    fp8_scaled, official_state_dict, save)

pytestmark = pytest.mark.parity

# application variants (avatar) carry their own modules; their parity is against the official code (tests/avatar)
TEST_VARIANTS = [name for name, spec in VARIANTS.items() if spec.is_test_variant and spec.app is None]


def _files(tmp_path, reference):
    official = official_state_dict(reference)
    return {
        "official.safetensors": official,
        "official.pt": official,
        "comfyui_diffusion_model.safetensors": {f"model.diffusion_model.{k}": v for k, v in official.items()},
        "comfyui_saved.safetensors": {f"model.model.{k}": v for k, v in official.items()},
        "diffusers.safetensors": reference.state_dict(),
    }


@pytest.mark.parametrize("variant", TEST_VARIANTS)
@pytest.mark.parametrize("layout", ["official.safetensors", "official.pt", "comfyui_diffusion_model.safetensors",
                                    "comfyui_saved.safetensors", "diffusers.safetensors"])
def test_matches_diffusers_in_every_layout(tmp_path, variant, layout):
    cfg = VARIANTS[variant].transformer
    reference = diffusers_transformer(cfg)
    path = save(_files(tmp_path, reference)[layout], str(tmp_path / layout))
    model = load_transformer(path)
    assert model.variant == variant
    inputs = dit_inputs(cfg)
    expected = diffusers_forward(reference, *inputs)
    with torch.no_grad():
        got = model(*inputs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", TEST_VARIANTS)
def test_fp8_scaled_matches_dequantized_reference(tmp_path, variant):
    cfg = VARIANTS[variant].transformer
    reference = diffusers_transformer(cfg)
    fp8 = fp8_scaled(official_state_dict(reference))
    path = save({f"model.diffusion_model.{k}": v for k, v in fp8.items()}, str(tmp_path / "fp8_scaled.safetensors"))
    model = load_transformer(path)
    # storage stays fp8; each layer dequantizes on the fly
    assert model.double_blocks[0].img_attn_qkv.weight.dtype == torch.float8_e4m3fn
    reference.load_state_dict(from_native(dequantized(fp8), DIFFUSERS, cfg))
    inputs = dit_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), diffusers_forward(reference, *inputs), atol=1e-4, rtol=0)


def test_bf16_file_keeps_storage_and_computes_fp32_on_cpu(tmp_path):
    cfg = VARIANTS["tiny"].transformer
    reference = diffusers_transformer(cfg)
    official = {k: v.to(torch.bfloat16) for k, v in official_state_dict(reference).items()}
    model = load_transformer(save(official, str(tmp_path / "bf16.safetensors")))
    assert model.single_blocks[0].linear1.weight.dtype == torch.bfloat16
    assert model.compute_dtype == torch.float32
    reference.load_state_dict(from_native({k: v.float() for k, v in official.items()}, DIFFUSERS, cfg))
    inputs = dit_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), diffusers_forward(reference, *inputs), atol=1e-4, rtol=0)
