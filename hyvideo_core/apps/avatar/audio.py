"""Audio windows for HunyuanVideo-Avatar: Whisper features of a sound and the per-video-frame windows.

As released (shared/spec/official_apps.md §B.3): 16 kHz mono; Whisper's log-mel features per 30 s chunk
(480,000 samples -> [80, 3000]); the encoder's 5 hidden states (embeddings + 4 layers) stacked per 50 Hz
frame; 4 zero frames prepended; video frame f takes the 10 frames starting at 2f (25 fps) or 4f
(12.5 fps). The release encodes only the first 30 s and caps videos at 400 frames (16 s); here every
30 s chunk is encoded and the chunks' frames are concatenated, so a sound of any length gets windows
(chunk k's frames are 50 Hz frames 1500k.. of the whole sound, as one long encoding would number them).

Silence is not an error: it gives the windows of Whisper-of-silence, which the model reads as "mouth
at rest", the same input the released pipeline gets for a quiet clip.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Optional

import numpy as np
import torch

from ...audio_io import AudioSource, load_audio
from ...errors import InputError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 30 * SAMPLE_RATE          # one Whisper input: 30 s -> 3000 mel frames -> 1500 encoder frames
WHISPER_HZ = 50                           # encoder frames per second
LEAD_ZERO_FRAMES = 4                      # zero frames the release prepends before windowing
WINDOW = 10                               # encoder frames per video frame's window
_STEP_FOR_FPS = {Fraction(25): 2, Fraction(25, 2): 4}    # encoder frames between consecutive video frames
_CHUNKS_PER_BATCH = 4                     # 30 s chunks through the encoder at once


@dataclass
class WhisperFeatures:
    """A Whisper encoder and its feature extractor, loaded offline by :func:`load_whisper`."""
    encoder: torch.nn.Module
    extractor: Any                       # transformers.WhisperFeatureExtractor
    layers: int                          # hidden states per frame (encoder layers + 1)
    dim: int                             # channels of each hidden state

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device


def load_whisper(folder: str | os.PathLike, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> WhisperFeatures:
    """Whisper's encoder and feature extractor from a local folder (a Hugging Face Whisper folder, e.g.
    ``models/audio_encoders/whisper-tiny``: config.json + model.safetensors [+ preprocessor_config.json]) or
    a single ``.safetensors`` file of Whisper weights as ComfyUI keeps in ``models/audio_encoders``.

    Nothing is downloaded. Only safetensors weights are read (a pickle could run code). A folder without
    preprocessor_config.json, and a single file, get Whisper's standard extractor for the mel-bin count."""
    from safetensors import SafetensorError
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    folder = os.fspath(folder)
    if os.path.isfile(folder) and folder.endswith(".safetensors"):
        encoder, config = _encoder_from_file(folder)
        return _features(encoder, WhisperFeatureExtractor(feature_size=config.num_mel_bins), config, folder,
                         device, dtype)
    what = "a Whisper folder (config.json + model.safetensors, e.g. openai/whisper-tiny)"
    if not os.path.isdir(folder):
        raise InputError(f"audio encoder: expected {what} or a Whisper .safetensors file, found neither at "
                         f"{folder!r}; put whisper-tiny in ComfyUI/models/audio_encoders/whisper-tiny")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise InputError(f"audio encoder: expected {what}; {folder!r} has no config.json")
    if not any(name.endswith(".safetensors") for name in os.listdir(folder)):
        raise InputError(f"audio encoder: expected {what}; {folder!r} has no .safetensors weights (pickled .bin "
                         f"files are not read: they can run code); download model.safetensors")
    try:
        config = WhisperConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"audio encoder: {folder!r}/config.json is not a Whisper config ({exc})") from None
    if getattr(config, "model_type", None) != "whisper":
        raise InputError(f"audio encoder: expected a Whisper model, found model_type "
                         f"{getattr(config, 'model_type', None)!r} in {folder!r}")
    try:
        model = WhisperModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise InputError(f"audio encoder: could not load the Whisper weights in {folder!r}: {exc}") from None
    if os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        extractor = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
    else:
        log.info("audio encoder %s has no preprocessor_config.json: using Whisper's standard %d-bin extractor",
                 folder, config.num_mel_bins)
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return _features(model.get_encoder(), extractor, config, folder, device, dtype)


def _features(encoder, extractor, config, where: str, device, dtype) -> WhisperFeatures:
    if extractor.sampling_rate != SAMPLE_RATE or extractor.n_samples != CHUNK_SAMPLES:
        raise InputError(f"audio encoder: expected Whisper's 16 kHz / 30 s feature extractor, found "
                         f"{extractor.sampling_rate} Hz / {extractor.n_samples} samples in {where!r}")
    encoder = encoder.to(device=device, dtype=dtype).eval()
    return WhisperFeatures(encoder, extractor, layers=config.encoder_layers + 1, dim=config.d_model)


def _encoder_from_file(path: str):
    """The encoder of a single Whisper safetensors file (keys ``[model.]encoder.*``, decoder ignored).

    The sizes come from the tensor shapes; the head count is width / 64, true of every Whisper size."""
    from safetensors import SafetensorError, safe_open
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    try:
        with safe_open(path, "pt") as f:
            names = list(f.keys())
            prefix = next((p for p in ("model.encoder.", "encoder.") if p + "conv1.weight" in names), None)
            if prefix is None:
                raise InputError(f"audio encoder: expected Whisper weights ('model.encoder.conv1.weight', ...) in "
                                 f"{path!r}, found other keys (e.g. {names[:3]}); use openai/whisper-tiny")
            state = {k[len(prefix):]: f.get_tensor(k) for k in names if k.startswith(prefix)}
    except (OSError, SafetensorError) as exc:
        raise InputError(f"audio encoder: could not read {path!r} as safetensors ({exc}); download it again") from None
    try:
        width, mels = state["conv1.weight"].shape[:2]
        layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
        config = WhisperConfig(d_model=width, num_mel_bins=mels, encoder_layers=layers,
                               encoder_attention_heads=max(1, width // 64),
                               encoder_ffn_dim=state["layers.0.fc1.weight"].shape[0],
                               max_source_positions=state["embed_positions.weight"].shape[0])
    except (KeyError, ValueError, IndexError) as exc:
        raise InputError(f"audio encoder: {path!r} is missing Whisper encoder tensors ({exc})") from None
    encoder = WhisperEncoder(config)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"audio encoder: {path!r} does not match a Whisper encoder of width {width}, {layers} "
                         f"layers: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return encoder, config


@torch.no_grad()
def encode_whisper(whisper: WhisperFeatures, waveform) -> torch.Tensor:
    """(frames at 50 Hz, layers, dim) Whisper hidden states of a 16 kHz mono waveform of any length.

    The sound is cut in 30 s chunks, as released; each chunk's features are made and encoded on their
    own and the results concatenated. The last chunk is padded with silence to 30 s by the extractor, so
    the frame count is always a multiple of 1500 (the tail past the sound is Whisper-of-padding, as in the
    release, which keeps those frames too)."""
    wave = np.asarray(waveform.detach().cpu() if isinstance(waveform, torch.Tensor) else waveform,
                      dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise InputError(f"waveform: expected mono 16 kHz samples (N,) with N > 0, found shape {wave.shape}; "
                         f"decode the sound with load_audio first")
    chunks = [wave[i:i + CHUNK_SAMPLES] for i in range(0, wave.size, CHUNK_SAMPLES)]
    param = next(whisper.encoder.parameters())
    out = []
    for i in range(0, len(chunks), _CHUNKS_PER_BATCH):
        batch = chunks[i:i + _CHUNKS_PER_BATCH]
        feats = whisper.extractor(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        hidden = whisper.encoder(feats.to(device=param.device, dtype=param.dtype),
                                 output_hidden_states=True).hidden_states
        stacked = torch.stack(hidden, dim=2)                       # (chunks, 1500, layers, dim)
        out.append(stacked.reshape(-1, *stacked.shape[2:]))
    return torch.cat(out, dim=0)


def _step(fps: float) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise InputError(f"fps: expected the number 25 or 12.5, found {fps!r}")
    try:
        return _STEP_FOR_FPS[Fraction(fps).limit_denominator(1000)]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"fps: the Avatar model was trained at 25 or 12.5 frames per second, found {fps!r}; "
                         f"use 25 (or 12.5)") from None


def video_frames_for(audio_samples: int, fps: float = 25, sample_rate: int = SAMPLE_RATE) -> int:
    """Whole video frames the sound covers: ``samples // 640`` at 25 fps and 16 kHz, as released.

    (At 12.5 fps the release still counts 25-fps frames, running past the sound; here a frame at 12.5 fps
    covers 1280 samples, so the video ends with the sound.)"""
    _step(fps)
    if audio_samples < 0:
        raise InputError(f"audio_samples: expected a count >= 0, found {audio_samples}")
    return int(audio_samples * Fraction(fps).limit_denominator(1000) // sample_rate)


def audio_windows(feats: torch.Tensor, video_frames: int, fps: float = 25) -> torch.Tensor:
    """(1, video_frames, 10, layers, dim) windows of Whisper frames, the released rule at any length.

    ``feats`` is :func:`encode_whisper`'s (frames, layers, dim). After 4 zero frames are prepended,
    frame f takes frames ``[s·f, s·f + 10)`` with s = 2 at 25 fps and 4 at 12.5 fps. A window reaching past
    the encoded frames (only possible for a sound filling its last 30 s chunk exactly) is completed with
    zeros, the same value as the lead-in frames."""
    if not isinstance(feats, torch.Tensor) or feats.dim() != 3:
        found = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise InputError(f"feats: expected Whisper features (frames, layers, dim), found {found}")
    step = _step(fps)
    if not isinstance(video_frames, int) or video_frames < 1:
        raise InputError(f"video_frames: expected a whole number >= 1, found {video_frames!r}; the sound is "
                         f"shorter than one video frame")
    lead = feats.new_zeros(LEAD_ZERO_FRAMES, *feats.shape[1:])
    need = step * (video_frames - 1) + WINDOW
    tail = feats.new_zeros(max(0, need - LEAD_ZERO_FRAMES - feats.shape[0]), *feats.shape[1:])
    padded = torch.cat([lead, feats, tail], dim=0)
    index = (torch.arange(video_frames)[:, None] * step + torch.arange(WINDOW)[None, :]).to(feats.device)
    return padded[index][None]


def audio_windows_for(source: AudioSource, whisper: WhisperFeatures, fps: float = 25,
                      video_frames: Optional[int] = None) -> torch.Tensor:
    """Windows for a sound file (or ComfyUI AUDIO): decode, encode every 30 s chunk, window.

    ``video_frames`` defaults to the frames the sound covers (:func:`video_frames_for`); a larger count
    gets windows of Whisper-of-silence past the sound."""
    wave, rate = load_audio(source, SAMPLE_RATE)
    frames = video_frames if video_frames is not None else video_frames_for(wave.size, fps, rate)
    if frames < 1:
        raise InputError(f"audio: expected at least one video frame of sound ({1 / fps:.2f} s), found "
                         f"{wave.size / rate:.3f} s")
    wave = np.concatenate([wave, np.zeros(max(0, frames * int(rate / fps) - wave.size), np.float32)])
    return audio_windows(encode_whisper(whisper, wave), frames, fps)
