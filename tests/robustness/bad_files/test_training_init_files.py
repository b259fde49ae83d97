"""Training init weights (``TrainConfig.init``) that do not fit: read with the loader's own checks, so a bad file
is a clear error naming the tensor instead of a silently wrong starting model."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from hyvideo_core import save_transformer
from hyvideo_core.errors import IncompatibleWeightsError
from hyvideo_core.finetune.trainer import TrainConfig, build_model
from hyvideo_core.quant.passes import quantize_transformer

pytestmark = pytest.mark.robustness


def _drop_a_scale(state):
    del state["double_blocks.0.img_attn_qkv.scale_weight"]


def _drop_a_weight(state):
    del state["double_blocks.0.img_mlp.fc1.weight"]


def _cut_a_bias(state):
    state["final_layer.linear.bias"] = state["final_layer.linear.bias"][:3].clone()


def _add_a_tensor(state):
    state["double_blocks.0.extra.weight"] = torch.zeros(2, 2)


@pytest.mark.parametrize("damage, message", [
    (_drop_a_scale, r"double_blocks\.0\.img_attn_qkv\.weight is stored as torch\.float8_e4m3fn but no scale was found"),
    (_drop_a_weight, r"do not fit variant 'tiny': 1 missing \(e\.g\. \['double_blocks\.0\.img_mlp\.fc1\.weight'\]\)"),
    (_cut_a_bias, r"1 with the wrong shape \(e\.g\. \['final_layer\.linear\.bias: expected"),
    (_add_a_tensor, r"1 unexpected \(e\.g\. \['double_blocks\.0\.extra\.weight'\]\)"),
], ids=["fp8_weight_without_its_scale", "missing_weight", "wrong_shape", "unexpected_tensor"])
def test_damaged_init_file_is_refused_with_the_tensor_named(tmp_path, damage, message):
    model = build_model(TrainConfig(variant="tiny", seed=5))
    quantize_transformer(model, "fp8_e4m3fn")
    save_transformer(model, tmp_path / "fp8.safetensors")
    state = load_file(str(tmp_path / "fp8.safetensors"))
    damage(state)
    save_file(state, str(tmp_path / "damaged.safetensors"))
    with pytest.raises(IncompatibleWeightsError, match=message):
        build_model(TrainConfig(variant="tiny", init=str(tmp_path / "damaged.safetensors")))
