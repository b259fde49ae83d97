"""Writes the inputs of workflows/avatar.json into workflows/inputs/ (copy them into ComfyUI's input folder):

    hvs_avatar_reference.png   a toy-world talking shape at rest (64x64), the reference image
    hvs_avatar_speech.wav      1.6 s of synthetic speech-like sound (16 kHz mono, 16-bit): a voiced harmonic
                               tone shaped by the toy world's syllable envelope, so the shape has something to
                               say for 40 frames (longer than one 17-frame window of the toy avatar)

Both are pure functions of the seed below, so re-running the script rewrites identical files.

    python scripts/avatar_example_inputs.py            # rewrite the files
    python scripts/avatar_example_inputs.py --check    # exit 1 if the committed files differ
"""
from __future__ import annotations

import io
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hyvideo_core.toy.talking import (HELDOUT_SEED, SAMPLE_RATE, syllable_envelope,  # noqa: E402
                                      talking_clip)

FOLDER = ROOT / "workflows" / "inputs"
REFERENCE = "hvs_avatar_reference.png"
SPEECH = "hvs_avatar_speech.wav"
CLIP_INDEX = 1                 # a held-out toy clip (its caption is the workflow's prompt)
SECONDS = 1.6
SEED = 20251208


def speech(seconds: float = SECONDS, seed: int = SEED, f0: float = 170.0, rate: float = 3.5) -> np.ndarray:
    """Mono float32 in [-0.5, 0.5]: harmonics of ``f0`` with a little vibrato and breath, times a syllable
    envelope at ``rate`` syllables a second."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    envelope = syllable_envelope(rng, rate, seconds, SAMPLE_RATE)
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 4.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    signal = (voiced + 0.3 * rng.standard_normal(n)) * envelope
    return (0.5 * signal / max(float(np.abs(signal).max()), 1e-6)).astype(np.float32)


def wav_bytes(samples: np.ndarray) -> bytes:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def caption() -> str:
    return talking_clip(HELDOUT_SEED, CLIP_INDEX).caption


def render() -> dict:
    return {FOLDER / REFERENCE: png_bytes(talking_clip(HELDOUT_SEED, CLIP_INDEX).reference),
            FOLDER / SPEECH: wav_bytes(speech())}


def main() -> int:
    files = render()
    if "--check" in sys.argv:
        stale = [str(p) for p, data in files.items() if not p.is_file() or p.read_bytes() != data]
        if stale:
            print("out of date (run python scripts/avatar_example_inputs.py):", *stale, sep="\n  ")
            return 1
        return 0
    FOLDER.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        path.write_bytes(data)
        print("wrote", path, f"({len(data)} bytes)")
    print("prompt:", caption())
    return 0


if __name__ == "__main__":
    sys.exit(main())
