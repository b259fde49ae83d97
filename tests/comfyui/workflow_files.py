"""The shipped API workflows with test-size overrides, and what a saved mp4 holds (for the real-server tests)."""
import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def api(name: str, **overrides) -> dict:
    """workflows/api/<name>.json with ``{node_id: {input: value}}`` overrides applied."""
    wf = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    for node_id, inputs in overrides.items():
        wf[node_id]["inputs"].update(inputs)
    return wf


def mp4_streams(path):
    """(video codecs, audio codecs) as imageio-ffmpeg's ffmpeg lists them (no ffprobe needed)."""
    import imageio_ffmpeg

    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, timeout=60).stderr
    return (re.findall(r"Stream #\d+:\d+.*?: Video: (\w+)", text), re.findall(r"Stream #\d+:\d+.*?: Audio: (\w+)", text))
