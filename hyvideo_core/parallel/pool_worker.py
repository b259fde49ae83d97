"""One worker of the sampling pool (:mod:`.pool`): a process started by the pool with

    python -m hyvideo_core.parallel.pool_worker --fd N --rank R --world W --port P --device cpu|cuda ...

It joins the pool's process group (gloo on CPU, NCCL on CUDA) on 127.0.0.1, then serves jobs
read from its socket (fd N, see :mod:`.wire`): ``load`` (build the transformer from a
:class:`~hyvideo_core.runtime.options.TransformerSource`, kept until the source or its files
change), ``sample`` (``apps.latent_stages.sample_latents`` on the parallelised model) and ``exit``.

After every sampling step each rank takes part in one tiny all-reduce that decides whether to
stop: rank 0 first sends its progress (and the current latents) to the pool and waits for the
pool's verdict (the caller's callback ran without raising, or it raised — a Cancel), so every
rank stops after the same step, none is left waiting in a collective.

The worker exits when its socket reaches end-of-file (the pool process closed it or died), when
its parent process changes (the parent died and the worker was re-parented), or on ``exit``.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Optional

import torch

from . import wire

log = logging.getLogger("hyvideo_core.parallel.worker")


class Inbox:
    """Reads the socket on a thread of its own, so end-of-file (the pool is gone) ends the process
    even while the main thread is busy in a collective or a forward."""

    def __init__(self, conn: Connection, rank: int):
        self.conn, self.rank = conn, rank
        self.jobs: "queue.Queue[wire.Message]" = queue.Queue()
        self.verdicts: "queue.Queue[wire.Message]" = queue.Queue()
        threading.Thread(target=self._read, name="hvs-pool-inbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = wire.recv(self.conn)
            except (EOFError, OSError):
                _leave(f"rank {self.rank}: the pool's process closed the connection; exiting")
            except wire.WireError as exc:
                _leave(f"rank {self.rank}: {exc}; exiting", code=3)
            (self.verdicts if msg.kind == "verdict" else self.jobs).put(msg)


def _leave(reason: str, code: int = 0) -> None:
    print(f"[hvs parallel worker] {reason}", file=sys.stderr, flush=True)
    os._exit(code)      # from any thread, also while the main thread waits in a collective


def _watch_parent(parent: int, rank: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            _leave(f"rank {rank}: parent process {parent} is gone; exiting")


class Worker:
    def __init__(self, conn: Connection, inbox: Inbox, rank: int, world: int, device: torch.device,
                 timeout_s: float):
        self.conn, self.inbox, self.rank, self.world = conn, inbox, rank, world
        self.device, self.timeout_s = device, timeout_s
        self.model = None
        self.model_key: Optional[str] = None
        self.fingerprint = None  # rank 0: of the model as built, before parallelize (see pool.parameter_fingerprint)
        self.run = None          # ParallelRun of the current model and config
        self.config = None

    # -- jobs -------------------------------------------------------------------------------------
    def load(self, fields: dict) -> None:
        from ..runtime.options import TransformerSource, prepare_transformer
        from .pool import parameter_fingerprint

        key = fields["key"]
        reloaded = key != self.model_key
        if reloaded:
            self.model, self.model_key, self.run, self.config, self.fingerprint = None, None, None, None, None
            source = TransformerSource.from_json(fields["source"])
            started = time.monotonic()
            model = prepare_transformer(source.path, device=self.device,
                                        dtype=None if source.dtype is None else getattr(torch, source.dtype),
                                        attention_backend=source.attention_backend, memory=source.memory)
            if source.loras:
                from ..finetune.lora import read_lora, with_lora

                for path, strength in source.loras:
                    model = with_lora(model, read_lora(path, model), strength=strength, path=path)
            self.fingerprint = parameter_fingerprint(model) if self.rank == 0 else None
            self.model, self.model_key = model, key
            log.info("loaded %s (%d LoRA) on %s in %.1f s", source.path, len(source.loras),
                     self.device, time.monotonic() - started)
        wire.send(self.conn, "loaded", {"fingerprint": self.fingerprint, "reloaded": reloaded})

    def sample(self, fields: dict, tensors: dict) -> None:
        from ..apps.latent_stages import SamplerOptions, sample_latents
        from ..errors import Interrupted
        from ..runtime.options import StepCacheOptions
        from ..runtime.progress import ProgressEvent
        from ..text_encoders.api import PromptEmbeds
        from . import parallelize
        from .mesh import ParallelConfig

        config = ParallelConfig(**fields["config"])
        if self.config != config:
            # the pool's model key includes a sharded config, so a sharded model is never split again
            self.run, self.config = parallelize(self.model, config), config
        cache = fields["options"]["step_cache"]   # under sequence parallel every rank takes the same skip decisions
        options = SamplerOptions(**dict(fields["options"], step_cache=None if cache is None else StepCacheOptions(**cache)))
        previews = fields["previews"]

        def embeds(prefix: str) -> Optional[PromptEmbeds]:
            if f"{prefix}_text_states" not in tensors:
                return None
            return PromptEmbeds(tensors[f"{prefix}_text_states"], tensors[f"{prefix}_text_mask"],
                                tensors[f"{prefix}_text_states_2"])

        flag = torch.zeros(1, dtype=torch.int32, device=self.device)
        last = {"step": 0, "total": options.steps}

        def after_step(event: ProgressEvent) -> None:
            import torch.distributed as dist

            last["step"], last["total"] = event.step, event.total
            stop = 0
            if self.rank == 0:
                wire.send(self.conn, "progress", {"stage": event.stage, "step": event.step, "total": event.total},
                          {"latents": event.latents, "denoised": event.denoised} if previews else None)
                stop = int(self._verdict().fields["stop"])
            flag.fill_(stop)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if int(flag.item()):
                raise Interrupted(f"stopped after step {event.step} of {event.total}")

        started = time.monotonic()
        try:
            out = sample_latents(self.model, embeds("positive"), tensors["latents"], options,
                                 scaling_factor=fields["scaling_factor"], negative=embeds("negative"),
                                 callback=after_step, image_latents=tensors.get("image_latents"),
                                 condition=fields["condition"], i2v_stability=fields["i2v_stability"])
        except Interrupted:
            log.warning("interrupted: stopped after step %d of %d", last["step"], last["total"])
            wire.send(self.conn, "interrupted", {"step": last["step"], "total": last["total"]})
            return
        log.info("sampled %d steps in %.1f s", last["step"], time.monotonic() - started)
        wire.send(self.conn, "done", {"step": last["step"]}, {"samples": out} if self.rank == 0 else None)

    def _verdict(self) -> wire.Message:
        try:
            return self.inbox.verdicts.get(timeout=self.timeout_s)
        except queue.Empty:
            _leave(f"rank {self.rank}: no answer from the pool for {self.timeout_s:.0f} s; exiting", code=4)

    def serve(self) -> None:
        from ..errors import HyVideoError

        while True:
            msg = self.inbox.jobs.get()
            if msg.kind == "exit":
                return
            try:
                if msg.kind == "load":
                    self.load(msg.fields)
                elif msg.kind == "sample":
                    self.sample(msg.fields, msg.tensors)
                else:
                    raise RuntimeError(f"unknown job {msg.kind!r}")
            except Exception as exc:   # reported to the pool, which decides whether the pool survives
                known = isinstance(exc, HyVideoError)
                if not known:
                    traceback.print_exc(file=sys.stderr)
                wire.send(self.conn, "error", {"type": type(exc).__name__, "message": str(exc), "known": known,
                                               "traceback": "" if known else traceback.format_exc()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hyvideo_core.parallel.pool_worker")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--device", choices=["cpu", "cuda"], required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--owner", type=int, required=True, help="the pool's process id (the parent to watch)")
    args = p.parse_args(argv)
    # Ctrl+C in a terminal reaches the whole process group: the pool's process decides; we follow its exit
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"[hvs parallel worker {args.rank}/{args.world} pid {os.getpid()}] %(message)s")
    threading.Thread(target=_watch_parent, args=(args.owner, args.rank), name="hvs-pool-parent", daemon=True).start()
    conn = Connection(args.fd)
    inbox = Inbox(conn, args.rank)

    import torch.distributed as dist

    if args.device == "cuda":
        device = torch.device("cuda", args.rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        if args.threads:
            torch.set_num_threads(args.threads)
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{args.port}",
                            rank=args.rank, world_size=args.world, timeout=timedelta(seconds=args.timeout))
    wire.send(conn, "ready", {"pid": os.getpid(), "device": str(device)})
    Worker(conn, inbox, args.rank, args.world, device, args.timeout).serve()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
