"""Process groups of a parallel run: CFG branches × ring × Ulysses, over torch.distributed.

Ranks are laid out with Ulysses fastest (neighbouring ranks — one machine's NVLink peers — share
the heavy all-to-alls), then ring, then the CFG branch::

    rank = cfg_index · (ring · ulysses) + ring_index · ulysses + ulysses_index

The sequence-parallel group is every rank of one CFG branch (ring × Ulysses); its index orders
the image-token shards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch.distributed as dist

from ..errors import InputError


@dataclass(frozen=True)
class ParallelConfig:
    ulysses: int = 1     # heads scattered by all-to-all; must divide the head count
    ring: int = 1        # key/value blocks passed around a ring; any size
    cfg: int = 1         # 2 = the two CFG branches on two rank groups
    shard_weights: bool = False   # FSDP2: each rank keeps ~1/N of the parameters (parallel/sharding.py)

    @property
    def sequence(self) -> int:
        return self.ulysses * self.ring

    @property
    def world_size(self) -> int:
        return self.sequence * self.cfg

    def check(self, heads: int, world_size: Optional[int] = None) -> None:
        if min(self.ulysses, self.ring, self.cfg) < 1 or self.cfg > 2:
            raise InputError(f"parallel degrees must be >= 1 (cfg 1 or 2); found {self}")
        if heads % self.ulysses:
            ok = [d for d in range(1, heads + 1) if heads % d == 0]
            raise InputError(f"Ulysses degree {self.ulysses} does not divide the model's {heads} attention heads; "
                             f"Ulysses degrees that work: {ok}. Put the rest of the ranks on the ring "
                             f"(ParallelConfig.auto picks a split for you).")
        if world_size is not None and world_size != self.world_size:
            raise InputError(f"parallel config {self} needs {self.world_size} processes, the run has {world_size}")

    @classmethod
    def auto(cls, world_size: int, heads: int, cfg: bool = False) -> "ParallelConfig":
        """The largest Ulysses degree that divides both the heads and the sequence ranks; the
        rest of the sequence ranks go to the ring."""
        c = 2 if cfg and world_size % 2 == 0 else 1
        seq = world_size // c
        u = max(d for d in range(1, seq + 1) if seq % d == 0 and heads % d == 0)
        return cls(ulysses=u, ring=seq // u, cfg=c)


class ParallelGroups:
    """The process groups of one :class:`ParallelConfig` for this rank (every rank must build it,
    in the same order, since torch.distributed creates groups collectively)."""

    def __init__(self, config: ParallelConfig):
        if not dist.is_available() or not dist.is_initialized():
            raise InputError("parallel inference needs torch.distributed initialised: launch with torchrun "
                             "(or call torch.distributed.init_process_group first)")
        world, rank = dist.get_world_size(), dist.get_rank()
        if world != config.world_size:
            raise InputError(f"parallel config {config} needs {config.world_size} processes, the run has {world}")
        self.config, self.rank = config, rank
        u, r, c = config.ulysses, config.ring, config.cfg
        self.cfg_index, rest = divmod(rank, u * r)
        self.ring_index, self.ulysses_index = divmod(rest, u)
        self.sequence_index = rest
        layout = [[[ci * u * r + ri * u + ui for ui in range(u)] for ri in range(r)] for ci in range(c)]

        def make(groups_ranks: List[List[int]]):
            mine = None
            for ranks in groups_ranks:
                group = dist.new_group(ranks)
                if rank in ranks:
                    mine = (group, ranks)
            return mine

        self.ulysses_group, self.ulysses_ranks = make([layout[ci][ri] for ci in range(c) for ri in range(r)])
        self.ring_group, self.ring_ranks = make([[layout[ci][ri][ui] for ri in range(r)]
                                                 for ci in range(c) for ui in range(u)])
        self.cfg_group, self.cfg_ranks = make([[layout[ci][ri][ui] for ci in range(c)]
                                               for ri in range(r) for ui in range(u)])
        self.sequence_group, self.sequence_ranks = make([sum(layout[ci], []) for ci in range(c)])

    def shard_length(self, tokens: int) -> int:
        return math.ceil(tokens / self.config.sequence)
