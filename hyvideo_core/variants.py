"""The registry of model variants: every architecture number in the project lives here.

Real variants mirror the released checkpoints (shared/spec/official_t2v.md §1.1, §4.1); the
``tiny*`` variants are the same architecture at test size, used by the test suite and the demo.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict

from .config import AppModules, AvatarConfig, SamplerDefaults, TransformerConfig, VaeConfig, VariantSpec
from .errors import InputError

_T2V_720P = TransformerConfig(
    in_channels=16, out_channels=16, hidden_size=3072, heads_num=24,
    double_depth=20, single_depth=40, refiner_depth=2, mlp_width_ratio=4.0,
    patch_size=(1, 2, 2), rope_axes=(16, 56, 56), rope_theta=256.0,
    text_states_dim=4096, text_states_dim_2=768, guidance_embed=False,
)

_TINY = TransformerConfig(
    in_channels=4, out_channels=4, hidden_size=48, heads_num=3,
    double_depth=2, single_depth=2, refiner_depth=2, mlp_width_ratio=4.0,
    patch_size=(1, 2, 2), rope_axes=(4, 6, 6), rope_theta=256.0,
    text_states_dim=32, text_states_dim_2=16, guidance_embed=True,
)

_TINY_VAE = VaeConfig(
    latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
    tile_sample_size=64, tile_sample_frames=16,
)

# HunyuanVideo-Avatar (shared/spec/official_apps.md part B): the T2V backbone without guidance_in plus
# its own module groups, under these checkpoint names.
AVATAR_MODULES = ("ref_in", "before_proj", "audio_proj", "motion_exp", "motion_pose", "fps_proj",
                  "audio_adapter_blocks")
AVATAR_LOADER = "hyvideo_core.apps.avatar.load_avatar_transformer"
AVATAR_EXTENSION = "hyvideo_core.apps.avatar.avatar_extension"

_AVATAR = AvatarConfig(whisper_dim=384, whisper_layers=5, audio_window=10, audio_hidden=1024, tokens_per_frame=4,
                       adapter_dim=1024, adapter_after=tuple(range(1, 20, 2)))
# Test size: the official structure (10-frame windows of 5 hidden states, 4 tokens per frame, adapters
# after every second double block starting at 1) with small widths.
_TINY_AVATAR = AvatarConfig(whisper_dim=8, whisper_layers=5, audio_window=10, audio_hidden=32, tokens_per_frame=4,
                            adapter_dim=16, adapter_after=(1, 3))

VARIANTS: Dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec(
            name="t2v-720p-cfgdistill",
            description="HunyuanVideo T2V 13B, CFG-distilled (the released model; embedded guidance)",
            transformer=replace(_T2V_720P, guidance_embed=True),
        ),
        VariantSpec(
            name="t2v-720p",
            description="HunyuanVideo T2V 13B without the guidance embedding (true CFG only)",
            transformer=_T2V_720P,
            sampler=SamplerDefaults(embedded_guidance=None, cfg_scale=6.0),
        ),
        VariantSpec(
            name="i2v-720p-concat",
            description="HunyuanVideo-I2V 13B, first release: latent_concat (33 input channels), no guidance input",
            transformer=replace(_T2V_720P, in_channels=33, condition_type="latent_concat"),
            sampler=SamplerDefaults(shift=17.0, embedded_guidance=None),
        ),
        VariantSpec(
            name="avatar",
            description="HunyuanVideo-Avatar 13B: audio-driven avatar (reference injection, face-masked audio "
                        "adapters, motion/fps embeddings), no guidance input",
            transformer=_T2V_720P,
            sampler=SamplerDefaults(steps=50, shift=5.0, embedded_guidance=None, cfg_scale=7.5),
            app=AppModules("avatar", AVATAR_MODULES, AVATAR_LOADER, _AVATAR, AVATAR_EXTENSION),
        ),
        VariantSpec(
            name="tiny",
            description="test-size T2V with embedded guidance (2 double, 2 single, 2 refiner blocks)",
            transformer=_TINY, vae=_TINY_VAE,
            sampler=SamplerDefaults(steps=8, shift=7.0, embedded_guidance=6.0),
            is_test_variant=True,
        ),
        VariantSpec(
            name="tiny-noguide",
            description="test-size T2V without guidance embedding",
            transformer=replace(_TINY, guidance_embed=False), vae=_TINY_VAE,
            sampler=SamplerDefaults(steps=8, shift=7.0, embedded_guidance=None),
            is_test_variant=True,
        ),
        VariantSpec(
            name="tiny-i2v-concat",
            description="test-size image-to-video, latent_concat (2·4+1 input channels), no guidance input",
            transformer=replace(_TINY, in_channels=9, guidance_embed=False, condition_type="latent_concat"),
            vae=_TINY_VAE, sampler=SamplerDefaults(steps=8, shift=7.0, embedded_guidance=None),
            is_test_variant=True,
        ),
        VariantSpec(
            name="tiny-avatar",
            description="test-size avatar: hidden 32, 4 double blocks (adapters after 1 and 3), 2 single blocks",
            transformer=replace(_TINY, hidden_size=32, heads_num=2, guidance_embed=False, double_depth=4),
            vae=_TINY_VAE,
            sampler=SamplerDefaults(steps=8, shift=5.0, embedded_guidance=None, cfg_scale=7.5),
            is_test_variant=True,
            app=AppModules("avatar", AVATAR_MODULES, AVATAR_LOADER, _TINY_AVATAR, AVATAR_EXTENSION),
        ),
    )
}


def get_variant(name: str) -> VariantSpec:
    try:
        return VARIANTS[name]
    except KeyError:
        raise InputError(
            f"unknown variant {name!r}; known variants: {', '.join(sorted(VARIANTS))}") from None


# -- the toy world (hyvideo_core/toy): the embedded default trained by hyvideo_core.finetune ----
# A 64x64x17 clip is 5x8x8 latents -> 80 image tokens. Same classes as the real model.
_TOY = TransformerConfig(
    in_channels=16, out_channels=16, hidden_size=128, heads_num=4,
    double_depth=2, single_depth=2, refiner_depth=2, mlp_width_ratio=4.0,
    patch_size=(1, 2, 2), rope_axes=(8, 12, 12), rope_theta=256.0,
    text_states_dim=64, text_states_dim_2=32, guidance_embed=True,
)

# scaling_factor = 1 / std of the trained toy VAE's latents over training clips (scripts/train_toy.py).
_TOY_VAE = VaeConfig(
    latent_channels=16, block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=1,
    scaling_factor=0.716986, tile_sample_size=128, tile_sample_frames=32,
)

# The toy avatar: the toy Whisper (d_model 32, 4 layers -> 5 hidden states) with the released window
# structure, adapters after both double blocks, and sampling windows of 5 latents (17 frames, one toy clip)
# moving by 2 latents a step.
_TOY_AVATAR = AvatarConfig(whisper_dim=32, whisper_layers=5, audio_window=10, audio_hidden=128, tokens_per_frame=4,
                           adapter_dim=64, adapter_after=(0, 1), window_latents=5, window_shift=2)

for _spec in (
    VariantSpec(
        name="toy",
        description="toy-world model (64x64x17): guidance-distilled student with embedded guidance",
        transformer=_TOY, vae=_TOY_VAE,
        sampler=SamplerDefaults(steps=16, shift=3.0, embedded_guidance=4.0),
        is_test_variant=True,
    ),
    VariantSpec(
        name="toy-teacher",
        description="toy-world CFG teacher (no guidance embedding; true CFG)",
        transformer=replace(_TOY, guidance_embed=False), vae=_TOY_VAE,
        sampler=SamplerDefaults(steps=16, shift=3.0, embedded_guidance=None, cfg_scale=4.0),
        is_test_variant=True,
    ),
    VariantSpec(
        name="toy-avatar",
        description="toy-world avatar (64x64x17 talking clips): the toy teacher with avatar modules driven by a "
                    "tiny Whisper (hyvideo_core/toy/avatar.py)",
        transformer=replace(_TOY, guidance_embed=False), vae=_TOY_VAE,
        sampler=SamplerDefaults(steps=16, shift=3.0, embedded_guidance=None, cfg_scale=4.0),
        is_test_variant=True,
        app=AppModules("avatar", AVATAR_MODULES, AVATAR_LOADER, _TOY_AVATAR, AVATAR_EXTENSION),
    ),
):
    VARIANTS[_spec.name] = _spec
