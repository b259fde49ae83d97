"""Full-size variants built on the meta device against the official key table
(shared/spec/official_t2v.md §1.2), written out here independently of the model code."""
import pytest
import torch

from hyvideo_core.checkpoints.io import DictSource
from hyvideo_core.checkpoints.layouts import LAYOUTS, NativeView, from_native
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.variants import VARIANTS


def official_13b_shapes(guidance: bool):
    D, M, T, P = 3072, 12288, 4096, 768
    wb = lambda name, out, inp: {f"{name}.weight": (out, inp), f"{name}.bias": (out,)}
    shapes = {"img_in.proj.weight": (D, 16, 1, 2, 2), "img_in.proj.bias": (D,)}
    shapes |= wb("txt_in.input_embedder", D, T) | wb("txt_in.t_embedder.mlp.0", D, 256) | wb("txt_in.t_embedder.mlp.2", D, D)
    shapes |= wb("txt_in.c_embedder.linear_1", D, T) | wb("txt_in.c_embedder.linear_2", D, D)
    for i in range(2):
        p = f"txt_in.individual_token_refiner.blocks.{i}."
        shapes |= {p + "norm1.weight": (D,), p + "norm1.bias": (D,), p + "norm2.weight": (D,), p + "norm2.bias": (D,)}
        shapes |= wb(p + "self_attn_qkv", 3 * D, D) | wb(p + "self_attn_proj", D, D)
        shapes |= wb(p + "mlp.fc1", M, D) | wb(p + "mlp.fc2", D, M) | wb(p + "adaLN_modulation.1", 2 * D, D)
    shapes |= wb("time_in.mlp.0", D, 256) | wb("time_in.mlp.2", D, D)
    shapes |= wb("vector_in.in_layer", D, P) | wb("vector_in.out_layer", D, D)
    if guidance:
        shapes |= wb("guidance_in.mlp.0", D, 256) | wb("guidance_in.mlp.2", D, D)
    shapes |= wb("final_layer.linear", 64, D) | wb("final_layer.adaLN_modulation.1", 2 * D, D)
    for i in range(20):
        for s in ("img", "txt"):
            p = f"double_blocks.{i}.{s}_"
            shapes |= wb(p + "mod.linear", 6 * D, D) | wb(p + "attn_qkv", 3 * D, D) | wb(p + "attn_proj", D, D)
            shapes |= wb(p + "mlp.fc1", M, D) | wb(p + "mlp.fc2", D, M)
            shapes |= {p + "attn_q_norm.weight": (128,), p + "attn_k_norm.weight": (128,)}
    for i in range(40):
        p = f"single_blocks.{i}."
        shapes |= wb(p + "linear1", 3 * D + M, D) | wb(p + "linear2", D, D + M) | wb(p + "modulation.linear", 3 * D, D)
        shapes |= {p + "q_norm.weight": (128,), p + "k_norm.weight": (128,)}
    return shapes


@pytest.mark.parametrize("variant,guidance,keys,params", [
    ("t2v-720p-cfgdistill", True, 856, 12_821_012_544),
    ("t2v-720p", False, 852, 12_810_782_784),
])
def test_full_size_transformer_matches_official_keys(variant, guidance, keys, params):
    with torch.device("meta"):
        model = HunyuanVideoTransformer(VARIANTS[variant].transformer)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_13b_shapes(guidance)
    assert len(got) == keys
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "official"])
def test_layout_tables_round_trip(variant, layout):
    """from_native then the lazy native view is the identity, on full-size shapes too."""
    cfg = VARIANTS[variant].transformer
    with torch.device("meta"):
        native = HunyuanVideoTransformer(cfg).state_dict()
    foreign = from_native(native, LAYOUTS[layout], cfg)
    back = NativeView(DictSource(foreign), LAYOUTS[layout])
    assert sorted(back.keys()) == sorted(native)
    assert all(tuple(back.shape(k)) == tuple(native[k].shape) for k in native)


def test_diffusers_key_count_for_13b():
    cfg = VARIANTS["t2v-720p-cfgdistill"].transformer
    with torch.device("meta"):
        native = HunyuanVideoTransformer(cfg).state_dict()
    foreign = from_native(native, LAYOUTS["diffusers"], cfg)
    assert len(foreign) == 1264   # shared/spec/diffusers_parity.md §1.1
    assert foreign["single_transformer_blocks.0.proj_mlp.weight"].shape == (12288, 3072)
    assert foreign["norm_out.linear.weight"].shape == (6144, 3072)


def test_round_trip_values_on_tiny():
    cfg = VARIANTS["tiny"].transformer
    native = HunyuanVideoTransformer(cfg).state_dict()
    back = NativeView(DictSource(from_native(native, LAYOUTS["diffusers"], cfg)), LAYOUTS["diffusers"])
    for k, v in native.items():
        assert torch.equal(back.get(k), v), k
