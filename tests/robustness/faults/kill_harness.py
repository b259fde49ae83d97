"""Kill a writer at every point: run it in forked children, each SIGKILLed just before its k-th step.

    python kill_harness.py checkpoint|video WORKDIR POINTS

A "step" is one file-system operation that changes what is on disk (rename, replace, link, mkdir,
remove, rmtree, a safetensors file write, starting ffmpeg) or one video frame handed to the encoder.
(fsync is not a step: it changes nothing a killed process can observe, only what survives a power
cut, which a test cannot simulate.) The real code runs unchanged: the wrappers only count and, at
step k, kill the process the hard way, as the OOM killer or a closed terminal session would.

For each sub-scenario S and k = 1..POINTS, WORKDIR/S/point_<k>/ is left as that kill left it and
WORKDIR/report.json records, per k, whether the child was killed (and before which step) or
completed. checkpoint: new-step (the save of step 3 after a committed step 2) and same-step (step 2
saved again); video: new-file and replace (over an earlier video at the same path).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


_WATCHED_OS = ("rename", "replace", "link", "mkdir", "remove", "unlink")


def arm(kill_at: int, log: list) -> None:
    """From now on, count steps and SIGKILL this process just before step ``kill_at``."""
    def tick(name: str) -> None:
        log.append(name)
        if len(log) == kill_at:
            Path(os.environ["HARNESS_LAST_STEP"]).write_text(name)   # plain write: bookkeeping, not watched
            os.kill(os.getpid(), signal.SIGKILL)

    def watch(owner, name: str, label: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if not (name == "mkdir" and os.path.exists(args[0])):    # a mkdir that will fail changes nothing
                tick(label)
            return real(*args, **kwargs)
        setattr(owner, name, wrapper)

    for name in _WATCHED_OS:
        watch(os, name, f"os.{name}")
    watch(shutil, "rmtree", "shutil.rmtree")
    try:
        import hyvideo_core.atomic_files as atomic_files
        watch(atomic_files, "_link_anonymous", "link unnamed file")
    except ImportError:      # a version without it (to see these tests fail on it)
        pass
    import safetensors.torch
    watch(safetensors.torch, "save_file", "safetensors write")
    watch(subprocess, "Popen", "start ffmpeg")
    arm.tick = tick


def run_points(workdir: Path, points: int, prepare, write) -> dict:
    """For each k: ``prepare(point_dir)``, then fork a child that arms the kill and runs ``write(point_dir)``."""
    report = {}
    for k in range(1, points + 1):
        point = workdir / f"point_{k:02d}"
        prepare(point)
        pid = os.fork()
        if pid == 0:
            os.environ["HARNESS_LAST_STEP"] = str(workdir / f"last_step_{k:02d}.txt")
            try:
                arm(k, [])
                write(point)
                os._exit(0)
            except BaseException:       # noqa: BLE001 - an error is a result too; report it, never hang
                import traceback
                traceback.print_exc()
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        step_file = workdir / f"last_step_{k:02d}.txt"
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            report[k] = {"outcome": "killed", "before": step_file.read_text()}
            step_file.unlink()
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            report[k] = {"outcome": "completed"}
        else:
            report[k] = {"outcome": f"failed (status {status})"}
    return report


# -- training checkpoints -----------------------------------------------------------------------------------------


def fake_text(prompts, dim=32, dim2=16):
    n = max(len(p.split()) for p in prompts) or 1
    g = torch.Generator().manual_seed(0)
    return (torch.randn(len(prompts), n, dim, generator=g), torch.ones(len(prompts), n, dtype=torch.long),
            torch.randn(len(prompts), dim2, generator=g))


def train_config(cache: str, output: str, **kw):
    from hyvideo_core.finetune.trainer import TrainConfig

    base = dict(cache_dir=cache, output_dir=output, variant="tiny", steps=4, global_batch=2, lr=2e-3, log_every=1,
                seed=1, threads=1, ema_decay=0.9, keep_checkpoints=1)
    base.update(kw)
    return TrainConfig(**base)


def checkpoint_scenarios(workdir: Path, points: int) -> dict:
    from hyvideo_core.finetune.data import cache_dataset
    from hyvideo_core.toy.clip_source import toy_clips
    from hyvideo_core.finetune.trainer import Trainer, train
    from hyvideo_core.vae import CausalVideoVAE
    from hyvideo_core.variants import get_variant

    torch.manual_seed(0)
    cache = str(workdir / "cache")
    cache_dataset(cache, toy_clips(4, seed=3, geometries=[(5, 32, 32)]), CausalVideoVAE(get_variant("tiny").vae).eval(),
                  fake_text, [(5, 32, 32)])
    result = {"reference_losses": train(train_config(cache, str(workdir / "reference"))).losses, "cache": cache}
    pristine = workdir / "pristine"
    trainer = Trainer(train_config(cache, str(pristine)))
    trainer.train_step(), trainer.train_step()
    trainer.save_checkpoint()                       # step 2, committed: what must never be lost

    def prepare(point: Path) -> None:
        shutil.copytree(pristine, point)

    def write(point: Path) -> None:
        trainer.out = point
        trainer.save_checkpoint()

    (workdir / "same-step").mkdir()
    result["same-step"] = run_points(workdir / "same-step", points, prepare, write)
    trainer.train_step()                            # now the kills hit the save of step 3
    (workdir / "new-step").mkdir()
    result["new-step"] = run_points(workdir / "new-step", points, prepare, write)
    return result


# -- videos --------------------------------------------------------------------------------------------------------

VIDEO_FRAMES = 4


def video_frames(seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    return g.integers(0, 255, (VIDEO_FRAMES, 64, 64, 3), dtype=np.uint8)


def video_scenarios(workdir: Path, points: int) -> dict:
    from hyvideo_core.video_io import write_mp4

    write_mp4(video_frames(0), workdir / "previous.mp4", fps=12, metadata={"version": "previous"})
    frames = video_frames(1)
    result = {}
    for replace in (False, True):
        def prepare(point: Path) -> None:
            point.mkdir()
            if replace:
                shutil.copyfile(workdir / "previous.mp4", point / "video.mp4")

        def counted_frames():
            for frame in frames:
                arm.tick("video frame")
                yield frame

        def write(point: Path) -> None:
            write_mp4(counted_frames(), point / "video.mp4", fps=12, metadata={"version": "new", "pad": "x" * 200_000})

        name = "replace" if replace else "new-file"
        (workdir / name).mkdir()
        result[name] = run_points(workdir / name, points, prepare, write)
    return result


if __name__ == "__main__":
    kind, workdir, points = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    workdir.mkdir(parents=True, exist_ok=True)
    result = checkpoint_scenarios(workdir, points) if kind == "checkpoint" else video_scenarios(workdir, points)
    (workdir / "report.json").write_text(json.dumps(result, indent=1))
