"""Video-to-audio (Foley): the HunyuanVideo-Foley model family beside the video transformer.

    from hyvideo_core.v2a import load_foley, sample_audio_latents, FoleyConditions
"""
from .config import FOLEY_VARIANTS, FoleyConfig, FoleyVariant, get_foley_variant
from .load import load_foley
from .model import HunyuanVideoFoley
from .long_audio import decode_audio, latent_frames_for, long_audio_noise, sample_long_audio_latents
from .sample import FoleyConditions, sample_audio_latents

__all__ = ["FOLEY_VARIANTS", "FoleyConfig", "FoleyVariant", "get_foley_variant", "load_foley", "HunyuanVideoFoley",
           "FoleyConditions", "sample_audio_latents", "sample_long_audio_latents", "long_audio_noise",
           "latent_frames_for", "decode_audio"]
