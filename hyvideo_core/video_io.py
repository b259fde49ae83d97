"""Reading and writing video files through the ffmpeg binary of imageio-ffmpeg (H.264 .mp4).

Frames are (F, H, W, 3) uint8. A video is written through :func:`~hyvideo_core.atomic_files.atomic_stream`:
ffmpeg encodes into a file that gets its name only when complete, so a failed, interrupted or killed
write never leaves a partial video (and never an ffmpeg process). Metadata (prompt, workflow) goes to
ffmpeg as an ffmetadata file, not on its command line, so it may be any size.
"""
from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from typing import Iterable, Iterator, Optional, Tuple, Union

import numpy as np
import torch

from .atomic_files import atomic_stream
from .errors import InputError, OutputWriteError

Frames = Union[np.ndarray, Iterable[np.ndarray]]
METADATA_TAG = "comment"     # the container tag holding the metadata JSON


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8, rounded (the official code truncates)."""
    if video.dim() != 4 or video.shape[0] != 3:
        raise InputError(f"expected one video of shape (3, F, H, W) in [-1, 1], found {tuple(video.shape)}")
    frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def _check_frame(frame, shape=None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise InputError(f"expected frames (H, W, 3) uint8, found {frame.shape} {frame.dtype}")
    if shape is not None and frame.shape != shape:
        raise InputError(f"every frame must have the first frame's size {shape}; found {frame.shape}")
    return frame


def _first_frame(frames: Frames) -> Tuple[np.ndarray, Iterator[np.ndarray]]:
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(f"expected frames (F, H, W, 3) uint8, found {frames.shape} {frames.dtype}")
    rest = iter(frames)
    first = next(rest, None)
    if first is None:
        raise InputError("no frames to write: a video needs at least one frame")
    return _check_frame(first), rest


def _escape_ffmetadata(text: str) -> str:
    return "".join("\\" + c if c in "=;#\\\n" else c for c in text)


def _unescape_ffmetadata(text: str) -> dict:
    tags, key, value, escaped, in_key = {}, [], [], False, True
    for c in text.split("\n", 1)[1] if text.startswith(";FFMETADATA") else text:
        if escaped:
            (key if in_key else value).append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "\n":
            if not in_key:
                tags["".join(key)] = "".join(value)
            key, value, in_key = [], [], True
        elif c == "=" and in_key:
            in_key = False
        else:
            (key if in_key else value).append(c)
    if not in_key:
        tags["".join(key)] = "".join(value)
    return tags


@contextmanager
def _file_for_child(data) -> Iterator[Tuple[str, Tuple[int, ...]]]:
    """``data`` (bytes, or an array written with ``tofile``) in a file a child process can open: (path in
    the child, fds to pass). Unnamed where the platform allows, so nothing stays in the temp folder even
    if this process is killed."""
    if os.name == "posix":
        with tempfile.TemporaryFile() as f:
            _write_data(f, data)
            f.flush()
            f.seek(0)
            fd = f.fileno()
            yield (f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else f"/dev/fd/{fd}"), (fd,)
        return
    f = tempfile.NamedTemporaryFile(delete=False, suffix=".bin")
    try:
        _write_data(f, data)
        f.close()
        yield f.name, ()
    finally:
        os.remove(f.name)


def _write_data(f, data) -> None:
    if isinstance(data, np.ndarray):
        f.flush()
        data.tofile(f)          # straight to the file: a long sound is never copied into a bytes object
    else:
        f.write(data)


# Sample rates the AAC encoder takes; others are resampled to 48 kHz while muxing.
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
AAC_MAX_CHANNELS = 8


def fit_audio_to_video(samples: np.ndarray, sample_rate: int, frames: int, fps: float) -> np.ndarray:
    """``samples`` (channels, N) cut or padded with silence to the duration of ``frames`` frames at ``fps``."""
    want = int(round(frames * sample_rate / fps))
    have = samples.shape[1]
    if have >= want:
        return samples[:, :want]
    return np.concatenate([samples, np.zeros((samples.shape[0], want - have), samples.dtype)], axis=1)


def _check_audio(audio) -> Tuple[np.ndarray, int]:
    """(samples (channels, N) float32, rate) from ``write_mp4``'s ``audio`` argument, or InputError."""
    if not (isinstance(audio, tuple) and len(audio) == 2):
        raise InputError(f"audio: expected (samples (channels, N) float32, sample_rate), found {type(audio).__name__}")
    samples, rate = audio
    samples = np.asarray(samples.detach().cpu() if isinstance(samples, torch.Tensor) else samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[None]
    if samples.ndim != 2 or not 1 <= samples.shape[0] <= AAC_MAX_CHANNELS:
        raise InputError(f"audio: expected samples (channels, N) with 1 to {AAC_MAX_CHANNELS} channels, found shape "
                         f"{samples.shape}; mix the sound down to stereo first")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1000 <= rate <= 768000:
        raise InputError(f"audio: expected a whole sample rate in Hz (1000 to 768000), found {rate!r}")
    if not np.isfinite(samples).all():
        raise InputError("audio: the samples hold NaN or infinite values; check the node that made the sound")
    return samples, int(rate)


def _ffmpeg_failure(proc: subprocess.Popen, log, path: str) -> OutputWriteError:
    log.seek(0)
    text = log.read().decode("utf-8", "replace").strip()
    if proc.returncode is not None and proc.returncode < 0:
        signal_number = -proc.returncode
        if signal_number == getattr(signal, "SIGXFSZ", None):
            text += "\nFile too large (the process file-size limit)"
        text += f"\nffmpeg was stopped by signal {signal.Signals(signal_number).name}"
    tail = text[-1500:] or f"ffmpeg exited with code {proc.returncode}"
    for marker, code in (("No space left", errno.ENOSPC), ("Disk quota", errno.EDQUOT),
                         ("File too large", errno.EFBIG), ("Read-only file system", errno.EROFS)):
        if marker in text:
            err = OutputWriteError(code, f"could not write {path!r}: {os.strerror(code)}; free disk space or "
                                         f"choose a writable output folder (ffmpeg said: {tail})")
            break
    else:
        err = OutputWriteError(errno.EIO, f"ffmpeg could not encode {path!r}: {tail}")
    return err


def _send(proc: subprocess.Popen, data, log, path: str) -> None:
    """One frame to ffmpeg (None: end of input); a dead ffmpeg becomes an error saying why it stopped."""
    try:
        if data is None:
            proc.stdin.close()
        else:
            proc.stdin.write(data)
    except OSError:        # BrokenPipeError and friends: ffmpeg has exited
        proc.wait()
        raise _ffmpeg_failure(proc, log, path) from None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.stdin.close()
    except OSError:
        pass
    proc.wait()


def write_mp4(frames: Frames, path: str | os.PathLike, fps: float = 24.0, quality: float = 8.0,
              metadata: Optional[dict] = None, audio: Optional[Tuple[np.ndarray, int]] = None) -> str:
    """Encode frames as H.264 .mp4 (yuv420p, playable everywhere), atomically.

    ``frames``: an (F, H, W, 3) uint8 array, or any iterable of (H, W, 3) uint8 frames (streamed:
    a generator never has to hold the whole video). ``quality`` is 0..10 (10 = best; CRF 51..0).
    ``metadata`` (e.g. prompt and workflow, any size) is stored as JSON in the container's ``comment``
    tag; :func:`read_metadata` reads it back. ``audio`` = (samples (channels, N) float32 in [-1, 1],
    sample_rate) adds an AAC sound track in the same ffmpeg run, cut or padded with silence to the
    video's duration (a stream of frames is then gathered in memory first, to know that duration).
    Nothing appears at ``path`` unless the whole video was
    written; a failure raises (InputError for bad frames or sound, OutputWriteError for a full disk or
    a read-only folder) and leaves no file and no ffmpeg process behind."""
    import imageio_ffmpeg

    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, found {fps!r}")
    if not (isinstance(quality, (int, float)) and 0 <= quality <= 10):
        raise InputError(f"quality must be between 0 and 10 (10 = best), found {quality!r}")
    first, rest = _first_frame(frames)
    h, w, _ = first.shape
    if h % 2 or w % 2 or not h or not w:
        raise InputError(f"H.264 needs a positive even width and height, found {w}×{h}")
    path = os.fspath(path)
    meta = b""
    if metadata:
        try:
            text = json.dumps(metadata, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InputError(f"metadata must be JSON-serialisable (strings, numbers, lists, dicts): {exc}") from None
        meta = (";FFMETADATA1\n" + METADATA_TAG + "=" + _escape_ffmetadata(text) + "\n").encode("utf-8")
    sound = b""
    if audio is not None:
        samples, sample_rate = _check_audio(audio)
        if not isinstance(frames, np.ndarray):
            # the sound is fitted to the video's length before ffmpeg starts (its -shortest overshoots by up to
            # a second when the sound is ready long before the frames), so a stream of frames is gathered first
            frames = np.stack([first, *(_check_frame(f, first.shape) for f in rest)])
            first, rest = frames[0], iter(frames[1:])
        samples = fit_audio_to_video(samples, sample_rate, frames.shape[0], fps)
        sound = np.ascontiguousarray(samples.T, dtype="<f4")        # interleaved, as ffmpeg's f32le wants
    rate = str(Fraction(fps).limit_denominator(1_000_000))
    with atomic_stream(path) as out, _file_for_child(meta) as (meta_path, meta_fds), \
            _file_for_child(sound) as (sound_path, sound_fds), tempfile.TemporaryFile() as log:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}", "-pix_fmt", "rgb24", "-r", rate,
               "-i", "pipe:0"]
        maps = ["-map", "0:v"]
        if metadata:
            cmd += ["-f", "ffmetadata", "-i", meta_path]
            maps += ["-map_metadata", "1"]
        if audio is not None:
            cmd += ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(samples.shape[0]), "-i", sound_path]
            maps += ["-map", f"{2 if metadata else 1}:a", "-c:a", "aac", "-b:a", "192k"]
            if sample_rate not in AAC_SAMPLE_RATES:
                maps += ["-ar", "48000"]
        else:
            maps += ["-an"]
        cmd += maps + ["-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", str(int((1 - quality / 10) * 51)),
                       "-movflags", "+faststart", "-f", "mp4", out.child_path]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                                pass_fds=out.pass_fds + (meta_fds if metadata else ()) +
                                (sound_fds if audio is not None else ()),
                                **({"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}))
        try:
            frame = first
            while frame is not None:
                _send(proc, np.ascontiguousarray(frame).data, log, path)
                frame = next(rest, None)
                if frame is not None:
                    frame = _check_frame(frame, first.shape)
            _send(proc, None, log, path)
            if proc.wait() != 0:
                raise _ffmpeg_failure(proc, log, path)
        finally:
            _stop(proc)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict :func:`write_mp4` stored in ``path`` ({} when there is none)."""
    import imageio_ffmpeg

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"video file not found: {path!r}")
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", path,
                           "-f", "ffmetadata", "pipe:1"], capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise InputError(f"could not read {path!r} as a video: {proc.stderr.decode('utf-8', 'replace')[-500:]}")
    raw = _unescape_ffmetadata(proc.stdout.decode("utf-8", "replace")).get(METADATA_TAG)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {METADATA_TAG: raw}     # a comment some other program wrote
    return value if isinstance(value, dict) else {METADATA_TAG: value}


@contextmanager
def decoded_frames(path: str) -> Iterator[Tuple[Iterator[np.ndarray], float, Tuple[int, int]]]:
    """Frames one at a time as ffmpeg decodes them, the frame rate and (H, W); stops ffmpeg on leaving."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise InputError(f"could not read video {path!r} ({str(exc).strip().splitlines()[0] if str(exc) else exc!r}); "
                         f"re-encode it as H.264 .mp4") from None
    w, h = meta["size"]
    try:
        yield (np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader), float(meta["fps"]), (h, w)
    finally:
        reader.close()


def read_video(path: str | os.PathLike) -> Tuple[np.ndarray, float]:
    """Decode a video file to (F, H, W, 3) uint8 frames and its frame rate."""
    path = os.fspath(path)
    with decoded_frames(path) as (frames, fps, (h, w)):
        kept = list(frames)
    if not kept:
        return np.zeros((0, h, w, 3), np.uint8), fps
    return np.stack(kept), fps


VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")


def load_frames(path: str | os.PathLike, *, skip_first: int = 0, every_nth: int = 1, max_frames: int = 0,
                four_n_plus_one: bool = False) -> Tuple[np.ndarray, float]:
    """Decode ``path`` and select frames: skip ``skip_first``, keep every ``every_nth``, at most
    ``max_frames`` (0 = all), optionally trimmed to the largest 4n+1 count the VAE accepts.
    Decoding stops as soon as ``max_frames`` are kept, and only kept frames are held in memory.
    Returns (F, H, W, 3) uint8 frames and the resulting frame rate."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"video file not found: {path!r}")
    if every_nth < 1 or skip_first < 0 or max_frames < 0:
        raise InputError(f"expected skip_first >= 0, every_nth >= 1, max_frames >= 0; found "
                         f"{skip_first}, {every_nth}, {max_frames}")
    kept = []
    with decoded_frames(path) as (frames, fps, _):
        for index, frame in enumerate(frames):
            if index >= skip_first and (index - skip_first) % every_nth == 0:
                kept.append(frame)
                if max_frames and len(kept) == max_frames:
                    break
    if four_n_plus_one and kept:
        kept = kept[: (len(kept) - 1) // 4 * 4 + 1]
    if not kept:
        raise InputError(f"{path!r}: no frames left after skipping {skip_first} and keeping every "
                         f"{every_nth}th; lower skip_first")
    return np.stack(kept), fps / every_nth
