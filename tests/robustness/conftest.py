"""Fixtures of the robustness suite: small file systems that fill up or turn read-only."""
import subprocess
import uuid
from pathlib import Path

import pytest


def _mount(args):
    try:
        return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 1, "", str(exc))


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size="1m")``: a fresh tmpfs of that size (a disk that fills up); ``.read_only(path)``
    remounts it read-only. Skipped where mounting is not allowed (needs root with CAP_SYS_ADMIN)."""
    mounted = []

    class Disk:
        def __call__(self, size="1m") -> Path:
            where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
            where.mkdir()
            done = _mount(["-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)])
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); a full disk "
                            f"and a read-only folder need root with CAP_SYS_ADMIN")
            mounted.append(where)
            return where

        def read_only(self, where: Path) -> None:
            done = _mount(["-o", "remount,ro", str(where)])
            if done.returncode != 0:
                pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")

    yield Disk()
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
