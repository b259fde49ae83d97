"""LoRA pass: inject/merge equivalence, file formats round trip, fused q/k/v composition, errors."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from hyvideo_core.errors import IncompatibleWeightsError
from hyvideo_core.finetune.lora import (DEFAULT_TARGETS, FORMATS, LoRAWeights, apply_lora, detect_lora_format,
                                        extract_lora, inject_lora, load_lora, lora_parameters, merge_lora, read_lora,
                                        save_lora)
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.variants import get_variant


def _model(variant="tiny", seed=0):
    torch.manual_seed(seed)
    m = HunyuanVideoTransformer(get_variant(variant).transformer).eval()
    m.variant = variant
    return m


def _inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 4, 2, 4, 4, generator=g), torch.tensor([400.0]), torch.randn(1, 5, 32, generator=g), None,
            torch.randn(1, 16, generator=g), torch.tensor([6000.0]))


def _with_random_lora(targets=DEFAULT_TARGETS, rank=4):
    m = _model()
    inject_lora(m, rank=rank, alpha=2 * rank, targets=targets)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in lora_parameters(m):
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m


@torch.no_grad()
def test_zero_init_keeps_the_model_and_keys():
    m, ref = _model(), _model()
    names = inject_lora(m, rank=4)
    assert torch.equal(m(*_inputs()), ref(*_inputs()))
    assert "double_blocks.0.img_attn_qkv.weight" in m.state_dict()
    assert "double_blocks.0.img_attn_qkv.lora_A.weight" in m.state_dict()
    assert all(not p.requires_grad for n, p in m.named_parameters() if "lora_" not in n)
    assert "txt_in.individual_token_refiner.blocks.0.mlp.fc1" in names and "final_layer.linear" in names


@torch.no_grad()
def test_merge_equals_unmerged_adapters():
    m = _with_random_lora()
    y = m(*_inputs())
    assert not torch.allclose(y, _model()(*_inputs()), atol=1e-3)
    merge_lora(m)
    assert not any("lora" in k for k in m.state_dict())
    assert torch.allclose(m(*_inputs()), y, atol=2e-5)


def test_official_i2v_target_count_on_the_13b_config():
    """The released I2V LoRA recipe adapts 325 layers with 326,569,984 parameters at rank 64."""
    with torch.device("meta"):
        m = HunyuanVideoTransformer(get_variant("t2v-720p").transformer)
    names = inject_lora(m, rank=64)
    assert len(names) == 325
    assert sum(p.numel() for p in lora_parameters(m)) == 326_569_984


@pytest.mark.parametrize("fmt", FORMATS)
@torch.no_grad()
def test_save_load_round_trip(tmp_path, fmt):
    m = _with_random_lora(targets=DEFAULT_TARGETS + ("self_attn_qkv", "adaLN_modulation.1"))
    y, weights = m(*_inputs()), extract_lora(m)
    path = tmp_path / f"{fmt}.safetensors"
    save_lora(m, path, fmt=fmt)
    keys = list(load_file(str(path)))
    assert detect_lora_format(keys) == fmt
    example = {"comfyui": "diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight",
               "kohya": "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",
               "official_i2v": "Hunyuan_video_I2V_lora_double_blocks_0_img_attn_qkv.lora_down.weight",
               "diffusers": "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"}[fmt]
    assert example in keys
    fresh = _model()
    read = read_lora(path, fresh)
    assert set(read) == set(weights)
    for n in weights:
        assert torch.allclose(read[n].delta(), weights[n].delta(), atol=1e-6)
    load_lora(path, fresh)
    assert torch.allclose(fresh(*_inputs()), y, atol=2e-5)


@torch.no_grad()
def test_diffusers_separate_qkv_loras_compose_block_diagonally(tmp_path):
    """Independent to_q / to_k / to_v (and proj_mlp) adapters become one exact LoRA of the fused layer."""
    g = torch.Generator().manual_seed(3)
    d, mlp = 48, 192
    tensors, pieces = {}, {}
    for name, out, r in (("attn.to_q", d, 2), ("attn.to_k", d, 3), ("attn.to_v", d, 2), ("proj_mlp", mlp, 4)):
        a, b = torch.randn(r, d, generator=g), torch.randn(out, r, generator=g)
        tensors[f"transformer.single_transformer_blocks.1.{name}.lora_A.weight"] = a
        tensors[f"transformer.single_transformer_blocks.1.{name}.lora_B.weight"] = b
        pieces[name] = b @ a
    tensors["transformer.transformer_blocks.0.attn.to_k.lora_A.weight"] = torch.randn(2, d, generator=g)
    tensors["transformer.transformer_blocks.0.attn.to_k.lora_B.weight"] = kb = torch.randn(d, 2, generator=g)
    save_file(tensors, str(tmp_path / "d.safetensors"))
    m = _model()
    read = read_lora(tmp_path / "d.safetensors", m)
    fused = read["single_blocks.1.linear1"].delta()
    expected = torch.cat([pieces["attn.to_q"], pieces["attn.to_k"], pieces["attn.to_v"], pieces["proj_mlp"]], 0)
    assert torch.allclose(fused, expected, atol=1e-5)
    qkv = read["double_blocks.0.img_attn_qkv"].delta()
    assert torch.equal(qkv[:d], torch.zeros(d, d)) and torch.equal(qkv[2 * d:], torch.zeros(d, d))
    assert torch.allclose(qkv[d:2 * d], kb @ tensors["transformer.transformer_blocks.0.attn.to_k.lora_A.weight"], atol=1e-6)


def test_lora_for_another_model_is_a_clear_error(tmp_path):
    m = _with_random_lora()
    save_lora(m, tmp_path / "tiny.safetensors")
    with pytest.raises(IncompatibleWeightsError, match="different model size"):
        load_lora(tmp_path / "tiny.safetensors", _model("toy"))
    save_file({"lora_unet_blocks_0_self_attn_q.lora_down.weight": torch.zeros(4, 48),
               "lora_unet_blocks_0_self_attn_q.lora_up.weight": torch.zeros(48, 4)}, str(tmp_path / "wan.safetensors"))
    with pytest.raises(IncompatibleWeightsError, match="another model architecture"):
        load_lora(tmp_path / "wan.safetensors", _model())
    save_file({"diffusion_model.blocks.0.ffn.0.lora_A.weight": torch.zeros(4, 48),
               "diffusion_model.blocks.0.ffn.0.lora_B.weight": torch.zeros(48, 4)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(IncompatibleWeightsError, match="does not have"):
        load_lora(tmp_path / "other.safetensors", _model())


@torch.no_grad()
def test_strength_and_unmerged_application():
    m = _with_random_lora()
    w = extract_lora(m)
    base = _model()
    y0 = base(*_inputs())
    half = _model()
    apply_lora(half, w, strength=0.5, merge=False)
    full = _model()
    apply_lora(full, w, strength=1.0, merge=True)
    y_half, y_full = half(*_inputs()), full(*_inputs())
    assert not torch.allclose(y_half, y0, atol=1e-4) and not torch.allclose(y_half, y_full, atol=1e-4)


@torch.no_grad()
def test_with_lora_returns_a_new_model_and_leaves_the_input_alone():
    from hyvideo_core.finetune.lora import lora_layers, with_lora

    w = extract_lora(_with_random_lora())
    base = _model()
    y0 = base(*_inputs())
    patched = with_lora(base, w, strength=1.0)
    merged = _model()
    apply_lora(merged, w, strength=1.0)
    assert torch.allclose(patched(*_inputs()), merged(*_inputs()), atol=2e-5)
    assert not lora_layers(base) and torch.equal(base(*_inputs()), y0)          # input untouched
    assert patched.double_blocks[0].img_attn_qkv.weight is base.double_blocks[0].img_attn_qkv.weight   # shared
    assert patched.img_in is base.img_in                                                               # untouched part
    assert with_lora(base, w, strength=0.0) is base                             # strength 0: exactly the base
    stacked = with_lora(patched, w, strength=0.5)                               # a second LoRA on top adds up
    reference = _model()
    apply_lora(reference, w, strength=1.5)
    assert torch.allclose(stacked(*_inputs()), reference(*_inputs()), atol=2e-5)
    assert torch.allclose(patched(*_inputs()), merged(*_inputs()), atol=2e-5)   # the first one unchanged
    with pytest.raises(IncompatibleWeightsError, match="different model size"):
        with_lora(_model("toy"), w)


@pytest.mark.parametrize("kind", ["block_swap", "fp8", "gguf"])
@torch.no_grad()
def test_with_lora_on_swapped_and_quantized_models(tmp_path, kind):
    from hyvideo_core import load_transformer
    from hyvideo_core.demo_models import ensure_demo_models
    from hyvideo_core.finetune.lora import with_lora
    from hyvideo_core.runtime.options import MemoryOptions, prepare_transformer

    path = ensure_demo_models().transformer
    w = extract_lora(_with_random_lora())
    if kind == "gguf":
        from hyvideo_core.quant.gguf.writer import write_gguf
        write_gguf(load_transformer(path).state_dict(), tmp_path / "t.gguf", "Q8_0")
        model = load_transformer(tmp_path / "t.gguf")
    else:
        memory = (MemoryOptions(block_swap="manual", swap_double=1, swap_single=1, store="disk") if kind == "block_swap"
                  else MemoryOptions(quantize="fp8_e4m3fn"))
        model = prepare_transformer(path, "cpu", memory=memory)
    base, reference = load_transformer(path), load_transformer(path)
    apply_lora(reference, w)
    y0 = model(*_inputs())
    effect = with_lora(model, w)(*_inputs()) - y0
    expected = reference(*_inputs()) - base(*_inputs())
    tolerance = 2e-5 if kind == "block_swap" else 0.05 * float(expected.abs().max())   # quantization noise
    assert float((effect - expected).abs().max()) < tolerance
    assert torch.equal(model(*_inputs()), y0)
    if kind == "block_swap":
        model.block_swap.remove()          # closes (and deletes) the swap file
