"""A writer SIGKILLed before each of its steps (see kill_harness.py) never loses what was saved,
never leaves a partial file where outputs go, and the next run or write works.

Training checkpoints: killed while saving step 3 over a committed step 2 (new-step), or while saving
step 2 again (same-step). Videos: killed while writing a new file or while replacing an earlier one.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.robustness.checks import wait_until

pytestmark = pytest.mark.robustness

ROOT = Path(__file__).resolve().parents[3]
HARNESS = Path(__file__).with_name("kill_harness.py")
CHECKPOINT_POINTS = 16     # > the steps of a checkpoint save (asserted below), so every step gets its kill
VIDEO_POINTS = 8


def _harness():
    spec = importlib.util.spec_from_file_location("kill_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(kind, points, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"kills-{kind}")
    (work / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(work / "tmp"), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(HARNESS), kind, str(work), str(points)], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, json.loads((work / "report.json").read_text())


@pytest.fixture(scope="module")
def checkpoint_kills(tmp_path_factory):
    return _run("checkpoint", CHECKPOINT_POINTS, tmp_path_factory)


@pytest.fixture(scope="module")
def video_kills(tmp_path_factory):
    return _run("video", VIDEO_POINTS, tmp_path_factory)


def _point(kills, scenario, k):
    """(work folder, report, this kill's outcome, the folder it left, a label for messages)."""
    work, report = kills
    outcome = report[scenario][str(k)]
    assert outcome["outcome"] in ("killed", "completed"), outcome
    where = f"{scenario}, killed before {outcome.get('before', 'nothing: completed')}"
    return work, report, outcome, work / scenario / f"point_{k:02d}", where


@pytest.mark.parametrize("kind, points, scenarios", [("checkpoint", CHECKPOINT_POINTS, ("new-step", "same-step")),
                                                     ("video", VIDEO_POINTS, ("new-file", "replace"))])
def test_every_step_of_the_write_was_killed_once(kind, points, scenarios, request):
    work, report = request.getfixturevalue(f"{kind}_kills")
    for scenario in scenarios:
        outcomes = [report[scenario][str(k)]["outcome"] for k in range(1, points + 1)]
        assert outcomes[-1] == "completed", f"{scenario}: raise {kind.upper()}_POINTS, the write has more steps"
        assert "killed" in outcomes


def _checkpoint_weights(folder: Path):
    return {name: load_file(str(folder / name)) for name in ("model.safetensors", "model_raw.safetensors")}


@pytest.mark.parametrize("k", range(1, CHECKPOINT_POINTS + 1), ids=lambda k: f"kill-before-step-{k:02d}")
@pytest.mark.parametrize("scenario", ["new-step", "same-step"])
def test_killed_checkpoint_save(checkpoint_kills, scenario, k):
    work, report, outcome, run, where = _point(checkpoint_kills, scenario, k)
    root = run / "checkpoints"

    # the pointer names a complete checkpoint of this run folder, at the saved step or the one before
    name = (root / "latest").read_text().strip()
    latest = root / name
    assert latest.parent == root and (latest / "training_state.safetensors").is_file(), where
    weights = _checkpoint_weights(latest)
    # nothing already saved is lost: step 2 as it was saved, unless step 3 is committed
    step_2 = _checkpoint_weights(work / "pristine" / "checkpoints" / "step_0000002")
    if not name.startswith("step_0000003"):
        assert all(torch.equal(weights[f][key], step_2[f][key]) for f in weights for key in weights[f]), where
    if outcome["outcome"] == "completed" and scenario == "new-step":
        assert name == "step_0000003", where
    # leftovers are only of the temporary kinds, never a half-written or half-deleted step folder
    for entry in root.iterdir():
        if entry.name.startswith("step_") and ".tmp-" not in entry.name:
            assert (entry / "training_state.safetensors").is_file() and len(_checkpoint_weights(entry)) == 2, where
        else:
            assert entry.name == "latest" or ".tmp-" in entry.name or entry.name.startswith(".partial-"), where

    # the next run resumes from it, sweeps the leftovers and continues exactly as if never killed
    harness = _harness()
    from hyvideo_core.finetune.trainer import train
    result = train(harness.train_config(report["cache"], str(run)))
    assert result.losses == report["reference_losses"], where
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000004"], where


def _ffmpeg_of(point_env_value: str):
    """Processes whose environment names this kill point (ffmpeg inherits it from the killed writer)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if point_env_value.encode() in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("k", range(1, VIDEO_POINTS + 1), ids=lambda k: f"kill-before-step-{k:02d}")
@pytest.mark.parametrize("scenario", ["new-file", "replace"])
def test_killed_video_write(video_kills, scenario, k):
    from hyvideo_core.video_io import read_video, write_mp4

    work, report, outcome, folder, where = _point(video_kills, scenario, k)
    marker = f"HARNESS_LAST_STEP={work / f'last_step_{k:02d}.txt'}"
    assert wait_until(lambda: not _ffmpeg_of(marker)), f"{where}: ffmpeg outlived the killed writer"

    names = sorted(os.listdir(folder))
    if outcome["outcome"] == "killed" and scenario == "new-file":
        assert names == [], f"{where}: left {names}"
    from hyvideo_core.video_io import read_metadata
    if outcome["outcome"] == "completed":
        assert names == ["video.mp4"], where
        assert read_metadata(folder / "video.mp4")["version"] == "new"
    elif scenario == "replace":
        previous = (work / "previous.mp4").read_bytes()
        if (folder / "video.mp4").read_bytes() != previous:
            assert read_metadata(folder / "video.mp4")["version"] == "new", where   # replaced: complete
        staged = [n for n in names if n != "video.mp4"]
        # only between naming the finished video and renaming it over the old one can a hidden,
        # complete copy remain (renaming cannot replace and name in one step)
        assert staged == [] or outcome["before"] == "os.replace", f"{where}: left {names}"
        for name in staged:
            assert read_video(folder / name)[0].shape[0] == 4 and read_metadata(folder / name)["version"] == "new"
    assert os.listdir(work / "tmp") == [], f"{where}: temp folder holds {os.listdir(work / 'tmp')}"

    # the next write to the same place works
    frames = _harness().video_frames(2)
    write_mp4(frames, folder / "video.mp4", fps=12, metadata={"version": "next"})
    assert read_metadata(folder / "video.mp4") == {"version": "next"}
    assert read_video(folder / "video.mp4")[0].shape == frames.shape
