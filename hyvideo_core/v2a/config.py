"""The Foley (video-to-audio) model family: its configuration and its registry of variants.

The numbers of the released models (shared/spec/official_apps.md §C.1, the official
``configs/hunyuanvideo-foley-{xxl,xl}.yaml``) live only here, beside a test-size variant of the
same architecture. The video transformer's registry (``hyvideo_core/variants.py``) is separate:
the two families share no field that detection could confuse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

from ..errors import InputError


@dataclass(frozen=True)
class FoleyConfig:
    hidden_size: int
    heads_num: int
    triple_depth: int            # audio + visual joint-attention blocks with text cross-attention
    single_depth: int            # audio-only blocks with per-token modulation and conv FFNs
    mlp_ratio: int = 4
    audio_latent_dim: int = 128  # DAC-VAE latent channels
    visual_dim: int = 768        # SigLIP2 pooled frame features
    sync_dim: int = 768          # Synchformer tokens
    text_dim: int = 768          # CLAP token states
    sync_tokens_per_segment: int = 8   # one Synchformer segment (16 frames at 25 fps) gives 8 tokens
    conv_mlp_multiple: int = 256       # the conv FFN hidden width is rounded up to a multiple of this
    rope_theta: float = 10000.0
    qkv_bias: bool = True
    audio_frame_rate: int = 50   # latent frames per second of audio (DAC hop 960 at 48 kHz)

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads_num:
            raise InputError(f"hidden_size {self.hidden_size} is not divisible by heads_num {self.heads_num}")
        if self.head_dim % 2:
            raise InputError(f"head_dim {self.head_dim} must be even for the rotary embedding")
        if self.triple_depth < 1:
            raise InputError("a Foley model needs at least one triple block (the Synchformer features join "
                             f"the audio tokens before the first one); found triple_depth={self.triple_depth}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads_num

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the triple blocks' GELU MLPs."""
        return self.hidden_size * self.mlp_ratio

    @property
    def conv_mlp_hidden(self) -> int:
        """Hidden width of the SwiGLU conv FFNs (``sync_in.2``, ``single_blocks.N.linear2``):
        two thirds of mlp_ratio·H, rounded up to ``conv_mlp_multiple`` (4096 for XXL, 3840 for XL)."""
        two_thirds = int(2 * self.mlp_hidden / 3)
        m = self.conv_mlp_multiple
        return m * ((two_thirds + m - 1) // m)


@dataclass(frozen=True)
class FoleySamplerDefaults:
    steps: int = 50
    shift: float = 1.0           # released setting: no timestep shift
    cfg_scale: float = 4.5
    negative_prompt: str = "noisy, harsh"


@dataclass(frozen=True)
class FoleyVariant:
    name: str
    description: str
    model: FoleyConfig
    sampler: FoleySamplerDefaults = field(default_factory=FoleySamplerDefaults)
    is_test_variant: bool = False


FOLEY_VARIANTS: Dict[str, FoleyVariant] = {
    v.name: v
    for v in (
        FoleyVariant(
            name="foley-xxl",
            description="HunyuanVideo-Foley XXL (hunyuanvideo_foley.pth): 18 triple + 36 single blocks, hidden 1536",
            model=FoleyConfig(hidden_size=1536, heads_num=12, triple_depth=18, single_depth=36),
        ),
        FoleyVariant(
            name="foley-xl",
            description="HunyuanVideo-Foley XL (hunyuanvideo_foley_xl.pth): 12 triple + 24 single blocks, hidden 1408",
            model=FoleyConfig(hidden_size=1408, heads_num=11, triple_depth=12, single_depth=24),
        ),
        FoleyVariant(
            name="foley-tiny",
            description="test-size Foley model (2 triple + 2 single blocks, hidden 32, 8-channel latents)",
            model=FoleyConfig(hidden_size=32, heads_num=2, triple_depth=2, single_depth=2, audio_latent_dim=8,
                              visual_dim=16, sync_dim=12, text_dim=20),
            sampler=FoleySamplerDefaults(steps=3),
            is_test_variant=True,
        ),
    )
}


def get_foley_variant(name: str) -> FoleyVariant:
    try:
        return FOLEY_VARIANTS[name]
    except KeyError:
        raise InputError(f"unknown Foley variant {name!r}; known: {', '.join(sorted(FOLEY_VARIANTS))}") from None
