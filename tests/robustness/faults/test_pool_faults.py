"""Faults around the parallel worker pool (hyvideo_core/parallel/pool.py): a worker killed in the
middle of a run is a clear error and the pool starts afresh next time; the workers never outlive
the process that started them, however it ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from hyvideo_core.apps.latent_stages import SamplerOptions, sample_latents
from hyvideo_core.parallel.launch import ParallelRunError
from hyvideo_core.parallel.pool import PoolSettings, parallel_sample_latents, shared_pool
from hyvideo_core.runtime.options import prepare_transformer
from hyvideo_core.text_encoders.api import PromptEmbeds

pytestmark = pytest.mark.robustness

REPO = Path(__file__).resolve().parents[3]
TOY = REPO / "hyvideo_core" / "toy" / "weights" / "transformer.safetensors"


def _job(model):
    c = model.config
    g = torch.Generator().manual_seed(0)
    embeds = PromptEmbeds(torch.randn(1, 6, c.text_states_dim, generator=g), torch.ones(1, 6, dtype=torch.int64),
                          torch.randn(1, c.text_states_dim_2, generator=g))
    return embeds, torch.zeros(1, c.in_channels, 3, 8, 8)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"     # a zombie has exited
    except FileNotFoundError:
        return False


def _wait_gone(pids, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


@pytest.mark.parametrize("victim", [pytest.param(0, id="rank0_the_reporting_worker", marks=pytest.mark.slow),
                                    pytest.param(1, id="rank1_a_silent_worker")])
def test_a_worker_killed_mid_run_is_a_clear_error_and_the_pool_restarts(victim):
    model = prepare_transformer(TOY)
    embeds, latent = _job(model)
    options = SamplerOptions(steps=30, shift=3.0)
    pool = shared_pool(2, "cpu")
    old = pool.pids

    def kill_at_step_1(event):
        if event.step == 1:
            os.kill(old[victim], signal.SIGKILL)

    started = time.monotonic()
    with pytest.raises(ParallelRunError, match=rf"parallel worker {victim} \(pid {old[victim]}\) was killed by SIGKILL"):
        parallel_sample_latents(model, embeds, latent, options, settings=PoolSettings(workers=2), scaling_factor=0.5,
                                callback=kill_at_step_1)
    assert time.monotonic() - started < 60
    assert not _wait_gone(old, 10), "the surviving worker was not stopped"
    short = SamplerOptions(steps=2, shift=3.0)
    out = parallel_sample_latents(model, embeds, latent, short, settings=PoolSettings(workers=2), scaling_factor=0.5)
    assert set(shared_pool(2, "cpu").pids).isdisjoint(old)                     # a fresh pool
    assert (out - sample_latents(model, embeds, latent, short, scaling_factor=0.5)).abs().max() <= 1e-4


OWNER = textwrap.dedent("""
    import os, signal, sys, time
    from hyvideo_core.parallel.pool import shared_pool
    pool = shared_pool(2, "cpu")
    how = sys.argv[1]
    pids = list(pool.pids)
    if how == "forks_then_killed":   # a forked child keeps the pool's socket ends open: no end-of-file
        child = os.fork()
        if child == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            time.sleep(60)
            os._exit(0)
        pids.append(child)
    print(" ".join(map(str, pids)), flush=True)
    if how == "exits":
        sys.exit(0)                  # atexit closes the pool
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("how", [pytest.param("exits", marks=pytest.mark.slow), "killed",
                                 pytest.param("forks_then_killed", marks=pytest.mark.slow)])
def test_workers_exit_when_the_process_that_started_them_ends(how, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    # the workers inherit the owner's stderr: a file, so nothing here waits for them to close a pipe
    with open(tmp_path / "owner.log", "w") as log:
        owner = subprocess.Popen([sys.executable, "-c", OWNER, how], stdout=subprocess.PIPE, stderr=log, text=True,
                                 env=env, cwd=str(REPO), start_new_session=True)
    try:
        line = owner.stdout.readline()
        owner.wait(120)
    finally:
        if owner.poll() is None:
            owner.kill()
    pids = [int(p) for p in line.split()]
    assert len(pids) >= 2, (tmp_path / "owner.log").read_text()[-3000:]
    workers = pids[:2]          # then the forked child that keeps the sockets open, if any
    try:
        assert not _wait_gone(workers, 10), f"workers still running 10 s after their owner {how}"
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
