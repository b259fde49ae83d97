"""Avatar checkpoints that do not fit: each is a clear error naming the tensor or the loader to use, never a
silently half-loaded model (the release loads with strict=False, which hides missing adapter keys)."""
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hyvideo_core import load_transformer
from hyvideo_core.apps.avatar import load_avatar_transformer
from hyvideo_core.errors import IncompatibleWeightsError, UnknownCheckpointError
from hyvideo_core.quant.fp8 import quantize_fp8
from tests.reference_models import save

pytestmark = pytest.mark.robustness

FIXTURE = Path(__file__).resolve().parents[2] / "avatar" / "golden_avatar.safetensors"


@pytest.fixture(scope="module")
def state():
    with safe_open(str(FIXTURE), "pt") as f:
        return {k[len("state."):]: f.get_tensor(k) for k in f.keys() if k.startswith("state.")}


def _drop(key):
    return lambda s: s.pop(key)


def _reshape(key, rows):
    def damage(s):
        s[key] = s[key][:rows].clone()
    return damage


def _add(key, shape):
    def damage(s):
        s[key] = torch.zeros(shape)
    return damage


def _drop_prefix(prefix):
    def damage(s):
        for k in [k for k in s if k.startswith(prefix)]:
            del s[k]
    return damage


@pytest.mark.parametrize("damage, message", [
    (_drop("audio_adapter_blocks.1.to_kv.weight"),
     r"1 missing \(e\.g\. \['audio_adapter_blocks\.1\.to_kv\.weight'\]\)"),
    (_drop_prefix("audio_adapter_blocks.1."), r"7 missing \(e\.g\. \['audio_adapter_blocks\.1\.norm1\.bias'"),
    (_drop("fps_proj.mlp.2.bias"), r"1 missing \(e\.g\. \['fps_proj\.mlp\.2\.bias'\]\)"),
    (_reshape("audio_adapter_blocks.0.to_q.weight", 8),
     r"1 with the wrong shape \(e\.g\. \['audio_adapter_blocks\.0\.to_q\.weight: expected \(16, 32\), found \(8, 32\)"),
    (_add("audio_adapter_blocks.2.to_q.weight", (16, 32)),
     r"1 unexpected \(e\.g\. \['audio_adapter_blocks\.2\.to_q\.weight'\]\)"),
], ids=["missing_adapter_key", "missing_adapter_block", "missing_fps_key", "adapter_of_another_width",
        "one_adapter_too_many"])
def test_damaged_avatar_file_is_refused_with_the_tensor_named(tmp_path, state, damage, message):
    damaged = dict(state)
    damage(damaged)
    path = save(damaged, str(tmp_path / "mp_rank_00_model_states.pt"))
    with pytest.raises(IncompatibleWeightsError, match=message):
        load_avatar_transformer(path)


def test_avatar_file_given_to_the_plain_loader_names_the_avatar_loader(tmp_path, state):
    path = save(state, str(tmp_path / "avatar.safetensors"))
    with pytest.raises(IncompatibleWeightsError,
                       match=r"holds the avatar modules of variant 'tiny-avatar': its 38 avatar keys .* Load it with "
                             r"hyvideo_core\.apps\.avatar\.load_avatar_transformer\(path\)"):
        load_transformer(path)


def test_t2v_file_given_to_the_avatar_loader_says_so(tmp_path):
    from tests.reference_models import diffusers_transformer, official_state_dict
    from hyvideo_core.variants import VARIANTS

    path = save(official_state_dict(diffusers_transformer(VARIANTS["tiny"].transformer)), str(tmp_path / "t2v.pt"))
    with pytest.raises(IncompatibleWeightsError, match=r"is not a HunyuanVideo-Avatar checkpoint: it holds no avatar "
                                                       r"modules .* matches variant 'tiny'"):
        load_avatar_transformer(path)


def test_avatar_backbone_without_its_modules_says_what_is_missing(tmp_path, state):
    backbone = {k: v for k, v in state.items() if not k.startswith(
        ("ref_in.", "before_proj.", "audio_proj.", "motion_", "fps_proj.", "audio_adapter_blocks."))}
    path = save(backbone, str(tmp_path / "backbone.safetensors"))
    for loader in (load_transformer, load_avatar_transformer):
        with pytest.raises(UnknownCheckpointError, match=r"has the backbone of variant 'tiny-avatar' but none of its "
                                                         r"avatar modules"):
            loader(path)


def test_fp8_avatar_file_without_its_map_names_the_map(tmp_path, state):
    weights = dict(state)
    weights["double_blocks.0.img_attn_qkv.weight"], _ = quantize_fp8(state["double_blocks.0.img_attn_qkv.weight"])
    path = save(weights, str(tmp_path / "mp_rank_00_model_states_fp8.pt"))
    with pytest.raises(IncompatibleWeightsError, match=r"no scale was found for 'double_blocks\.0\.img_attn_qkv'.*"
                                                       r"_fp8_map\.pt"):
        load_avatar_transformer(path)
