"""quantize_transformer(model, "fp8_e4m3fn"): the official recipe, equal to loading an
fp8-scaled file; on CPU the fp8 matmul falls back to dequantise-then-matmul with one log line."""
import logging

import pytest
import torch

from hyvideo_core import load_transformer
from hyvideo_core.quant.passes import FP8Linear, fp8_matmul_unavailable, quantize_transformer
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_transformer, dit_inputs, fp8_scaled, official_state_dict, save

CFG = VARIANTS["tiny"].transformer


def test_fp8_pass_equals_loading_an_fp8_scaled_file(tmp_path, caplog):
    official = official_state_dict(diffusers_transformer(CFG))
    model = load_transformer(save(official, str(tmp_path / "m.safetensors")))
    with torch.no_grad():
        full = model(*dit_inputs(CFG))
    counts = quantize_transformer(model, "fp8_e4m3fn")
    assert counts["quantized"] == 2 * 10 + 2 * 3   # 10 linears per double block, 3 per single block
    assert isinstance(model.double_blocks[0].img_attn_qkv, FP8Linear)
    assert model.double_blocks[0].img_attn_qkv.weight.dtype == torch.float8_e4m3fn
    assert model.final_layer.linear.weight.dtype == torch.float32           # outside the blocks: untouched
    assert model.txt_in.individual_token_refiner.blocks[0].self_attn_qkv.weight.dtype == torch.float32
    loaded = load_transformer(save(fp8_scaled(official), str(tmp_path / "fp8.safetensors")))
    with caplog.at_level(logging.INFO, logger="hyvideo_core.quant.passes"), torch.no_grad():
        got = model(*dit_inputs(CFG))
        model(*dit_inputs(CFG))
    assert torch.equal(got, loaded(*dit_inputs(CFG)))
    assert 0 < (got - full).abs().max() < 0.05 * full.abs().max()
    fallback = [r for r in caplog.records if "fp8 matmul needs" in r.getMessage()]
    assert len(fallback) <= 1   # logged once per process (maybe already by an earlier test)
    assert fp8_matmul_unavailable(torch.device("cpu"))


def test_fp8_pass_is_idempotent_and_rejects_unknown_schemes(tmp_path):
    model = load_transformer(save(official_state_dict(diffusers_transformer(CFG)), str(tmp_path / "m.safetensors")))
    quantize_transformer(model)
    assert quantize_transformer(model) == {"quantized": 0, "skipped": 26}
    with pytest.raises(ValueError, match="fp8_e4m3fn"):
        quantize_transformer(model, "int4")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or fp8_matmul_unavailable(torch.device("cuda")) is not None,
                    reason="needs a CUDA GPU with compute capability >= 8.9")
def test_scaled_mm_close_to_dequantized():
    layer = torch.nn.Linear(256, 512).cuda().bfloat16()
    quantize_transformer(torch.nn.ModuleDict({"double_blocks": torch.nn.ModuleList([layer])}))
    x = torch.randn(4, 300, 256, device="cuda", dtype=torch.bfloat16)
    fast = layer(x)
    layer.fp8_matmul = False
    torch.testing.assert_close(fast, layer(x), atol=0.1, rtol=0.1)
