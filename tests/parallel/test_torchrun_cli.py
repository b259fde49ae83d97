"""The main job on several processes through torchrun (and two torchrun "nodes" on loopback) gives
the frames of one process; a rank that dies and mismatched model files end in clear errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.parallel.ranks import free_port

PROMPT = "a red circle moving left slowly on a dark background"
REPO = Path(__file__).resolve().parents[2]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _generate_args(out: Path, *extra):
    return ["-m", "hyvideo_core", "generate", "--prompt", PROMPT, "--steps", "4", "--out", str(out.with_suffix(".mp4")),
            "--save-tensor", str(out), "--dist-timeout", "30", *extra]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "video.safetensors"
    subprocess.run([sys.executable, *_generate_args(out)], cwd=REPO, env=_env(), check=True, capture_output=True,
                   timeout=120)
    return load_file(str(out))["video"]


def _same_frames(path: Path, reference: torch.Tensor):
    video = load_file(str(path))["video"]
    assert video.shape == reference.shape
    assert (video - reference).abs().max() <= 1e-4


def test_torchrun_two_processes_give_the_frames_of_one(tmp_path, one_process):
    out = tmp_path / "video.safetensors"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *_generate_args(out, "--shard-weights")], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Ulysses 2 x ring 1 x CFG 1, weights sharded" in done.stderr
    _same_frames(out, one_process)


def test_two_torchrun_nodes_on_loopback_give_the_frames_of_one(tmp_path, one_process):
    port = free_port()
    outs = [tmp_path / f"node{n}.safetensors" for n in range(2)]
    launches = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(n),
                                  "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                                  *_generate_args(outs[n])], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for n in range(2)]
    try:
        results = [p.communicate(timeout=120) for p in launches]
    finally:
        for p in launches:
            p.kill()
    assert [p.returncode for p in launches] == [0, 0], [r[1][-2000:] for r in results]
    _same_frames(outs[0], one_process)
    assert not outs[1].exists()           # only global rank 0 writes


def _rank_processes(tmp_path, per_rank_args, dist_timeout="20"):
    port = free_port()
    procs = []
    for rank, extra in enumerate(per_rank_args):
        env = _env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(len(per_rank_args)),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        out = tmp_path / f"rank{rank}.safetensors"
        args = _generate_args(out, *extra)
        args[args.index("--dist-timeout") + 1] = dist_timeout
        procs.append(subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def test_a_rank_that_dies_mid_sample_stops_the_others_with_a_clear_error(tmp_path):
    procs = _rank_processes(tmp_path, [["--steps", "200"], ["--steps", "200"]])   # long enough to die mid-way
    try:
        # rank 0 prints progress; once a step is done, kill rank 1 hard
        buf, deadline = "", time.monotonic() + 90
        while "sample 1/" not in buf and time.monotonic() < deadline:
            ch = procs[0].stderr.read(1)
            if not ch:
                break
            buf += ch
        assert "sample 1/" in buf, buf[-2000:]
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 2, err[-2000:]
    assert "lost the other ranks" in err
    assert waited < 40                   # within the 20 s collective timeout (plus shutdown)
    assert not (tmp_path / "rank0.safetensors").exists()


def test_mismatched_model_files_are_detected_at_start_up(tmp_path):
    from hyvideo_core.toy.model import TEACHER_FILE, WEIGHTS, toy_model_paths

    paths = toy_model_paths()
    same = ["--vae", paths.vae, "--text-encoder", paths.text_encoder, "--clip", paths.clip]
    procs = _rank_processes(tmp_path, [["--transformer", paths.transformer, *same],
                                       ["--transformer", str(WEIGHTS / TEACHER_FILE), *same]])
    try:
        results = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 2, err[-2000:]
        assert "read different model files: transformer (rank 1)" in err
