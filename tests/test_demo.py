"""The README's main job, end to end: prompt -> .mp4 through the production loaders."""
import json
import subprocess
import sys

import pytest

from hyvideo_core.video_io import read_video


@pytest.mark.parametrize("model", ["toy", "tiny-demo"])
def test_generate_writes_the_requested_video(tmp_path, model):
    out = tmp_path / "clip.mp4"
    env = {"HVS_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "hyvideo_core", "generate", "--prompt", "a blue square moving up", "--model", model,
         "--frames", "9", "--height", "64", "--width", "96", "--steps", "2", "--fps", "12", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert f"({'toy' if model == 'toy' else 'tiny'})" in result.stdout
    frames, fps = read_video(out)
    assert frames.shape == (9, 64, 96, 3)
    assert fps == 12
    probe = subprocess.run([_ffmpeg(), "-i", str(out)], capture_output=True, text=True)
    assert "h264" in probe.stderr and "a blue square moving up" in probe.stderr   # prompt kept as metadata


def test_bad_request_is_a_clear_error_and_writes_nothing(tmp_path):
    out = tmp_path / "clip.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "hyvideo_core", "generate", "--prompt", "x", "--frames", "30", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={"HVS_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "4n+1" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_default_is_the_toy_model_at_its_native_size(tmp_path):
    out = tmp_path / "clip.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "hyvideo_core", "generate", "--prompt", "a red circle moving left slowly on a dark "
         "background", "--steps", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "(toy)" in result.stdout
    frames, _ = read_video(out)
    assert frames.shape == (17, 64, 64, 3)


def test_transformer_without_the_other_paths_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hyvideo_core", "generate", "--prompt", "x", "--transformer", "t.safetensors",
         "--out", str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "--vae, --text-encoder, --clip" in result.stderr and "Traceback" not in result.stderr


def _ffmpeg():
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
