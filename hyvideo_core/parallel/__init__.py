"""Several processes on one generation: sequence parallel (Ulysses, ring, both) and CFG-parallel,
applied to a built model from outside (``parallelize``), on torch.distributed.

    torchrun --nproc_per_node 4 -m hyvideo_core generate --ulysses 2 --cfg-parallel ...
    # or in Python, in every process:
    torch.distributed.init_process_group()
    run = parallelize(model, ParallelConfig(ulysses=2, ring=1, cfg=2))
    latents = sample(model, noise, ...)       # the run's CFG-parallel rule is the model's default

Every rank ends with the same latents; only rank 0 should write files.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist

from ..model.extension import find_extension, install_extension, remove_extension
from ..sampling.conditions import Branch, ClassifierFreeGuidance, ModelCall, guidance_for
from .mesh import ParallelConfig, ParallelGroups
from .sequence import SequenceParallel
from .sharding import parameter_bytes, resident_parameter_bytes, shard_weights

__all__ = ["ParallelConfig", "ParallelGroups", "SequenceParallel", "parallelize", "ParallelRun",
           "ParallelCFG", "shard_weights", "resident_parameter_bytes", "parameter_bytes"]


class ParallelCFG(ClassifierFreeGuidance):
    """True CFG with the positive branch on CFG group 0 and the negative on group 1; the two
    velocities are exchanged (all-gather over the CFG pair) and combined identically on both."""

    def __init__(self, positive: Branch, negative: Branch, scale: float, groups: ParallelGroups):
        super().__init__(positive, negative, scale)
        self.groups = groups

    def velocity(self, call: ModelCall, x: torch.Tensor, sigma: torch.Tensor, step: int) -> torch.Tensor:
        mine = call(x, sigma, self.positive if self.groups.cfg_index == 0 else self.negative)
        both = [torch.empty_like(mine) for _ in range(2)]
        dist.all_gather(both, mine.contiguous(), group=self.groups.cfg_group)
        v, v_neg = both
        return v_neg + self.scale * (v - v_neg)


class ParallelRun:
    """Handle of :func:`parallelize`: ``.groups``, ``.guidance`` (for ``sample(guidance=...)``),
    ``.remove()``."""

    def __init__(self, model, groups: ParallelGroups, extension: Optional[SequenceParallel]):
        self.model, self.groups, self.extension = model, groups, extension

    def guidance(self, positive: Branch, negative: Optional[Branch], cfg_scale: float):
        """Guidance factory for :func:`hyvideo_core.sample`: CFG-parallel when the config has two
        CFG groups and CFG is on, else the usual rule (each CFG group then computes the same)."""
        if self.groups.config.cfg == 2 and cfg_scale > 1 and negative is not None:
            return ParallelCFG(positive, negative, cfg_scale, self.groups)
        return guidance_for(positive, negative, cfg_scale)

    def remove(self) -> None:
        if self.extension is not None:
            remove_extension(self.model, self.extension)
        if getattr(self.model, "default_guidance", None) == self.guidance:
            del self.model.default_guidance


def parallelize(model, config: ParallelConfig, groups: Optional[ParallelGroups] = None) -> ParallelRun:
    """Shard ``model``'s forward over the ranks of ``config`` (torch.distributed must be initialised
    with exactly ``config.world_size`` processes; every rank calls this with the same config)."""
    config.check(model.config.heads_num)
    groups = groups or ParallelGroups(config)
    existing = find_extension(model, SequenceParallel)
    if existing is not None:
        remove_extension(model, existing)
    if config.shard_weights:
        shard_weights(model)
    ext = install_extension(model, SequenceParallel(groups)) if config.sequence > 1 else None
    run = ParallelRun(model, groups, ext)
    model.default_guidance = run.guidance    # sample() without guidance= uses the CFG-parallel rule
    return run

