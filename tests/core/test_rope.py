import torch

from hyvideo_core.model.rope import apply_rope, rope_frequencies, rope_tables


def test_tables_match_diffusers_rotary_embedding():
    from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoRotaryPosEmbed

    grid, axes = (3, 4, 5), (4, 6, 6)
    cos, sin = rope_tables(grid, axes, 256.0)
    ref = HunyuanVideoRotaryPosEmbed(patch_size=1, patch_size_t=1, rope_dim=list(axes), theta=256.0)
    ref_cos, ref_sin = ref(torch.zeros(1, 1, *grid))
    torch.testing.assert_close(cos, ref_cos)
    torch.testing.assert_close(sin, ref_sin)


def test_rotation_is_complex_multiplication_of_interleaved_pairs():
    x = torch.randn(1, 60, 2, 16)
    cos, sin = rope_tables((3, 4, 5), (4, 6, 6), 256.0)
    angles = torch.atan2(sin[:, ::2], cos[:, ::2])
    expected = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * torch.polar(torch.ones_like(angles), angles)[None, :, None])
    torch.testing.assert_close(apply_rope(x, rope_frequencies((3, 4, 5), (4, 6, 6), 256.0)), expected.flatten(-2),
                               atol=1e-5, rtol=1e-5)


def test_position_zero_is_identity_and_theta_256_frequencies():
    cos, sin = rope_tables((2, 1, 1), (16, 56, 56), 256.0)
    assert torch.all(cos[0] == 1) and torch.all(sin[0] == 0)
    # time axis at t=1: angles 2^-k for k = 0..7, each repeated for its pair
    torch.testing.assert_close(torch.acos(cos[1, :16:2]), torch.tensor([2.0 ** -k for k in range(8)]), atol=1e-5, rtol=0)
