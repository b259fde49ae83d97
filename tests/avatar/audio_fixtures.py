"""Sounds and a tiny random Whisper for the audio tests (made at test time; nothing is downloaded)."""
from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch


def tiny_whisper_folder(folder: Path, with_extractor: bool = True) -> Path:
    """A random Whisper (d_model 16, 4 encoder layers -> 5 hidden states, 80 mel bins) saved as safetensors."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    config = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=16, encoder_layers=4, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=16,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(folder, safe_serialization=True)
    if with_extractor:
        WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def tone(freq: float, seconds: float, rate: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    """(samples, channels) float32 sine; channel c is scaled by 1/(c+1) so a downmix is visible."""
    t = np.arange(int(round(seconds * rate))) / rate
    base = amplitude * np.sin(2 * np.pi * freq * t)
    return np.stack([base / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM through the stdlib ``wave`` module."""
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True, timeout=120)


def encode_file(source_wav: Path, path: Path, video: bool = False) -> Path:
    """``source_wav`` re-encoded as mp3, or as an mp4 with a small H.264 picture and an AAC track."""
    if video:
        ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=32x32:r=25", "-i", str(source_wav), "-shortest",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    else:
        ffmpeg("-i", str(source_wav), "-c:a", "libmp3lame", str(path))
    return path


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """A folder holding the tiny random Whisper (import this fixture into a test module to use it)."""
    return tiny_whisper_folder(tmp_path_factory.mktemp("whisper-tiny-random"))


@pytest.fixture(scope="module")
def whisper(whisper_dir):
    """The tiny random Whisper loaded by the product's own loader."""
    from hyvideo_core.apps.avatar.audio import load_whisper

    return load_whisper(whisper_dir)
