"""Run a function in N real processes joined by a gloo process group on loopback, with a deadline.

Each rank's function returns a dict of tensors (saved by the harness); a rank that raises has its
traceback reported; a run past ``timeout`` is killed and fails the test instead of hanging it."""
from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn, rank, world, port, out_dir, args):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    import torch.distributed as dist
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=60))
        result = fn(rank, world, *args)
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in (result or {}).items()}, str(Path(out_dir) / f"rank{rank}.safetensors"))
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (Path(out_dir) / f"rank{rank}.error").write_text(traceback.format_exc())
        raise


def run_ranks(fn: Callable, world: int, out_dir: Path, *args, timeout: float = 120.0) -> List[Dict[str, torch.Tensor]]:
    """fn(rank, world, *args) in ``world`` spawned processes; returns each rank's dict of tensors."""
    from safetensors.torch import load_file

    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, port, str(out_dir), args), daemon=True)
             for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    errors = [f.read_text() for f in sorted(Path(out_dir).glob("rank*.error"))]
    if errors:
        raise AssertionError("a rank failed:\n" + "\n".join(errors))
    if alive:
        raise AssertionError(f"{len(alive)} of {world} ranks still running after {timeout} s (killed)")
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise AssertionError(f"ranks exited with {bad}")
    return [load_file(str(Path(out_dir) / f"rank{r}.safetensors")) for r in range(world)]
