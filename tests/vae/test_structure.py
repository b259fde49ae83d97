"""The full-size VAE built on the meta device has the official keys, shapes and size."""
import torch

from hyvideo_core.config import VaeConfig
from hyvideo_core.vae import CausalVideoVAE
from hyvideo_core.vae.load import detect_vae_config

from .conftest import diffusers_tiny_vae, TINY_VAE


def real_vae():
    with torch.device("meta"):
        return CausalVideoVAE(VaeConfig())


def test_real_config_parameter_count_and_key_count():
    vae = real_vae()
    state = vae.state_dict()
    assert len(state) == 248
    assert sum(p.numel() for p in vae.parameters()) == 246_478_803
    assert sum(p.numel() for p in vae.encoder.parameters()) == 100_341_408
    assert sum(p.numel() for p in vae.decoder.parameters()) == 146_136_067
    assert vae.scaling_factor == 0.476986


def test_real_config_shapes_follow_the_spec():
    shapes = {k: tuple(v.shape) for k, v in real_vae().state_dict().items()}
    expected = {
        "encoder.conv_in.conv.weight": (128, 3, 3, 3, 3),
        "encoder.down_blocks.0.downsamplers.0.conv.conv.weight": (128, 128, 3, 3, 3),
        "encoder.down_blocks.1.resnets.0.conv_shortcut.conv.weight": (256, 128, 1, 1, 1),
        "encoder.down_blocks.2.resnets.0.conv_shortcut.conv.weight": (512, 256, 1, 1, 1),
        "encoder.down_blocks.2.downsamplers.0.conv.conv.weight": (512, 512, 3, 3, 3),
        "encoder.mid_block.attentions.0.group_norm.weight": (512,),
        "encoder.mid_block.attentions.0.to_q.weight": (512, 512),
        "encoder.mid_block.attentions.0.to_out.0.bias": (512,),
        "encoder.conv_norm_out.weight": (512,),
        "encoder.conv_out.conv.weight": (32, 512, 3, 3, 3),
        "quant_conv.weight": (32, 32, 1, 1, 1),
        "post_quant_conv.weight": (16, 16, 1, 1, 1),
        "decoder.conv_in.conv.weight": (512, 16, 3, 3, 3),
        "decoder.up_blocks.0.resnets.2.conv2.conv.weight": (512, 512, 3, 3, 3),
        "decoder.up_blocks.1.upsamplers.0.conv.conv.weight": (512, 512, 3, 3, 3),
        "decoder.up_blocks.2.resnets.0.conv_shortcut.conv.weight": (256, 512, 1, 1, 1),
        "decoder.up_blocks.3.resnets.0.conv_shortcut.conv.weight": (128, 256, 1, 1, 1),
        "decoder.conv_norm_out.weight": (128,),
        "decoder.conv_out.conv.weight": (3, 128, 3, 3, 3),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert "encoder.down_blocks.3.downsamplers.0.conv.conv.weight" not in shapes
    assert "decoder.up_blocks.3.upsamplers.0.conv.conv.weight" not in shapes
    assert not any("dropout" in k for k in shapes)


def test_real_config_strides_and_frame_counts():
    vae = real_vae()
    strides = [b.downsamplers[0].conv.conv.stride for b in vae.encoder.down_blocks[:3]]
    assert strides == [(1, 2, 2), (2, 2, 2), (2, 2, 2)]
    factors = [b.upsamplers[0].factor for b in vae.decoder.up_blocks[:3]]
    assert factors == [(1, 2, 2), (2, 2, 2), (2, 2, 2)]
    detected = detect_vae_config({k: tuple(v.shape) for k, v in vae.state_dict().items()})
    assert detected == VaeConfig()


def test_tiny_key_set_equals_diffusers():
    reference = {k: tuple(v.shape) for k, v in diffusers_tiny_vae().state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in CausalVideoVAE(TINY_VAE).state_dict().items()}
    assert ours == reference
