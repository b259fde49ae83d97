"""The README's main job, end to end: prompt -> .mp4 through the production loaders."""
import json
import subprocess
import sys

from hyvideo_core.video_io import read_video


def test_generate_writes_the_requested_video(tmp_path):
    out = tmp_path / "clip.mp4"
    env = {"HVS_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "hyvideo_core", "generate", "--prompt", "a blue square moving up",
         "--frames", "9", "--height", "64", "--width", "96", "--steps", "2", "--fps", "12", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
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


def _ffmpeg():
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
