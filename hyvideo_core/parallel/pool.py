"""A warm pool of sampling workers on this machine, for a caller that is one long-lived process
(the ComfyUI server): :func:`parallel_sample_latents` is ``apps.latent_stages.sample_latents``
run by N worker processes as one parallel generation (sequence parallel / CFG-parallel / sharded
weights, :func:`hyvideo_core.parallel.parallelize`).

* The workers (:mod:`.pool_worker`, one per local GPU; on CPU as many as asked) are started on
  first use and kept: later runs reuse them, and each keeps the transformer it built until the
  model's :class:`~hyvideo_core.runtime.options.TransformerSource` (file, load options, LoRAs) or
  the files' size / modification time change. They build it from that record (``model.source``,
  set by ``prepare_transformer`` / ``with_lora``) and rank 0 checks it against the caller's model
  (a checksum of every parameter), so a model changed in memory after loading is refused, not
  silently replaced by the file's.
* The workers form their own process group (gloo on CPU, NCCL on CUDA) on a free port of
  127.0.0.1; the pool talks to each over a private socket pair (:mod:`.wire`: JSON and raw tensor
  bytes, nothing unpickled).
* Rank 0's per-step progress, with the current latents, reaches the caller's callback. If the
  callback raises (ComfyUI's Cancel, :class:`~hyvideo_core.errors.Interrupted`), every worker stops
  after that same step and the exception is raised to the caller.
* A worker that dies (killed, out of memory) makes the run fail with :class:`ParallelRunError`; the
  pool is torn down and started afresh on the next run. Workers exit by themselves when this
  process exits or dies (their socket closes; they also watch their parent process id).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..errors import (BackendUnavailableError, CheckpointError, IncompatibleWeightsError, InputError,
                      UnknownCheckpointError, UnsafeCheckpointError)
from ..runtime.progress import ProgressCallback, ProgressEvent
from . import wire
from .launch import ParallelRunError
from .mesh import ParallelConfig

log = logging.getLogger(__name__)

# the folder holding the hyvideo_core package: the workers import it from there as a top-level package
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
WORKER_MODULE = "hyvideo_core.parallel.pool_worker"
START_TIMEOUT_S = 180.0     # importing torch and joining the group, on a loaded machine
AFTER_FAILURE_S = 20.0      # how long the other ranks get to report after one rank failed
# errors a worker may report that mean "your input is wrong", re-raised as the same type
_KNOWN = {cls.__name__: cls for cls in (InputError, CheckpointError, UnknownCheckpointError, IncompatibleWeightsError,
                                        UnsafeCheckpointError, BackendUnavailableError)}


@dataclass(frozen=True)
class PoolSettings:
    """What the user asks for; 0 / "auto" are resolved per run by :meth:`worker_count` and :meth:`config_for`."""
    workers: int = 0              # 0: one per visible GPU (2 on CPU)
    ulysses: int = 0              # 0: automatic split (largest Ulysses degree that divides the heads)
    ring: int = 0
    cfg_parallel: str = "auto"    # "auto" (on when CFG > 1 and the worker count is even), "on", "off"
    shard_weights: bool = False   # FSDP2: each worker keeps ~1/N of the weights
    timeout_s: float = 300.0      # a worker waiting longer than this for the others fails the run

    def __post_init__(self) -> None:
        if min(self.workers, self.ulysses, self.ring) < 0:
            raise InputError(f"workers, ulysses and ring must be >= 0 (0 = automatic); found {self}")
        if self.cfg_parallel not in ("auto", "on", "off"):
            raise InputError(f"cfg_parallel must be 'auto', 'on' or 'off'; found {self.cfg_parallel!r}")

    def worker_count(self, device_type: str) -> int:
        if device_type == "cuda":
            visible = torch.cuda.device_count()
            if self.workers > visible:
                raise InputError(f"{self.workers} parallel workers asked for but {visible} GPUs are visible; "
                                 f"use at most {visible} (0 = one per GPU)")
            return self.workers or visible
        return self.workers or 2

    def config_for(self, world: int, heads: int, cfg_scale: float) -> ParallelConfig:
        """The split of ``world`` workers for a model with ``heads`` attention heads."""
        if self.cfg_parallel == "on" and (cfg_scale <= 1 or world % 2):
            raise InputError(f"CFG-parallel needs cfg > 1 and an even number of workers; found cfg {cfg_scale} and "
                             f"{world} workers. Set cfg_parallel to auto or off, or raise cfg.")
        use_cfg = self.cfg_parallel == "on" or (self.cfg_parallel == "auto" and cfg_scale > 1 and world % 2 == 0)
        if not self.ulysses and not self.ring:
            config = ParallelConfig.auto(world, heads, cfg=use_cfg)
        else:
            c = 2 if use_cfg else 1
            seq = world // c
            u = self.ulysses or (seq // self.ring if seq % self.ring == 0 else 0)
            r = self.ring or (seq // self.ulysses if seq % self.ulysses == 0 else 0)
            if u * r != seq:
                raise InputError(f"Ulysses {self.ulysses or 'auto'} x ring {self.ring or 'auto'} must make the "
                                 f"{seq} workers of each CFG branch ({world} workers, CFG-parallel "
                                 f"{'on' if c == 2 else 'off'}); set both to 0 for an automatic split")
            config = ParallelConfig(ulysses=u, ring=r, cfg=c)
        config = replace(config, shard_weights=self.shard_weights)
        config.check(heads, world)
        return config


# ----------------------------------------------------------------------------------------------
# the caller's model


_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, Dict[str, list]]" = weakref.WeakKeyDictionary()


def parameter_fingerprint(model: torch.nn.Module) -> Dict[str, list]:
    """{name: [shape, dtype, sum, sum of |x|]} of every parameter and buffer (sums in float64)."""
    out = {}
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_meta:
                out[name] = [list(t.shape), str(t.dtype), 0.0, 0.0]
                continue
            d = t.detach().to(torch.float64)
            out[name] = [list(t.shape), str(t.dtype), float(d.sum()), float(d.abs().sum())]
    return out


def _cached_fingerprint(model: torch.nn.Module) -> Dict[str, list]:
    if model not in _FINGERPRINTS:
        _FINGERPRINTS[model] = parameter_fingerprint(model)
    return _FINGERPRINTS[model]


def fingerprint_differences(mine: Dict[str, list], theirs: Dict[str, list]) -> List[str]:
    diffs = [f"{k} only in the loaded model" for k in sorted(set(mine) - set(theirs))]
    diffs += [f"{k} only in the file" for k in sorted(set(theirs) - set(mine))]
    for k in sorted(set(mine) & set(theirs)):
        (shape_a, dtype_a, sum_a, abs_a), (shape_b, dtype_b, sum_b, abs_b) = mine[k], theirs[k]
        tolerance = 1e-9 * max(abs_a, abs_b) + 1e-12
        if shape_a != shape_b or dtype_a != dtype_b or abs(sum_a - sum_b) > tolerance or abs(abs_a - abs_b) > tolerance:
            diffs.append(f"{k} differs")
    return diffs


def _model_key(source, config: ParallelConfig) -> str:
    """What a worker's built model depends on: the source record, its files' size and modification
    time, and the split when weights are sharded (a sharded model cannot be split again)."""
    stamps = []
    for path in source.files():
        try:
            st = os.stat(path)
            stamps.append([path, st.st_size, st.st_mtime_ns])
        except OSError as exc:
            raise InputError(f"the transformer was loaded from {path!r}, which the parallel workers cannot read now "
                             f"({exc.strerror}); load the model again") from None
    return json.dumps({"source": source.to_json(), "files": stamps,
                       "sharded_split": asdict(config) if config.shard_weights else None}, sort_keys=True)


# ----------------------------------------------------------------------------------------------
# the pool


@dataclass
class RunReport:
    """What the workers said about the last run: whether each rebuilt the model, and after which
    step each stopped ("done" or "interrupted")."""
    reloaded: List[bool]
    outcome: List[str]
    steps: List[int]


class _Stopped(Exception):
    """Internal: a worker process ended."""


class WorkerPool:
    """N started workers on ``device_type`` ("cpu" or "cuda"); see the module doc. Thread-safe:
    one run at a time."""

    def __init__(self, workers: int, device_type: str, timeout_s: float = 300.0):
        if workers < 1:
            raise InputError(f"a worker pool needs at least 1 worker; found {workers}")
        self.workers, self.device_type, self.timeout_s = workers, device_type, timeout_s
        self.procs: List[subprocess.Popen] = []
        self.conns: List[Connection] = []
        self._lock = threading.Lock()
        self.closed = False
        self.last_run: Optional[RunReport] = None

    @property
    def key(self) -> Tuple[int, str, float]:
        return self.workers, self.device_type, self.timeout_s

    @property
    def pids(self) -> List[int]:
        return [p.pid for p in self.procs]

    @property
    def alive(self) -> bool:
        return not self.closed and bool(self.procs) and all(p.poll() is None for p in self.procs)

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> "WorkerPool":
        port = _free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        threads = max(1, torch.get_num_threads() // self.workers) if self.device_type == "cpu" else 0
        started = time.monotonic()
        try:
            for rank in range(self.workers):
                mine, theirs = socket.socketpair()
                cmd = [sys.executable, "-m", WORKER_MODULE, "--fd", str(theirs.fileno()), "--rank", str(rank),
                       "--world", str(self.workers), "--port", str(port), "--device", self.device_type,
                       "--threads", str(threads), "--timeout", str(self.timeout_s), "--owner", str(os.getpid())]
                try:
                    self.procs.append(subprocess.Popen(cmd, cwd=str(PACKAGE_ROOT), env=env, stdin=subprocess.DEVNULL,
                                                       pass_fds=(theirs.fileno(),)))
                finally:
                    theirs.close()
                self.conns.append(Connection(mine.detach()))
            ready = self._collect("ready", deadline=time.monotonic() + START_TIMEOUT_S)
        except _Stopped as stopped:
            error = self._died(stopped.args[0], "while starting")
            self.close(grace_s=1.0)
            raise error from None
        except BaseException:
            self.close(grace_s=1.0)
            raise
        log.info("parallel pool: %d %s workers ready in %.1f s (pids %s)", self.workers, self.device_type,
                 time.monotonic() - started, ", ".join(str(m.fields["pid"]) for m in ready))
        return self

    def close(self, grace_s: float = 5.0) -> None:
        """Ask the workers to exit, then kill those still running after ``grace_s``."""
        self.closed = True
        for conn in self.conns:
            try:
                wire.send(conn, "exit")
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []

    # -- talking to the workers -------------------------------------------------------------------
    def _send_all(self, kind: str, fields=None, tensors=None) -> None:
        for rank, conn in enumerate(self.conns):
            try:
                wire.send(conn, kind, fields, tensors)
            except OSError:
                raise _Stopped(rank) from None

    def _receive(self, deadline: Optional[float]) -> Optional[Tuple[int, wire.Message]]:
        """The next message from any worker (None when ``deadline`` passed)."""
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(self.conns, timeout=1.0 if left is None else min(1.0, left))
            for conn in ready:
                rank = self.conns.index(conn)
                try:
                    return rank, wire.recv(conn)
                except (EOFError, OSError, wire.WireError):
                    raise _Stopped(rank) from None
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _collect(self, kind: str, deadline: Optional[float] = None,
                 on_progress: Optional[Callable[[wire.Message], bool]] = None) -> List[wire.Message]:
        """Every rank's answer to the current job: ``kind``, "interrupted" or "error". Progress
        messages go to ``on_progress``, whose result (stop?) is sent back as the verdict."""
        answers: Dict[int, wire.Message] = {}
        failed_at = None
        while len(answers) < self.workers:
            if failed_at is not None:
                deadline = min(deadline or float("inf"), failed_at + AFTER_FAILURE_S)
            got = self._receive(deadline)
            if got is None:
                missing = [r for r in range(self.workers) if r not in answers]
                raise ParallelRunError(self._describe_timeout(kind, missing, answers))
            rank, msg = got
            if msg.kind == "progress":
                stop = on_progress(msg) if on_progress is not None else False
                try:
                    wire.send(self.conns[rank], "verdict", {"stop": bool(stop)})
                except OSError:
                    raise _Stopped(rank) from None
                continue
            if msg.kind not in (kind, "interrupted", "error"):
                raise ParallelRunError(f"parallel worker {rank} answered {msg.kind!r} to {kind!r}")
            answers[rank] = msg
            if msg.kind == "error" and failed_at is None:
                failed_at = time.monotonic()
        return [answers[r] for r in range(self.workers)]

    def _describe_timeout(self, kind: str, missing: List[int], answers: Dict[int, wire.Message]) -> str:
        errors = [f"worker {r}: {m.fields['type']}: {m.fields['message']}" for r, m in answers.items() if m.kind == "error"]
        if errors:
            return ("a parallel worker failed and the others could not finish (" + "; ".join(errors) + "); the pool "
                    "is restarted on the next run")
        return (f"parallel workers {missing} did not answer {kind!r} in time; the pool is restarted on the next "
                f"run (see the workers' lines in the log)")

    def _died(self, rank: int, when: str = "during the run") -> ParallelRunError:
        proc = self.procs[rank]
        try:
            code = proc.wait(5.0)
        except subprocess.TimeoutExpired:
            code = None
        how = ("is not answering" if code is None else f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with code {code}")
        return ParallelRunError(f"parallel worker {rank} (pid {proc.pid}) {how} {when}; the pool is restarted "
                                f"on the next run. If it ran out of memory, use more workers, shard weights, or a "
                                f"smaller video; its last lines are in the log above.")

    # -- a run ----------------------------------------------------------------------------------
    def run(self, key: str, source_json: dict, fingerprint: Dict[str, list], fields: dict,
            tensors: Dict[str, Optional[torch.Tensor]], callback: Optional[ProgressCallback]) -> torch.Tensor:
        """Load (if needed) and sample one job; returns rank 0's raw latents."""
        with self._lock:
            if not self.alive:
                raise ParallelRunError("the parallel worker pool is not running")
            try:
                return self._run(key, source_json, fingerprint, fields, tensors, callback)
            except _Stopped as stopped:
                error = self._died(stopped.args[0])
                self.close(grace_s=1.0)
                raise error from None
            except ParallelRunError:
                self.close(grace_s=1.0)
                raise
            except BaseException:
                if not self.alive:
                    self.close(grace_s=1.0)
                raise

    def _run(self, key, source_json, fingerprint, fields, tensors, callback) -> torch.Tensor:
        self.last_run = None
        self._send_all("load", {"key": key, "source": source_json})
        answers = self._collect("loaded")
        self._raise_errors(answers)
        reloaded = [bool(a.fields["reloaded"]) for a in answers]
        diffs = fingerprint_differences(fingerprint, answers[0].fields["fingerprint"])
        if diffs:
            raise InputError(
                f"the parallel workers built the transformer from {source_json['path']!r} but it differs from the "
                f"model given to the sampler ({len(diffs)} tensors: {', '.join(diffs[:3])}...): the model was "
                f"changed in memory after loading in a way the workers cannot repeat. Load it with the "
                f"transformer loader (and LoRA loader) only, or sample without the parallel settings.")
        failure: List[BaseException] = []

        def on_progress(msg: wire.Message) -> bool:
            if failure or callback is None:
                return bool(failure)
            f = msg.fields
            try:
                callback(ProgressEvent(f["stage"], f["step"], f["total"], latents=msg.tensors.get("latents"),
                                       denoised=msg.tensors.get("denoised")))
            except BaseException as exc:   # Cancel (or a failing preview): every rank stops after this step
                failure.append(exc)
                return True
            return False

        self._send_all("sample", fields, tensors)
        answers = self._collect("done", on_progress=on_progress)
        self.last_run = RunReport(reloaded, [a.kind for a in answers], [a.fields.get("step", 0) for a in answers])
        if failure:
            log.info("parallel pool: workers stopped after steps %s", self.last_run.steps)
            raise failure[0]
        self._raise_errors(answers)
        if any(a.kind == "interrupted" for a in answers):
            raise ParallelRunError(f"the parallel workers stopped without being asked: "
                                   f"{[a.kind for a in answers]}")
        return answers[0].tensors["samples"]

    def _raise_errors(self, answers: List[wire.Message]) -> None:
        errors = [(r, a.fields) for r, a in enumerate(answers) if a.kind == "error"]
        if not errors:
            return
        rank, first = errors[0]
        if first.get("traceback"):
            log.error("parallel worker %d failed:\n%s", rank, first["traceback"])
        cls = _KNOWN.get(first["type"]) if first.get("known") else None
        if cls is not None:
            raise cls(first["message"])
        raise ParallelRunError(f"parallel worker {rank} failed: {first['type']}: {first['message']}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# the process's shared pool and the one call the ComfyUI node makes


_shared: Optional[WorkerPool] = None
_shared_lock = threading.Lock()


def shared_pool(workers: int, device_type: str, timeout_s: float = 300.0) -> WorkerPool:
    """This process's pool, started (or restarted: other size or device, or a worker gone) as needed."""
    global _shared
    with _shared_lock:
        if _shared is not None and (not _shared.alive or _shared.key != (workers, device_type, timeout_s)):
            _shared.close()
            _shared = None
        if _shared is None:
            _shared = WorkerPool(workers, device_type, timeout_s).start()
        return _shared


@atexit.register
def close_shared_pool() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None


def parallel_sample_latents(model, positive, latents: torch.Tensor, options, *, settings: PoolSettings,
                            scaling_factor: float, negative=None, callback: Optional[ProgressCallback] = None,
                            image_latents: Optional[torch.Tensor] = None, condition: Optional[str] = None,
                            i2v_stability: bool = True) -> torch.Tensor:
    """:func:`hyvideo_core.apps.latent_stages.sample_latents` (same arguments, same result) run on
    this process's worker pool as one parallel generation; ``settings`` picks the workers and split."""
    from ..runtime.options import TransformerSource

    source: Optional[TransformerSource] = getattr(model, "source", None)
    if source is None:
        raise InputError("parallel sampling rebuilds the transformer in each worker from its file, but this model was "
                         "not loaded by the transformer loader (prepare_transformer) or was changed in memory since "
                         "(e.g. a LoRA given as tensors, not a file); load it with the loader nodes, or sample "
                         "without the parallel settings")
    device_type = torch.device(source.device).type
    world = settings.worker_count(device_type)
    config = settings.config_for(world, model.config.heads_num, options.cfg_scale)
    use_negative = negative is not None and options.cfg_scale > 1
    fields = {
        "options": {"steps": options.steps, "shift": options.shift, "embedded_guidance": options.embedded_guidance,
                    "cfg_scale": options.cfg_scale, "seed": options.seed, "denoise": options.denoise,
                    "step_cache": None if options.step_cache is None else asdict(options.step_cache)},
        "config": asdict(config), "scaling_factor": scaling_factor, "condition": condition,
        "i2v_stability": i2v_stability, "previews": callback is not None,
    }
    tensors = {"latents": latents, "image_latents": image_latents}
    for prefix, embeds in (("positive", positive), ("negative", negative if use_negative else None)):
        if embeds is not None:
            tensors.update({f"{prefix}_text_states": embeds.text_states, f"{prefix}_text_mask": embeds.text_mask,
                            f"{prefix}_text_states_2": embeds.text_states_2})
    key = _model_key(source, config)
    fingerprint = _cached_fingerprint(model)
    pool = shared_pool(world, device_type, settings.timeout_s)
    log.info("parallel sampling on %d %s workers: Ulysses %d x ring %d x CFG %d%s", world, device_type,
             config.ulysses, config.ring, config.cfg, ", weights sharded" if config.shard_weights else "")
    return pool.run(key, source.to_json(), fingerprint, fields, tensors, callback)


__all__ = ["PoolSettings", "WorkerPool", "RunReport", "parallel_sample_latents", "shared_pool", "close_shared_pool",
           "parameter_fingerprint"]
