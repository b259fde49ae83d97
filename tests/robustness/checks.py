"""Checks shared by the robustness tests: the real process table and file systems, nothing recorded by us."""
import os
import time


def ffmpeg_children():
    """ffmpeg processes started (directly or not) by this test process."""
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if "ffmpeg" in p.name()]


def wait_until(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def used_bytes(folder) -> int:
    st = os.statvfs(folder)
    return (st.f_blocks - st.f_bfree) * st.f_frsize
