"""A video with sound whose frames fail half-way (a node raising, a cancelled run) or whose ffmpeg dies:
no file appears, an earlier one is kept, no ffmpeg is left (the sound's data is an unnamed temporary file)."""
import os
import signal
import threading

import numpy as np
import pytest

from hyvideo_core.errors import OutputWriteError
from hyvideo_core.video_io import write_mp4
from tests.robustness.checks import ffmpeg_children, wait_until

pytestmark = pytest.mark.robustness

SOUND = (np.random.default_rng(0).uniform(-0.5, 0.5, (2, 48000)).astype(np.float32), 48000)


def _frames_then(exc, count=6):
    for i in range(count):
        yield np.full((32, 32, 3), i * 20, np.uint8)
    raise exc


@pytest.mark.parametrize("exc", [RuntimeError("decode failed"), KeyboardInterrupt()], ids=["error", "cancel"])
def test_failing_frames_leave_no_muxed_file(tmp_path, exc):
    target = tmp_path / "video.mp4"
    target.write_bytes(b"earlier")
    with pytest.raises(type(exc)):
        write_mp4(_frames_then(exc), target, fps=25, audio=SOUND)
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]
    assert wait_until(lambda: not ffmpeg_children(), 5), ffmpeg_children()


def test_killed_ffmpeg_while_muxing_is_a_clear_error(tmp_path):
    import imageio_ffmpeg

    imageio_ffmpeg.get_ffmpeg_exe()      # its one-time `ffmpeg -version` probe must not be the process killed
    frames = np.random.default_rng(1).integers(0, 255, (600, 128, 128, 3), dtype=np.uint8)
    killed = []

    def kill_ffmpeg_once_it_runs():
        if wait_until(lambda: bool(ffmpeg_children()), 20):
            for p in ffmpeg_children():
                os.kill(p.pid, signal.SIGKILL)
                killed.append(p.pid)

    killer = threading.Thread(target=kill_ffmpeg_once_it_runs)
    killer.start()
    try:
        with pytest.raises(OutputWriteError, match="ffmpeg"):
            write_mp4(frames, tmp_path / "video.mp4", fps=25, audio=(np.zeros((2, 48000 * 24), np.float32), 48000))
    finally:
        killer.join()
    assert killed
    assert list(tmp_path.iterdir()) == []
    assert wait_until(lambda: not ffmpeg_children(), 5), ffmpeg_children()
