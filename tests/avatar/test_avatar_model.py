"""The avatar model: full-size keys and parameter counts against the official table (meta device), the three
released file forms loading with an identity map, sampling through the extension, and the passes it composes
with (block swap, fp8, step caches)."""
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hyvideo_core import sample
from hyvideo_core.apps.avatar import AvatarExtension, load_avatar_transformer
from hyvideo_core.errors import InputError
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.model.extension import install_extension
from hyvideo_core.quant.fp8 import quantize_fp8
from hyvideo_core.quant.passes import quantize_transformer
from hyvideo_core.runtime.caching import apply_teacache
from hyvideo_core.runtime.offload import enable_block_swap
from hyvideo_core.variants import VARIANTS
from tests.reference_models import save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checkpoints"))
from test_real_configs import official_13b_shapes  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "golden_avatar.safetensors"


def official_avatar_module_shapes():
    """shared/spec/official_apps.md §B.1, written out independently of the model code."""
    D, C, A = 3072, 16, 1024
    wb = lambda name, out, inp: {f"{name}.weight": (out, inp), f"{name}.bias": (out,)}
    shapes = {"ref_in.proj.weight": (D, C, 1, 2, 2), "ref_in.proj.bias": (D,)}
    shapes |= wb("before_proj", D, D)
    shapes |= wb("audio_proj.proj1", 1024, 10 * 5 * 384) | wb("audio_proj.proj2", 1024, 1024)
    shapes |= wb("audio_proj.proj3", 4 * D, 1024) | {"audio_proj.norm.weight": (D,), "audio_proj.norm.bias": (D,)}
    for name, width in (("motion_exp", D // 4), ("motion_pose", D // 4), ("fps_proj", D)):
        shapes |= wb(f"{name}.mlp.0", width, 256) | wb(f"{name}.mlp.2", width, width)
    for j in range(10):
        p = f"audio_adapter_blocks.{j}."
        shapes |= {p + n: (D,) for n in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")}
        shapes |= {p + "to_q.weight": (A, D), p + "to_kv.weight": (2 * A, D), p + "to_out.weight": (D, A)}
    return shapes


def build(variant):
    spec = VARIANTS[variant]
    model = HunyuanVideoTransformer(spec.transformer)
    install_extension(model, AvatarExtension(spec.transformer, spec.app.config))
    return model


def test_full_size_avatar_matches_official_keys_and_counts():
    with torch.device("meta"):
        model = build("avatar")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_13b_shapes(guidance=False) | official_avatar_module_shapes()
    assert len(got) == 946
    assert sum(p.numel() for p in model.parameters()) == 12_991_493_184
    per_module = {name: sum(p.numel() for p in getattr(model, name).parameters())
                  for name in VARIANTS["avatar"].app.modules}
    assert per_module == {"ref_in": 199_680, "before_proj": 9_440_256, "audio_proj": 33_312_768,
                          "motion_exp": 787_968, "motion_pose": 787_968, "fps_proj": 10_229_760,
                          "audio_adapter_blocks": 125_952_000}


@pytest.mark.parametrize("variant", ["avatar", "tiny-avatar"])
def test_registry_names_exactly_the_extension_modules(variant):
    spec = VARIANTS[variant]
    with torch.device("meta"):
        ext = AvatarExtension(spec.transformer, spec.app.config)
    assert tuple(ext.modules()) == spec.app.modules


# --------------------------------------------------------------------------------------------
# the released file forms


@pytest.fixture(scope="module")
def golden():
    with safe_open(str(FIXTURE), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module")
def state(golden):
    return {k[len("state."):]: v for k, v in golden.items() if k.startswith("state.")}


def inputs(golden, case="cfg_pair"):
    i = {k.rsplit(".", 1)[1]: v for k, v in golden.items() if k.startswith(f"{case}.input.")}
    extras = dict(ref_latents=i["ref_latents"], audio_windows=i["audio_prompts"], face_mask=i["face_mask"],
                  motion_exp=i["motion_exp"], motion_pose=i["motion_pose"], fps=i["fps"])
    return (i["x"], i["t"], i["text_states"], i["text_mask"], i["text_states_2"]), extras


def forward(model, golden, case="cfg_pair"):
    args, extras = inputs(golden, case)
    with torch.no_grad():
        return model(*args, extras=extras)


def official_fp8(state):
    """The official fp8 twin: every Linear weight inside double/single blocks as e4m3fn, its scale in a
    separate map keyed by layer name (fp8_optimization.py)."""
    weights, scales = {}, {}
    for key, tensor in state.items():
        if key.endswith(".weight") and tensor.dim() == 2 and key.startswith(("double_blocks.", "single_blocks.")):
            weights[key], scales[key[: -len(".weight")]] = quantize_fp8(tensor)
        else:
            weights[key] = tensor
    return weights, scales


def test_official_comfyui_and_fp8_files_load(tmp_path, golden, state):
    expected = golden["cfg_pair.output"]
    official = load_avatar_transformer(save(state, str(tmp_path / "mp_rank_00_model_states.pt")))
    comfy = load_avatar_transformer(save({f"model.diffusion_model.{k}": v for k, v in state.items()},
                                         str(tmp_path / "hunyuan_video_avatar_bf16.safetensors")))
    for model in (official, comfy):
        assert (forward(model, golden) - expected).abs().max() <= 1e-4

    weights, scales = official_fp8(state)
    fp8_path = save(weights, str(tmp_path / "mp_rank_00_model_states_fp8.pt"))
    torch.save({"module": scales}, tmp_path / "mp_rank_00_model_states_fp8_map.pt")
    fp8 = load_avatar_transformer(fp8_path)
    assert fp8.double_blocks[0].img_attn_qkv.weight.dtype == torch.float8_e4m3fn
    dequantized = {k: (v.float() * scales[k[: -len(".weight")]] if v.dtype == torch.float8_e4m3fn else v)
                   for k, v in weights.items()}
    reference = load_avatar_transformer(save(dequantized, str(tmp_path / "dequantized.safetensors")))
    assert (forward(fp8, golden) - forward(reference, golden)).abs().max() <= 1e-4
    assert (forward(fp8, golden) - expected).abs().max() < 0.1 * expected.abs().max()


# --------------------------------------------------------------------------------------------
# sampling and passes


@pytest.fixture
def model(tmp_path, state):
    return load_avatar_transformer(save(state, str(tmp_path / "avatar.safetensors")))


def _sample(model, golden, steps=2):
    (x, _, text, mask, pooled), extras = inputs(golden)
    return sample(model, x, text, mask, pooled, steps=steps, shift=5.0, extras=extras)


def test_sampling_passes_the_avatar_inputs(model, golden):
    out = _sample(model, golden)
    assert out.shape == golden["cfg_pair.input.x"].shape and torch.isfinite(out).all()
    (x, _, text, mask, pooled), extras = inputs(golden)
    silent = sample(model, x, text, mask, pooled, steps=2, shift=5.0,
                    extras=dict(extras, audio_windows=torch.zeros_like(extras["audio_windows"])))
    assert (silent - out).abs().max() > 1e-3


def test_block_swap_is_exact(model, golden):
    expected = forward(model, golden)
    enable_block_swap(model, (2, 1), "cpu", store="cpu")
    assert torch.equal(forward(model, golden), expected)


def test_fp8_quantization_keeps_the_adapters(model, golden):
    expected = forward(model, golden)
    quantize_transformer(model, "fp8_e4m3fn")
    got = forward(model, golden)
    assert model.audio_adapter_blocks[0].to_q.weight.dtype == torch.float32   # only the block stacks
    assert (got - expected).abs().max() < 0.1 * expected.abs().max()


def test_step_cache_refuses_to_skip_with_the_avatar_installed(model, golden):
    apply_teacache(model, 0.5)
    with pytest.raises(InputError, match=r"cannot skip blocks while the extensions \['avatar'\]"):
        _sample(model, golden, steps=3)



def test_bf16_weights_and_compute_stay_close(tmp_path, golden, state):
    """bf16 everywhere (the GPU default): the face mask, audio tokens and the float32 softmax follow the dtype."""
    model = load_avatar_transformer(save(state, str(tmp_path / "avatar.safetensors")), dtype=torch.bfloat16)
    got = forward(model, golden)
    assert got.dtype == torch.bfloat16
    expected = golden["cfg_pair.output"]
    assert (got.float() - expected).abs().max() < 0.05 * expected.abs().max()
