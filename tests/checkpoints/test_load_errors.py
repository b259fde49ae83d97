"""Bad files and bad inputs give errors that say what was expected, what was found and what to do."""
import os

import pytest
import torch

from hyvideo_core import load_transformer
from hyvideo_core.errors import (CheckpointError, IncompatibleWeightsError, InputError, UnknownCheckpointError,
                                 UnsafeCheckpointError)
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.sampling.noise import latent_shape
from hyvideo_core.variants import VARIANTS
from tests.reference_models import dit_inputs, save


@pytest.fixture(scope="module")
def tiny_sd():
    torch.manual_seed(0)
    return HunyuanVideoTransformer(VARIANTS["tiny"].transformer).state_dict()


def test_truncated_safetensors(tmp_path, tiny_sd):
    path = save(tiny_sd, str(tmp_path / "full.safetensors"))
    data = open(path, "rb").read()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_transformer(cut)


def test_corrupt_files(tmp_path):
    for name in ("junk.safetensors", "junk.pt"):
        (tmp_path / name).write_bytes(os.urandom(4096))
        with pytest.raises(CheckpointError, match="corrupt|could not read"):
            load_transformer(tmp_path / name)


@pytest.mark.parametrize("seed", [2, 20, 195])   # bytes on which the unpickler fails with IndexError, KeyError,
def test_garbage_pt_is_a_checkpoint_error(tmp_path, seed):   # UnicodeDecodeError
    import random

    path = tmp_path / "junk.pt"
    path.write_bytes(random.Random(seed).randbytes(4096))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_transformer(path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_pt_needing_arbitrary_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"module": {"img_in.proj.weight": torch.zeros(1)}, "extra": _Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="weights_only|arbitrary code"):
        load_transformer(path)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_transformer(tmp_path / "nope.safetensors")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="extension"):
        load_transformer(tmp_path / "model.onnx")


def test_vae_given_as_transformer(tmp_path):
    path = save({"decoder.conv_in.conv.weight": torch.zeros(8, 4, 3, 3, 3), "encoder.conv_in.conv.weight": torch.zeros(8, 3, 3, 3, 3)},
                str(tmp_path / "vae.safetensors"))
    with pytest.raises(UnknownCheckpointError, match="VAE loader"):
        load_transformer(path)


def test_other_architecture(tmp_path):
    path = save({f"double_blocks.{i}.img_attn.qkv.weight": torch.zeros(6, 2) for i in range(8)},
                str(tmp_path / "flux.safetensors"))
    with pytest.raises(UnknownCheckpointError, match="Flux"):
        load_transformer(path)


def test_unregistered_shapes_name_the_closest_variant(tmp_path):
    cfg = VARIANTS["tiny"].transformer
    from dataclasses import replace
    with torch.device("meta"):
        other = HunyuanVideoTransformer(replace(cfg, double_depth=3))
    sd = {k: torch.zeros(v.shape) for k, v in other.state_dict().items()}
    with pytest.raises(UnknownCheckpointError, match="double_depth: 2 in tiny vs 3 in the file"):
        load_transformer(save(sd, str(tmp_path / "deeper.safetensors")))


def test_missing_unexpected_and_misshaped_keys(tmp_path, tiny_sd):
    missing = {k: v for k, v in tiny_sd.items() if k != "single_blocks.1.linear2.bias"}
    with pytest.raises(IncompatibleWeightsError, match=r"1 missing .*single_blocks.1.linear2.bias"):
        load_transformer(save(missing, str(tmp_path / "missing.safetensors")))
    extra = dict(tiny_sd, **{"lora_unet.extra.weight": torch.zeros(2)})
    with pytest.raises(IncompatibleWeightsError, match=r"1 unexpected .*lora_unet.extra.weight"):
        load_transformer(save(extra, str(tmp_path / "extra.safetensors")))
    wrong = dict(tiny_sd, **{"double_blocks.0.img_attn_proj.bias": torch.zeros(5)})
    with pytest.raises(IncompatibleWeightsError, match="wrong shape.*img_attn_proj.bias: expected \\(48,\\), found \\(5,\\)"):
        load_transformer(save(wrong, str(tmp_path / "wrong.safetensors")))


def test_fp8_weight_without_scale(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    sd["double_blocks.0.img_attn_qkv.weight"] = sd["double_blocks.0.img_attn_qkv.weight"].to(torch.float8_e4m3fn)
    with pytest.raises(IncompatibleWeightsError, match="no scale"):
        load_transformer(save(sd, str(tmp_path / "fp8_noscale.safetensors")))


@pytest.mark.parametrize("frames,height,width,message", [
    (30, 64, 64, r"4n\+1 .*got 30; use 29 or 33"),
    (33, 72, 64, "height must be a positive multiple of 16 pixels, got 72; use 64"),
    (33, 64, 100, "width must be a positive multiple of 16"),
])
def test_video_size_rules(frames, height, width, message):
    with pytest.raises(InputError, match=message):
        latent_shape(frames, height, width)


def test_forward_input_errors(tiny_sd):
    model = HunyuanVideoTransformer(VARIANTS["tiny"].transformer)
    x, t, text, mask, pooled, guidance = dit_inputs(model.config)
    with pytest.raises(InputError, match="guidance-distilled"):
        model(x, t, text, mask, pooled, None)
    with pytest.raises(InputError, match=r"expected latents of shape \(B, 4, T, H, W\)"):
        model(x[:, :3], t, text, mask, pooled, guidance)
    with pytest.raises(InputError, match="right-padded"):
        holes = mask.clone(); holes[0, 2] = 0
        model(x, t, text, holes, pooled, guidance)
    with pytest.raises(InputError, match="text encoder"):
        model(x, t, text[..., :16], mask, pooled, guidance)
