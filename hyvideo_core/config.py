"""Frozen configuration dataclasses. The numbers themselves live only in ``variants.py``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from .errors import InputError

# How an image-to-video model takes its image (TransformerConfig.condition_type): the clean first
# latent frame's tokens modulated at t = 0, or the image latent and a mask concatenated on channels.
TOKEN_REPLACE = "token_replace"
LATENT_CONCAT = "latent_concat"


@dataclass(frozen=True)
class TransformerConfig:
    in_channels: int
    out_channels: int
    hidden_size: int
    heads_num: int
    double_depth: int            # dual-stream (image | text) blocks
    single_depth: int            # single-stream blocks over the joint sequence
    refiner_depth: int           # token-refiner blocks (2 in every released model)
    mlp_width_ratio: float
    patch_size: Tuple[int, int, int]   # (t, h, w)
    rope_axes: Tuple[int, int, int]    # head-dim split over (t, h, w); sums to head_dim
    rope_theta: float
    text_states_dim: int         # LLM hidden size
    text_states_dim_2: int       # CLIP pooled size
    guidance_embed: bool         # embedded (CFG-distilled) guidance input
    qkv_bias: bool = True
    condition_type: Optional[str] = None   # None, "token_replace", "latent_concat"

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads_num:
            raise InputError(f"hidden_size {self.hidden_size} is not divisible by heads_num {self.heads_num}")
        if sum(self.rope_axes) != self.head_dim or any(a % 2 for a in self.rope_axes):
            raise InputError(
                f"rope_axes {self.rope_axes} must be even and sum to head_dim {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads_num

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_width_ratio)


@dataclass(frozen=True)
class VaeConfig:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    time_compression: int = 4
    spatial_compression: int = 8
    mid_block_add_attention: bool = True
    scaling_factor: float = 0.476986
    # Official tiling defaults: pixel tile edge, pixel frames per temporal tile, overlap fraction.
    tile_sample_size: int = 256
    tile_sample_frames: int = 64
    tile_overlap: float = 0.25


@dataclass(frozen=True)
class SamplerDefaults:
    steps: int = 50
    shift: float = 7.0
    embedded_guidance: Optional[float] = 6.0
    cfg_scale: float = 1.0


@dataclass(frozen=True)
class AvatarConfig:
    """Sizes of the HunyuanVideo-Avatar modules (shared/spec/official_apps.md §B.1, §B.3, §B.4)."""
    whisper_dim: int             # channels of each Whisper hidden state (384 for whisper-tiny)
    whisper_layers: int          # Whisper hidden states stacked per frame (embeddings + 4 layers = 5)
    audio_window: int            # Whisper frames (50 Hz) per video frame's window (10)
    audio_hidden: int            # width of the audio projection's MLP (AudioProjNet2 intermediate_dim)
    tokens_per_frame: int        # audio tokens per video frame (AudioProjNet2 context_tokens)
    adapter_dim: int             # width of the single-head audio cross-attention (PerceiverAttentionCA dim_head)
    adapter_after: Tuple[int, ...]   # double-stream blocks followed by an audio adapter, in adapter order
    frames_per_latent: int = 4   # video frames per latent frame (the causal VAE's 4x time compression)
    window_latents: int = 33     # latent frames per sampling window (frames_per_batch; 129 video frames)
    window_shift: int = 10       # how far the windows move after every step (shift_offset)

    @property
    def tokens_per_latent(self) -> int:
        """Audio tokens each latent frame attends to (4 frames x 4 tokens = 16)."""
        return self.frames_per_latent * self.tokens_per_frame

    def audio_frames(self, latent_frames: int) -> int:
        """Video frames of audio windows for ``latent_frames`` latents (4T - 3: 129 for 33)."""
        return self.frames_per_latent * latent_frames - (self.frames_per_latent - 1)


@dataclass(frozen=True)
class AppModules:
    """An application's own modules that checkpoints of a variant carry beside the base transformer.

    The engine only reads this as data: detection (a file holding keys under ``modules`` is this
    variant) and the error that names ``loader`` when such a file reaches the plain loader. The
    application (under ``hyvideo_core/apps``) builds the modules from ``config``."""
    app: str                     # e.g. "avatar"
    modules: Tuple[str, ...]     # checkpoint key prefixes of the app's modules
    loader: str                  # the function that loads such a file, named in errors
    config: Any = None           # the app's sizes (an AvatarConfig for "avatar")
    extension: str = ""          # "module.function": function(config) -> factory(TransformerConfig) -> Extension

    def extension_factory(self):
        """``f(TransformerConfig) -> Extension`` of the app's modules, from the function ``extension`` names
        (None when it names none)."""
        if not self.extension:
            return None
        import importlib

        module, function = self.extension.rsplit(".", 1)
        # the registry names hyvideo_core; ComfyUI imports this package under its custom-node folder, and the
        # extension class must come from the same copy of the package as the model (find_extension compares classes)
        package = __name__.rsplit(".", 1)[0]
        if module.split(".", 1)[0] == "hyvideo_core":
            module = package + module[len("hyvideo_core"):]
        return getattr(importlib.import_module(module), function)(self.config)


@dataclass(frozen=True)
class VariantSpec:
    name: str
    description: str
    transformer: TransformerConfig
    vae: VaeConfig = field(default_factory=VaeConfig)
    sampler: SamplerDefaults = field(default_factory=SamplerDefaults)
    is_test_variant: bool = False
    app: Optional[AppModules] = None   # modules of an application the checkpoint carries (avatar)

    @property
    def latent_channels(self) -> int:
        return self.vae.latent_channels
