"""Clear errors for bad inputs and bad files."""
import pytest
import torch
from safetensors.torch import save_file

from hyvideo_core.errors import (CheckpointError, IncompatibleWeightsError, InputError,
                                 UnknownCheckpointError)
from hyvideo_core.config import VaeConfig
from hyvideo_core.vae import CausalVideoVAE, load_vae, save_vae


@pytest.mark.parametrize("shape, match", [
    ((1, 3, 8, 16, 16), r"4n\+1 frames .*found 8.*Trim to 5 or pad to 9"),
    ((1, 3, 5, 20, 16), r"multiples of 8; found 20x16.*16x16"),
    ((1, 4, 5, 16, 16), r"3 colour channels.*found 4"),
    ((1, 3, 16, 16), r"\(B, 3, F, H, W\).*unsqueeze\(2\)"),
])
def test_encode_input_errors(tiny_vae, shape, match):
    with pytest.raises(InputError, match=match):
        tiny_vae.encode(torch.zeros(shape))


def test_single_frame_round_trip(tiny_vae):
    latents = tiny_vae.encode(torch.zeros(2, 3, 1, 16, 24))
    assert latents.shape == (2, 4, 1, 2, 3)
    assert tiny_vae.decode(latents).shape == (2, 3, 1, 16, 24)


def test_decode_latent_channel_mismatch(tiny_vae):
    with pytest.raises(InputError, match=r"4 latent channels, found 16"):
        tiny_vae.decode(torch.zeros(1, 16, 2, 2, 2))
    with pytest.raises(InputError, match=r"unsqueeze\(2\)"):
        tiny_vae.decode(torch.zeros(1, 4, 2, 2))


def test_load_keeps_config_and_strips_prefixes(tiny_vae_file, tmp_path):
    path, reference = tiny_vae_file
    state = reference.state_dict()
    for prefix in ("vae.", "first_stage_model."):
        prefixed = tmp_path / f"{prefix}safetensors"
        save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(prefixed))
        vae = load_vae(prefixed)
        assert vae.config.norm_num_groups == 4 and vae.scaling_factor == 0.476986
        assert torch.equal(vae.post_quant_conv.weight, state["post_quant_conv.weight"])


def test_half_file_is_computed_in_float32_on_cpu(tiny_vae_file, tmp_path):
    half = tmp_path / "half.safetensors"
    save_vae({k: v.to(torch.bfloat16) for k, v in tiny_vae_file[1].state_dict().items()}, half)
    assert load_vae(half).dtype == torch.float32
    assert load_vae(half, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert not any(p.requires_grad for p in load_vae(half).parameters())


def test_truncated_file(tiny_vae_file, tmp_path):
    data = tiny_vae_file[0].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_vae(cut)


def test_transformer_file_given_as_vae(tmp_path):
    path = tmp_path / "hunyuan_video_t2v_720p.safetensors"
    save_file({"double_blocks.0.img_attn_qkv.weight": torch.zeros(6, 2),
               "img_in.proj.weight": torch.zeros(2, 2, 1, 2, 2)}, str(path))
    with pytest.raises(UnknownCheckpointError, match="transformer .*not a VAE.*load_transformer"):
        load_vae(path)


def test_ldm_layout_vae_gets_a_clear_error(tmp_path):
    path = tmp_path / "comfy_vae.safetensors"
    save_file({"decoder.mid.attn_1.q.weight": torch.zeros(2, 2, 1, 1, 1),
               "post_quant_conv.weight": torch.zeros(2, 2, 1, 1, 1)}, str(path))
    with pytest.raises(UnknownCheckpointError, match="LDM key format.*original-format"):
        load_vae(path)


def test_unrelated_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, str(path))
    with pytest.raises(UnknownCheckpointError, match="not a HunyuanVideo VAE"):
        load_vae(path)


def test_missing_and_unexpected_keys(tiny_vae_file, tmp_path):
    state = dict(tiny_vae_file[1].state_dict())
    del state["decoder.mid_block.attentions.0.to_k.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.safetensors"
    save_vae(state, path)
    with pytest.raises(IncompatibleWeightsError,
                       match=r"1 missing \(e.g. \['decoder.mid_block.attentions.0.to_k.bias'\]\).*"
                             r"1 unexpected \(e.g. \['decoder.extra.weight'\]\)"):
        load_vae(path)


def test_unknown_architecture_names_derived_and_known(tmp_path):
    config = VaeConfig(latent_channels=4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                       norm_num_groups=4)
    path = tmp_path / "other_widths.safetensors"
    save_vae(CausalVideoVAE(config), path)
    with pytest.raises(UnknownCheckpointError,
                       match=r"block_out_channels=\(8, 8, 16, 16\).*matches no registered.*"
                             r"known: .*\(128, 256, 512, 512\)"):
        load_vae(path)
