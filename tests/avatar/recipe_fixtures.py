"""The recipe's test world: the tiny-avatar transformer (seeded random weights), the embedded tiny VAE and text
encoders, a tiny random Whisper of the tiny-avatar's width (8), and sounds as ComfyUI AUDIO dicts."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from hyvideo_core.apps.avatar import AvatarExtension, load_whisper
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.model.extension import install_extension
from hyvideo_core.variants import VARIANTS

RATE = 16000


SMALL_WINDOW = dict(window_latents=5, window_shift=2)   # the toy avatar's: 17 frames per window, cheap to test


def tiny_avatar(seed: int = 0, **window) -> HunyuanVideoTransformer:
    """The tiny-avatar transformer, seeded; ``window`` (window_latents, window_shift) replaces the released 33/10."""
    spec = VARIANTS["tiny-avatar"]
    torch.manual_seed(seed)
    model = HunyuanVideoTransformer(spec.transformer)
    install_extension(model, AvatarExtension(spec.transformer, replace(spec.app.config, **window)))
    with torch.no_grad():   # the release zero-initialises the adapters' output, which would make the sound inert
        for block in model.audio_adapter_blocks:
            block.to_out.weight.normal_(0, 0.2)
    model.variant = "tiny-avatar"
    return model.eval()


def speech_like(seconds: float, seed: int = 0, amplitude: float = 0.4) -> dict:
    """A ComfyUI AUDIO of a 180 Hz buzz whose loudness jumps every 0.2 s (syllables)."""
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    envelope = rng.uniform(0, 1, size=int(np.ceil(seconds / 0.2)) + 1)[(t / 0.2).astype(int)]
    wave = amplitude * envelope * np.sin(2 * np.pi * 180 * t)
    return {"waveform": torch.from_numpy(wave.astype(np.float32))[None, None], "sample_rate": RATE}


def silence(seconds: float) -> dict:
    return {"waveform": torch.zeros(1, 1, int(round(seconds * RATE))), "sample_rate": RATE}


def face_picture(h: int = 64, w: int = 64) -> torch.Tensor:
    """(1, H, W, 3) ComfyUI IMAGE: a skin-coloured disc (the face) on a blue background."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    disc = (((yy - 0.45) ** 2 + (xx - 0.5) ** 2) < 0.08).float()
    return torch.stack([0.2 + 0.7 * disc, 0.3 + 0.3 * disc, 0.8 - 0.4 * disc], dim=-1)[None]


@pytest.fixture(scope="module")
def whisper8(tmp_path_factory):
    """A random Whisper of width 8 (the tiny-avatar's whisper_dim), 4 layers -> 5 hidden states."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    folder = tmp_path_factory.mktemp("whisper8")
    config = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=8, encoder_layers=4, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
                           decoder_ffn_dim=16, max_source_positions=1500, max_target_positions=16,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(folder, safe_serialization=True)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return load_whisper(folder)


@pytest.fixture(scope="module")
def demo():
    """The embedded tiny VAE and text encoders (text-only and the LLaVA folder with a vision tower)."""
    from hyvideo_core import load_vae
    from hyvideo_core.demo_models import ensure_demo_models
    from hyvideo_core.text_encoders import load_text_encoders

    paths = ensure_demo_models()
    return dict(vae=load_vae(paths.vae), encoders=load_text_encoders(paths.text_encoder, paths.clip),
                llava=lambda: load_text_encoders(paths.text_encoder_i2v, paths.clip))
