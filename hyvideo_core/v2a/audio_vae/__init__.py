"""The Foley audio VAE: DAC-style, continuous, 48 kHz mono waveform <-> 128-d latents at 50 Hz."""
from .load import load_audio_vae, save_audio_vae
from .model import DacConfig, DacVae

__all__ = ["DacConfig", "DacVae", "load_audio_vae", "save_audio_vae"]
