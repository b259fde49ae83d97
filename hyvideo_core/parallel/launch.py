"""Around a parallel generation: the process group from torchrun's environment, work done once on
rank 0 and broadcast (text encoding), the start-up check that every rank reads the same model
files, and turning a lost rank into a clear error instead of a hang."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Dict, Iterator, Mapping, Optional

import torch
import torch.distributed as dist

from ..errors import HyVideoError, InputError

log = logging.getLogger(__name__)


class ParallelRunError(HyVideoError):
    """A rank of a parallel run failed or could not be reached."""


def world_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextmanager
def distributed_from_env(timeout_s: float = 120.0) -> Iterator[Optional[int]]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), yield this rank (None when
    single-process), and leave it at the end. ``timeout_s`` bounds every collective, so a rank that
    died makes the others fail with :class:`ParallelRunError` instead of waiting forever."""
    if world_from_env() <= 1:
        yield None
        return
    owned = not dist.is_initialized()
    if owned:
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    rank = dist.get_rank()
    try:
        yield rank
    except HyVideoError:
        raise
    except (RuntimeError, ConnectionError) as exc:   # gloo/NCCL errors are RuntimeError subclasses
        raise ParallelRunError(
            f"rank {rank} of {dist.get_world_size()}: lost the other ranks ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); another rank failed or the network broke — "
            f"see the first failing rank's log") from exc
    finally:
        if owned and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:   # the group may already be broken; leaving is best effort
                pass


def _broadcast_bytes(payload: Optional[bytes], src: int = 0) -> bytes:
    size = torch.tensor([len(payload) if payload is not None else 0], dtype=torch.int64)
    dist.broadcast(size, src)
    data = (torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload is not None
            else torch.empty(int(size), dtype=torch.uint8))
    dist.broadcast(data, src)
    return data.numpy().tobytes()


def broadcast_tensors(make: Callable[[], Mapping[str, Optional[torch.Tensor]]], src: int = 0) -> Dict[str, Optional[torch.Tensor]]:
    """``make()`` runs on rank ``src`` only; every rank gets its tensors (a JSON header of names,
    shapes and dtypes, then the tensors: nothing is unpickled)."""
    rank = dist.get_rank()
    values = dict(make()) if rank == src else {}
    header = json.dumps({k: None if v is None else [list(v.shape), str(v.dtype)[6:]] for k, v in values.items()})
    meta = json.loads(_broadcast_bytes(header.encode() if rank == src else None, src))
    out: Dict[str, Optional[torch.Tensor]] = {}
    for name, spec in meta.items():
        if spec is None:
            out[name] = None
            continue
        shape, dtype = spec
        t = values[name].contiguous().cpu() if rank == src else torch.empty(shape, dtype=getattr(torch, dtype))
        dist.broadcast(t, src)
        out[name] = t
    return out


def file_fingerprint(path: str) -> str:
    """Size and hashes of the first and last MiB (a folder: of each file in it, by name)."""
    if os.path.isdir(path):
        parts = [f"{name}:{file_fingerprint(os.path.join(path, name))}" for name in sorted(os.listdir(path))
                 if os.path.isfile(os.path.join(path, name))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 1 << 20:
            f.seek(max(1 << 20, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()


def check_same_files(paths: Mapping[str, str]) -> None:
    """Every rank must read the same model files: compare fingerprints at start-up and name the
    ranks and files that differ (on every rank, so all of them stop with the same message)."""
    mine = json.dumps({k: file_fingerprint(v) for k, v in sorted(paths.items())})
    all_bytes = []
    for src in range(dist.get_world_size()):
        all_bytes.append(_broadcast_bytes(mine.encode() if dist.get_rank() == src else None, src))
    gathered = [json.loads(b) for b in all_bytes]
    reference = gathered[0]
    differing = sorted({f"{name} (rank {r})" for r, prints in enumerate(gathered)
                        for name in set(reference) | set(prints) if prints.get(name) != reference.get(name)})
    if differing:
        raise InputError(f"the ranks of this parallel run read different model files: {', '.join(differing)} "
                         f"differ from rank 0's; give every node the same files (same paths or copies)")
