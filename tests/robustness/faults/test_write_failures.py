"""Writes that fail part-way (a raising frame source, Ctrl+C, a full disk, a file-size limit, a
read-only folder) end with a clear error, leave nothing behind and keep what was there; outputs
get the permissions the umask asks for; swapped-out blocks never stay in the temp folder."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.robustness.checks import ffmpeg_children, used_bytes, wait_until

pytestmark = pytest.mark.robustness

ROOT = Path(__file__).resolve().parents[3]


def noise_frames(n=8, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture
def old_video(tmp_path):
    """An earlier video at the path the failing write targets: it must survive untouched."""
    from hyvideo_core.video_io import write_mp4

    path = write_mp4(noise_frames(2, seed=9), tmp_path / "out" / "video.mp4", metadata={"version": "old"})
    return Path(path), Path(path).read_bytes()


def _assert_nothing_left(old_video):
    path, data = old_video
    assert sorted(os.listdir(path.parent)) == ["video.mp4"] and path.read_bytes() == data
    assert wait_until(lambda: not ffmpeg_children()), ffmpeg_children()


class Boom(Exception):
    pass


def _raising_frames(exc, at=3):
    for i, frame in enumerate(noise_frames()):
        if i == at:
            raise exc
        yield frame


@pytest.mark.parametrize("exc", [Boom("source failed"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_frame_source_failing_mid_video(old_video, exc):
    from hyvideo_core.video_io import write_mp4

    with pytest.raises(type(exc)):
        write_mp4(_raising_frames(exc), old_video[0], metadata={"version": "new"})
    _assert_nothing_left(old_video)


def test_frame_of_another_size_mid_video(old_video):
    from hyvideo_core.errors import InputError
    from hyvideo_core.video_io import write_mp4

    frames = list(noise_frames(4)) + [np.zeros((32, 32, 3), np.uint8)]
    with pytest.raises(InputError, match="first frame's size"):
        write_mp4(iter(frames), old_video[0])
    _assert_nothing_left(old_video)


# -- full disk and read-only folders (tmpfs) -----------------------------------------------------------------------


def _writers():
    """name -> write(folder): one output of each kind the suite writes."""
    def video(folder):
        from hyvideo_core.video_io import write_mp4
        write_mp4(noise_frames(24, 128), folder / "video.mp4")

    def transformer(folder):
        from hyvideo_core import get_variant, save_transformer
        from hyvideo_core.model import HunyuanVideoTransformer
        model = HunyuanVideoTransformer(get_variant("tiny").transformer)
        model.variant = "tiny"
        save_transformer(model, folder / "model.safetensors")

    def text(folder):
        from hyvideo_core.atomic_files import atomic_write_text
        atomic_write_text(folder / "notes.txt", "x" * 3_000_000)

    return {"video": video, "transformer": transformer, "text": text}


@pytest.mark.parametrize("writer", sorted(_writers()))
def test_full_disk(small_disk, writer):
    from hyvideo_core.errors import OutputWriteError

    disk = small_disk("256k")
    (disk / "kept.txt").write_text("saved before")
    before = used_bytes(disk)
    with pytest.raises(OutputWriteError) as info:
        _writers()[writer](disk)
    assert info.value.errno == errno.ENOSPC and "free disk space" in str(info.value)
    assert sorted(os.listdir(disk)) == ["kept.txt"] and (disk / "kept.txt").read_text() == "saved before"
    assert used_bytes(disk) <= before      # the space of the failed write is given back
    assert wait_until(lambda: not ffmpeg_children())


@pytest.mark.parametrize("writer", sorted(_writers()))
def test_read_only_folder(small_disk, writer):
    from hyvideo_core.errors import OutputWriteError

    disk = small_disk("4m")
    (disk / "kept.txt").write_text("saved before")
    small_disk.read_only(disk)
    with pytest.raises(OutputWriteError) as info:
        _writers()[writer](disk)
    assert info.value.errno == errno.EROFS and "read-only" in str(info.value)
    assert sorted(os.listdir(disk)) == ["kept.txt"]
    assert not ffmpeg_children()


def test_checkpoint_save_on_a_full_disk_keeps_the_last_one(small_disk, tmp_path):
    """The run folder fills up during a save: the error is clear, the previous checkpoint stays the
    latest and complete, nothing temporary remains, and the next save (with room again) works."""
    from hyvideo_core.errors import OutputWriteError
    from hyvideo_core.finetune.checkpoint import CheckpointFolder
    from tests.robustness.faults.kill_harness import fake_text, train_config
    from hyvideo_core.finetune.data import cache_dataset
    from hyvideo_core.toy.clip_source import toy_clips
    from hyvideo_core.finetune.trainer import Trainer
    from hyvideo_core.vae import CausalVideoVAE
    from hyvideo_core.variants import get_variant

    cache = str(tmp_path / "cache")
    cache_dataset(cache, toy_clips(2, seed=3, geometries=[(5, 32, 32)]), CausalVideoVAE(get_variant("tiny").vae),
                  fake_text, [(5, 32, 32)])
    disk = small_disk("24m")     # two checkpoints of the tiny model (9 MB each)
    trainer = Trainer(train_config(cache, str(disk / "run")))
    trainer.train_step()
    trainer.save_checkpoint()
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - 300_000))
    trainer.train_step()
    with pytest.raises(OutputWriteError, match="free disk space"):
        trainer.save_checkpoint()
    root = disk / "run" / "checkpoints"
    assert sorted(os.listdir(root)) == ["latest", "step_0000001"]
    assert CheckpointFolder(root).latest() == root / "step_0000001"
    ballast.unlink()
    assert trainer.save_checkpoint() == root / "step_0000002"


_FSIZE_CHILD = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    import numpy as np
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    from hyvideo_core.errors import OutputWriteError
    folder = Path(sys.argv[1])
    try:
        if sys.argv[2] == "video":
            from hyvideo_core.video_io import write_mp4
            frames = np.random.default_rng(0).integers(0, 255, (24, 128, 128, 3), dtype=np.uint8)
            write_mp4(frames, folder / "video.mp4")
        else:
            import torch
            from hyvideo_core.checkpoints.load import write_safetensors_atomic
            write_safetensors_atomic({"w": torch.zeros(100_000)}, str(folder / "w.safetensors"))
    except OutputWriteError as e:
        print("errno", e.errno, e)
""")


@pytest.mark.parametrize("writer", ["video", "safetensors"])
def test_file_size_limit(tmp_path, writer):
    """RLIMIT_FSIZE (a quota-like limit that needs no privileges): EFBIG, clear error, nothing left."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(out), writer], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"errno {errno.EFBIG}" in proc.stdout and "size limit" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert os.listdir(out) == []


# -- permissions -----------------------------------------------------------------------------------------------------


def _outputs(folder: Path):
    """Write one output of every kind; yields the paths that must carry the umask's permissions."""
    from hyvideo_core import get_variant, save_transformer
    from hyvideo_core.atomic_files import atomic_copy, atomic_folder, atomic_write_text
    from hyvideo_core.finetune.lora import inject_lora, save_lora
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.vae import CausalVideoVAE, save_vae
    from hyvideo_core.video_io import write_mp4

    model = HunyuanVideoTransformer(get_variant("tiny").transformer)
    model.variant = "tiny"
    write_mp4(noise_frames(2), folder / "video.mp4")
    save_transformer(model, folder / "model.safetensors")
    save_vae(CausalVideoVAE(get_variant("tiny").vae), folder / "vae.safetensors")
    inject_lora(model, rank=2)
    save_lora(model, folder / "lora.safetensors")
    atomic_copy(folder / "lora.safetensors", folder / "copied_lora.safetensors")     # the Train LoRA node's copy
    atomic_write_text(folder / "notes.txt", "hello")
    with atomic_folder(folder / "checkpoint") as tmp:
        (tmp / "a.txt").write_text("a")
    return ["video.mp4", "model.safetensors", "vae.safetensors", "lora.safetensors", "copied_lora.safetensors",
            "notes.txt", "checkpoint"]


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077], ids=["umask-002", "umask-022", "umask-077"])
def test_outputs_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        names = _outputs(tmp_path)
    finally:
        os.umask(old)
    for name in names:
        mode = (tmp_path / name).stat().st_mode & 0o777
        expected = (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask
        assert mode == expected, f"{name}: {oct(mode)}, expected {oct(expected)}"


def test_training_checkpoint_files_respect_the_umask(tmp_path):
    from hyvideo_core.finetune.data import cache_dataset
    from hyvideo_core.toy.clip_source import toy_clips
    from hyvideo_core.finetune.trainer import train
    from hyvideo_core.vae import CausalVideoVAE
    from hyvideo_core.variants import get_variant
    from tests.robustness.faults.kill_harness import fake_text, train_config

    old = os.umask(0o002)
    try:
        cache = str(tmp_path / "cache")
        cache_dataset(cache, toy_clips(2, seed=3, geometries=[(5, 32, 32)]), CausalVideoVAE(get_variant("tiny").vae),
                      fake_text, [(5, 32, 32)])
        train(train_config(cache, str(tmp_path / "run"), steps=1))
    finally:
        os.umask(old)
    made = [p for p in tmp_path.rglob("*") if p.name != "log.jsonl"]
    wrong = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in made
             if p.stat().st_mode & 0o777 != (0o775 if p.is_dir() else 0o664)}
    assert not wrong, wrong


# -- block swap's disk store ------------------------------------------------------------------------------------------

_SWAP_CHILD = textwrap.dedent("""
    import gc, os, signal, sys, tempfile
    from hyvideo_core import get_variant
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.runtime.offload import enable_block_swap

    def open_in_temp():
        temp, count = os.path.realpath(tempfile.gettempdir()), 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith(temp)
            except OSError:     # the descriptor listdir itself used
                pass
        return count

    model = HunyuanVideoTransformer(get_variant("tiny").transformer)
    swap = enable_block_swap(model, (2, 2), device="cpu", store="disk")
    print("open while in use", open_in_temp(), flush=True)
    if sys.argv[1] == "dropped":
        del model, swap
        gc.collect()
        print("open after drop", open_in_temp(), flush=True)
    elif sys.argv[1] == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("end", ["dropped", "exit", "killed"])
def test_block_swap_leaves_nothing_in_the_temp_folder(tmp_path, end):
    temp = tmp_path / "temp"
    temp.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TMPDIR=str(temp))
    proc = subprocess.run([sys.executable, "-c", _SWAP_CHILD, end], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == (-signal.SIGKILL if end == "killed" else 0), proc.stderr[-2000:]
    assert "open while in use 1" in proc.stdout, proc.stdout
    if end == "dropped":
        assert "open after drop 0" in proc.stdout, proc.stdout
    assert os.listdir(temp) == []


# -- dataset caching ---------------------------------------------------------------------------------------------------


def test_interrupted_caching_resumes_after_the_last_finished_clip(tmp_path):
    """Stopped after clip 3 of 5, the next run keeps clips 1-3 as written (same files) and ends with
    the manifest an uninterrupted run writes."""
    from hyvideo_core.finetune.data import cache_dataset
    from hyvideo_core.toy.clip_source import toy_clips
    from hyvideo_core.vae import CausalVideoVAE
    from hyvideo_core.variants import get_variant
    from tests.robustness.faults.kill_harness import fake_text

    vae = CausalVideoVAE(get_variant("tiny").vae).eval()
    buckets = [(5, 32, 32)]
    whole = cache_dataset(str(tmp_path / "whole"), toy_clips(5, seed=3, geometries=buckets), vae, fake_text, buckets)

    class Stop(Exception):
        pass

    def stop_after_three(n):
        if n == 3:
            raise Stop
    with pytest.raises(Stop):
        cache_dataset(str(tmp_path / "cut"), toy_clips(5, seed=3, geometries=buckets), vae, fake_text, buckets,
                      callback=stop_after_three)
    clips = tmp_path / "cut" / "clips"
    written = {p.name: p.stat().st_ino for p in clips.iterdir()}
    assert len(written) == 3
    resumed = cache_dataset(str(tmp_path / "cut"), toy_clips(5, seed=3, geometries=buckets), vae, fake_text, buckets)
    assert {p.name: p.stat().st_ino for p in clips.iterdir() if p.name in written} == written   # not re-encoded
    assert resumed == whole
