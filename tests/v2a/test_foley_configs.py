"""Full-size Foley variants on the meta device against the official key table
(shared/spec/official_apps.md §C.1), written out here independently of the model code; and the
passes that read a model's declared block lists (fp8, block swap) on the tiny variant."""
import pytest
import torch

from hyvideo_core.model.block_lists import all_blocks
from hyvideo_core.quant.passes import quantize_transformer
from hyvideo_core.runtime.offload import enable_block_swap
from hyvideo_core.v2a.config import FOLEY_VARIANTS
from hyvideo_core.v2a.layers import DefaultEpsRMSNorm
from hyvideo_core.v2a.model import HunyuanVideoFoley


def official_foley_shapes(H: int, triple: int, single: int, conv_hidden: int):
    wb = lambda name, out, inp: {f"{name}.weight": (out, inp), f"{name}.bias": (out,)}  # noqa: E731
    shapes = {"sync_pos_emb": (1, 1, 8, 768), "empty_clip_feat": (1, 768), "empty_sync_feat": (1, 768),
              "audio_embedder.proj.weight": (H, 128, 1), "audio_embedder.proj.bias": (H,),
              "visual_proj.w1.weight": (H, 768), "visual_proj.w2.weight": (H, H), "visual_proj.w3.weight": (H, 768),
              "sync_in.2.w1.weight": (conv_hidden, H, 1), "sync_in.2.w2.weight": (H, conv_hidden, 1),
              "sync_in.2.w3.weight": (conv_hidden, H, 1)}
    shapes |= wb("cond_in.linear_1", H, 768) | wb("cond_in.linear_2", H, H)
    shapes |= wb("time_in.mlp.0", H, 256) | wb("time_in.mlp.2", H, H) | wb("sync_in.0", H, 768)
    for i in range(triple):
        p = f"triple_blocks.{i}."
        for s in ("audio_", "v_cond_"):
            shapes |= wb(p + s + "mod.linear", 9 * H, H) | wb(p + s + "cross_q", H, H) | wb(p + s + "cross_proj", H, H)
            shapes |= wb(p + s + "mlp.fc1", 4 * H, H) | wb(p + s + "mlp.fc2", H, 4 * H)
            shapes[p + s + "cross_q_norm.weight"] = (128,)
        shapes |= wb(p + "audio_self_attn_qkv", 3 * H, H) | wb(p + "v_cond_attn_qkv", 3 * H, H)
        shapes |= wb(p + "audio_self_proj", H, H) | wb(p + "v_cond_self_proj", H, H) | wb(p + "text_cross_kv", 2 * H, H)
        for norm in ("audio_self_q_norm", "audio_self_k_norm", "v_cond_attn_q_norm", "v_cond_attn_k_norm",
                     "text_cross_k_norm"):
            shapes[p + norm + ".weight"] = (128,)
    for i in range(single):
        p = f"single_blocks.{i}."
        shapes |= wb(p + "modulation.linear", 6 * H, H) | wb(p + "linear_qkv", 3 * H, H)
        shapes |= {p + "linear1.weight": (H, H, 3), p + "linear1.bias": (H,), p + "q_norm.weight": (128,),
                   p + "k_norm.weight": (128,), p + "linear2.w1.weight": (conv_hidden, H, 3),
                   p + "linear2.w2.weight": (H, conv_hidden, 3), p + "linear2.w3.weight": (conv_hidden, H, 3)}
    shapes |= wb("final_layer.linear", 128, H) | wb("final_layer.adaLN_modulation.1", 2 * H, H)
    return shapes


@pytest.mark.parametrize("variant,H,triple,single,conv_hidden,keys,params", [
    ("foley-xxl", 1536, 18, 36, 4096, 1087, 5_134_014_848),
    ("foley-xl", 1408, 12, 24, 3840, 733, 2_912_962_688),
])
def test_full_size_foley_matches_official_keys(variant, H, triple, single, conv_hidden, keys, params):
    with torch.device("meta"):
        model = HunyuanVideoFoley(FOLEY_VARIANTS[variant].model)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_foley_shapes(H, triple, single, conv_hidden)
    assert len(got) == keys
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_single_block_qk_norm_epsilon_is_torch_default(dtype):
    """The release builds torch.nn.RMSNorm(eps=None): ours must give what torch's module gives, also for
    half-precision inputs whose own machine epsilon (7.8e-3 for bf16) would change small vectors a lot."""
    ours, theirs = DefaultEpsRMSNorm(8), torch.nn.RMSNorm(8)
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(0.5, 1.5, 8))
        theirs.weight.copy_(ours.weight)
    x = (torch.randn(3, 8) * 0.02).to(dtype)   # small values: a different epsilon would show
    out = ours.to(dtype)(x)
    assert out.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(out.float(), theirs.to(dtype)(x).float(), rtol=tol, atol=tol)


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = HunyuanVideoFoley(FOLEY_VARIANTS["foley-tiny"].model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) / max(1, p[0].numel()) ** 0.5)
    return model


def _inputs(b=1, la=10):
    cfg = FOLEY_VARIANTS["foley-tiny"].model
    return (torch.randn(b, cfg.audio_latent_dim, la), torch.full((b,), 700.0), torch.randn(b, 3, cfg.visual_dim),
            torch.randn(b, 4, cfg.text_dim), torch.randn(b, 8, cfg.sync_dim))


def test_declared_block_lists_drive_fp8_and_block_swap():
    model = _tiny()
    inputs = _inputs()
    with torch.no_grad():
        reference = model(*inputs)
    assert len(all_blocks(model)) == 4
    swap = enable_block_swap(model, (1, 1), device="cpu", prefetch=False)
    with torch.no_grad():
        swapped = model(*inputs)
    assert swap.loads == 2
    swap.remove()
    torch.testing.assert_close(swapped, reference, rtol=0, atol=0)
    counts = quantize_transformer(model, "fp8_e4m3fn", fp8_matmul=False)
    # per triple block 15 Linear (2 mod, 2 qkv, 2 self proj, 2 cross q, text kv, 2 cross proj, 4 MLP);
    # per single block 2 Linear (modulation, qkv) + 4 Conv1d (output projection, the FFN's w1, w2, w3)
    assert counts == {"quantized": 2 * 15 + 2 * (2 + 4), "skipped": 0}
    with torch.no_grad():
        quantized = model(*inputs)
    assert (quantized - reference).abs().max() < 0.1 * reference.abs().max()
