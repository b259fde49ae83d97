"""Decoding sound to a mono float32 waveform through the ffmpeg binary of imageio-ffmpeg.

Any file ffmpeg reads (wav, mp3, flac, ogg, m4a, and the sound track of mp4/mkv/mov videos) becomes one
channel at the requested sample rate; ffmpeg does the resampling (``-ar``) and the channels are averaged
here (the downmix librosa does in the released pipeline), so neither torchaudio nor librosa is needed.
:func:`load_audio_channels` keeps the file's own channels and sample rate (what ComfyUI's AUDIO holds).
ComfyUI's AUDIO value (``{"waveform": (B, C, N), "sample_rate": sr}``) is accepted too: it is averaged to mono here and, when its rate differs, resampled
by the same ffmpeg (raw samples piped through it), so a file and the same sound given as AUDIO agree.

Reads are bounded: decoding stops with an error past ``max_seconds`` (one hour by default, about 230 MB
of float32 at 16 kHz) instead of filling memory with a runaway or hostile file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from .errors import InputError

AudioSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]
DEFAULT_MAX_SECONDS = 3600.0
_READ_BLOCK = 1 << 20
_HEADER_ALLOWANCE = 1 << 16     # bytes of WAV header (and metadata chunks) before the samples
_MAX_NATIVE_RATE = 384000       # bounds a native-rate read until the WAV header says the rate
_NO_WINDOW = {"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}

# ffmpeg's wording -> what the user should hear (expected / found / what to do)
_FFMPEG_REASONS = (
    ("matches no streams", "it has no audio stream (a video without sound?)",
     "give a file with a sound track, or an audio file"),
    ("does not contain any stream", "it has no audio stream", "give a file with a sound track, or an audio file"),
    ("Invalid data found when processing input", "ffmpeg does not recognise it as audio or video",
     "give an audio file (wav, mp3, flac, ogg, m4a) or a video with sound"),
    ("no decoder found", "its audio codec is not supported by this ffmpeg build",
     "convert it, e.g. to wav or mp3, with any audio tool"),
    ("Decoder (codec", "its audio codec is not supported by this ffmpeg build",
     "convert it, e.g. to wav or mp3, with any audio tool"),
    ("could not find codec parameters", "its audio codec is not supported or the stream is damaged",
     "convert it, e.g. to wav or mp3, with any audio tool"),
    ("Error while decoding stream", "its audio stream is damaged", "re-export the sound to wav or mp3"),
)


def load_audio(source: AudioSource, sample_rate: int = 16000, *,
               max_seconds: float = DEFAULT_MAX_SECONDS) -> Tuple[np.ndarray, int]:
    """Mono float32 waveform (N,) at ``sample_rate`` and that rate, from a file path or a ComfyUI AUDIO dict.

    Silence decodes to zeros like any sound; a file holding no samples at all, no audio stream, or data
    ffmpeg cannot read raises :class:`InputError` saying what was expected, what was found and what to do."""
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise InputError(f"sample_rate: expected a positive whole number of Hz, found {sample_rate!r}")
    if isinstance(source, Mapping):
        return _from_comfy_audio(source, sample_rate, max_seconds), sample_rate
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"audio: expected a file path or a ComfyUI AUDIO dict {{'waveform', 'sample_rate'}}, "
                         f"found {type(source).__name__}")
    samples, _ = _decode_file(source, sample_rate, max_seconds)
    return _downmix(samples), sample_rate


def load_audio_channels(path: "str | os.PathLike[str]", *,
                        max_seconds: float = DEFAULT_MAX_SECONDS) -> Tuple[np.ndarray, int]:
    """The first sound track of a file as it is: float32 (channels, N) at the file's own sample rate.

    What ComfyUI's AUDIO holds (``{"waveform": (1, C, N), "sample_rate"}``); no resampling, no downmix.
    Errors as :func:`load_audio`."""
    samples, rate = _decode_file(path, None, max_seconds)
    return np.ascontiguousarray(samples.T), rate


def _decode_file(source, sample_rate: Optional[int], max_seconds: float) -> Tuple[np.ndarray, int]:
    """(N, C) float32 samples of a file's first sound track and their rate (``sample_rate``, or the file's own
    with None); a stream with no samples is an error."""
    path = _checked_file(source)
    samples, rate = _run_ffmpeg(["-i", path], None, sample_rate, max_seconds, path)
    if samples.size == 0:
        raise InputError(f"audio file {path!r}: expected sound, found an audio stream with no samples "
                         f"(zero length); give a recording at least one frame long")
    return samples, rate


def _checked_file(source) -> str:
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"audio: expected a file path, found {type(source).__name__}")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise InputError(f"audio file not found: {path!r}; check the path (audio or video file with sound)")
    if not os.path.isfile(path):
        raise InputError(f"audio: expected a file, found a folder or device at {path!r}")
    if os.path.getsize(path) == 0:
        raise InputError(f"audio file {path!r} is empty (0 bytes); give an audio file or a video with sound")
    return path


def _downmix(frames: np.ndarray) -> np.ndarray:
    """(N, C) -> (N,): the plain mean over channels (ffmpeg's ``-ac 1`` mixes stereo at 1/sqrt(2) per
    channel, louder than the average the released pipeline's librosa takes)."""
    return frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0].astype(np.float32)


def _from_comfy_audio(audio: Mapping[str, Any], sample_rate: int, max_seconds: float) -> np.ndarray:
    wave, rate = audio.get("waveform"), audio.get("sample_rate")
    if not isinstance(wave, torch.Tensor) or wave.dim() not in (2, 3) or (wave.dim() == 3 and wave.shape[0] != 1):
        found = tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__
        raise InputError(f"AUDIO: expected 'waveform' of shape (1, channels, samples), found {found}; "
                         f"pass one clip at a time")
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
        raise InputError(f"AUDIO: expected a positive whole 'sample_rate', found {rate!r}")
    wave = wave.reshape(-1, wave.shape[-1]) if wave.dim() == 2 else wave[0]
    if wave.shape[-1] == 0 or wave.shape[0] == 0:
        raise InputError(f"AUDIO: expected sound, found {wave.shape[-1]} samples in {wave.shape[0]} channels")
    if wave.shape[-1] > max_seconds * int(rate):
        raise InputError(f"AUDIO is {wave.shape[-1] / int(rate):.0f} s long, over the {max_seconds:.0f} s limit; "
                         f"trim it or raise max_seconds")
    mono = wave.detach().to("cpu", torch.float32).mean(dim=0).contiguous().numpy()
    if not np.isfinite(mono).all():
        raise InputError("AUDIO: the waveform holds NaN or infinite samples; check the node that made it")
    if int(rate) == sample_rate:
        return mono
    raw = ["-f", "f32le", "-ar", str(int(rate)), "-ac", "1", "-i", "pipe:0"]     # already mono
    return _downmix(_run_ffmpeg(raw, mono.astype("<f4").tobytes(), sample_rate, max_seconds, "AUDIO input")[0])


def _run_ffmpeg(inputs, stdin_bytes, sample_rate: Optional[int], max_seconds: float,
                name: str) -> Tuple[np.ndarray, int]:
    """ffmpeg ``inputs`` -> first audio stream as float32 (N, channels) at ``sample_rate`` (None: the
    stream's own rate) and that rate, at most ``max_seconds``."""
    import imageio_ffmpeg

    resample = ["-ar", str(sample_rate)] if sample_rate else []
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *(["-nostdin"] if stdin_bytes is None else []),
           "-loglevel", "error", *inputs, "-map", "0:a:0", "-vn", *resample, "-c:a", "pcm_f32le",
           "-f", "wav", "pipe:1"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL if stdin_bytes is None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, **_NO_WINDOW)
        feeder = None
        if stdin_bytes is not None:
            feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin_bytes), daemon=True)
            feeder.start()
        blocks, size, too_long, layout = [], 0, False, None
        try:
            while True:
                block = proc.stdout.read(_READ_BLOCK)
                if not block:
                    break
                blocks.append(block)
                size += len(block)
                if layout is None:
                    layout = _wav_layout(b"".join(blocks))
                channels, rate = (layout[0], layout[1]) if layout else (8, sample_rate or _MAX_NATIVE_RATE)
                limit = channels * int(max_seconds * rate) * 4 + _HEADER_ALLOWANCE
                if size > limit:
                    too_long = True
                    break
        finally:
            if proc.poll() is None and too_long:
                proc.kill()
            proc.stdout.close()
            proc.wait()
            if feeder is not None:
                feeder.join()
        if too_long:
            raise InputError(f"{name}: longer than the {max_seconds:.0f} s limit for one sound; trim it, or "
                             f"pass a larger max_seconds")
        if proc.returncode != 0:
            log.seek(0)
            raise InputError(_explain(name, log.read().decode("utf-8", "replace")))
    data = b"".join(blocks)
    layout = _wav_layout(data)
    if layout is None:
        raise InputError(f"{name}: ffmpeg produced no readable audio; convert it to wav or mp3")
    channels, rate, offset = layout
    usable = (len(data) - offset) // (4 * channels) * 4 * channels
    frames = np.frombuffer(data, dtype="<f4", count=usable // 4, offset=offset).reshape(-1, channels)
    return frames, rate


def _wav_layout(data: bytes):
    """(channels, sample rate, byte offset of the samples) of ffmpeg's streamed WAV header, or None if not
    all there yet.

    Streamed, ffmpeg cannot go back to fill in the sizes, so the data chunk's size is not trusted: the
    samples run to the end of the stream."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, channels, rate = 12, None, None
    while pos + 8 <= len(data):
        tag, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag == b"data":
            return (channels, rate, pos + 8) if channels and rate else None
        if tag == b"fmt " and pos + 16 <= len(data):
            channels = int.from_bytes(data[pos + 10:pos + 12], "little")
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
        pos += 8 + length + (length & 1)
    return None


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
    except OSError:       # ffmpeg stopped early; its own message explains why
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _explain(name: str, message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    said = " / ".join(lines[-3:])[-400:] or "no message"
    for marker, found, todo in _FFMPEG_REASONS:
        if marker.lower() in message.lower():
            return f"{name}: expected an audio or video file with sound, but {found}; {todo} (ffmpeg said: {said})"
    return (f"{name}: expected an audio or video file with sound, but ffmpeg could not decode it; convert it to "
            f"wav or mp3 (ffmpeg said: {said})")
