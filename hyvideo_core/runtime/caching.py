"""Step caching: skip the transformer blocks on steps where their output barely changes.

Two passes, each installed from outside the model as one of its ``block_passes`` (wrappers of
the block loop, so they compose with each other and with extensions) plus a forward pre-hook
that watches the timestep:

* **TeaCache** (Liu et al. 2024, ali-vilab/TeaCache ``TeaCache4HunyuanVideo``): the relative L1
  change of the first double block's modulated image input, rescaled by a polynomial fitted
  for HunyuanVideo, is accumulated across steps; while the sum stays under ``threshold`` the
  blocks are skipped and the image-token residual of the last full pass is reused. The first
  step (and the last, when ``num_steps`` is given) always computes. Published trade-off on the
  13B model: 0.1 -> 1.6x, 0.15 -> 2.1x.
* **First-Block-Cache** (ParaAttention / diffusers ``FirstBlockCacheConfig``): always run the
  first double block; if its residual changed by less than ``threshold`` (relative mean abs)
  since the last full pass, reuse the residual of the remaining blocks.

State is kept per guidance branch (true CFG calls the model twice per step with the same
timestep) and is reset automatically when a new sampling run starts (the timestep goes up
instead of down), or explicitly with :meth:`StepCache.reset`. ``threshold <= 0`` disables
skipping: the output is then bit-identical to the uncached model.

Skipping blocks skips the extensions' block hooks with them: their effect is part of the reused
residual. An extension whose inputs change from step to step declares ``cache_policy =
"never_skip"``, and a cache then refuses to skip (an error naming it) instead of reusing a stale
residual silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..model.block_lists import block_lists, blocks_of
from ..model.extension import skipped_hook_blockers
from ..model.layers import layer_norm, modulate
from ..model.transformer import run_double_blocks

# TeaCache's rescaling polynomial for HunyuanVideo (highest power first, np.poly1d order), from
# ali-vilab/TeaCache TeaCache4HunyuanVideo/teacache_sample_video.py.
TEACACHE_HUNYUAN_COEFFICIENTS = (7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02)


@dataclass
class CacheStats:
    full: int = 0       # forwards that ran every block
    cached: int = 0     # forwards that reused a cached residual
    decisions: List[bool] = field(default_factory=list)  # True = computed, in call order

    @property
    def total(self) -> int:
        return self.full + self.cached


@dataclass
class _Branch:
    previous: Optional[torch.Tensor] = None   # TeaCache: modulated input; FBCache: first-block residual
    residual: Optional[torch.Tensor] = None   # cached residual of the skipped blocks
    accumulated: float = 0.0


def _rel_l1(a: torch.Tensor, b: torch.Tensor, ctx=None) -> float:
    """mean|a − b| / mean|b|. Under sequence parallel each rank holds a shard of the tokens: the
    sums over its real tokens are added up across the ranks (``ctx.state["token_sums"]``), so
    every rank takes the same skip decision as one process would."""
    reduce = None if ctx is None else ctx.state.get("token_sums")
    if reduce is None:
        return float((a - b).abs().mean() / b.abs().mean().clamp_min(1e-12))
    real = ctx.state["real_tokens"]
    a, b = a[:, :real], b[:, :real]
    sums = reduce(torch.stack([(a - b).abs().sum(), b.abs().sum()]).double())
    return float(sums[0] / sums[1].clamp_min(1e-12))


class StepCache:
    """Base of the caching passes: install/remove, per-run reset, per-branch state, stats."""

    def __init__(self, model, threshold: float, num_steps: Optional[int] = None):
        self.model, self.threshold, self.num_steps = model, float(threshold), num_steps
        self.stats = CacheStats()
        self._branches: Dict[int, _Branch] = {}
        self._last_t: Optional[float] = None
        self._step, self._branch = -1, 0
        model.block_passes.append(self)
        self._hook = model.register_forward_pre_hook(self._watch_timestep, with_kwargs=True)

    def remove(self) -> None:
        """Uninstall: the model runs every block again."""
        self._hook.remove()
        if self in self.model.block_passes:
            self.model.block_passes.remove(self)

    def reset(self) -> None:
        """Forget cached residuals and counts (done automatically at the start of a run)."""
        self.stats = CacheStats()
        self._branches.clear()
        self._last_t, self._step, self._branch = None, -1, 0

    def _watch_timestep(self, module, args, kwargs) -> None:
        self._check_extensions()
        t = args[1] if len(args) > 1 else kwargs["t"]
        value = float(t.reshape(-1)[0])
        if self._last_t is None or value > self._last_t:
            self.reset()
            self._step, self._branch = 0, 0
        elif value == self._last_t:
            self._branch += 1                  # another guidance branch of the same step
        else:
            self._step, self._branch = self._step + 1, 0
        self._last_t = value

    def _state(self) -> _Branch:
        return self._branches.setdefault(self._branch, _Branch())

    def _forced(self) -> bool:
        return self.threshold <= 0 or (self.num_steps is not None and self._step >= self.num_steps - 1)

    def _check_extensions(self) -> None:
        blockers = skipped_hook_blockers(self.model) if self.threshold > 0 else []
        if blockers:
            raise InputError(f"{type(self).__name__} cannot skip blocks while the extensions {blockers} are installed: "
                             f"their inputs change between steps, so a reused residual would be wrong; turn the "
                             f"step cache off (or set its threshold to 0) for this model")

    def _record(self, computed: bool) -> None:
        self.stats.decisions.append(computed)
        if computed:
            self.stats.full += 1
        else:
            self.stats.cached += 1

    def __call__(self, model, ctx, img, txt, inner) -> torch.Tensor:
        raise NotImplementedError


class TeaCache(StepCache):
    def __init__(self, model, threshold: float = 0.15, num_steps: Optional[int] = None,
                 coefficients: Sequence[float] = TEACACHE_HUNYUAN_COEFFICIENTS):
        super().__init__(model, threshold, num_steps)
        self.rescale = np.poly1d(coefficients)

    def __call__(self, model, ctx, img, txt, inner) -> torch.Tensor:
        st = self._state()
        modulated = _first_modulated_input(model, img, ctx.cond)
        compute = True
        if st.previous is not None and st.residual is not None and not self._forced():
            st.accumulated += float(self.rescale(_rel_l1(modulated, st.previous, ctx)))
            compute = st.accumulated >= self.threshold
        if compute:
            st.accumulated = 0.0
        st.previous = modulated
        self._record(compute)
        if not compute:
            return img + st.residual
        out = inner(ctx, img, txt)
        st.residual = out - img
        return out


def _first_modulated_input(model, img: torch.Tensor, cond) -> torch.Tensor:
    """TeaCache's signal: the first double block's adaLN-modulated image input (float32)."""
    first = blocks_of(model, block_lists(model)[0])[0]
    if hasattr(first, "ensure_weights"):  # block swap: bring the block's weights in first
        first.ensure_weights()
    mod = first.img_mod(cond)
    if hasattr(mod, "modulate"):          # ModulationOut (chunks, optionally per-token groups)
        return mod.modulate(layer_norm(img), 0)
    return modulate(layer_norm(img), mod[0], mod[1])


class FirstBlockCache(StepCache):
    def __init__(self, model, threshold: float = 0.05, num_steps: Optional[int] = None):
        super().__init__(model, threshold, num_steps)

    def __call__(self, model, ctx, img, txt, inner) -> torch.Tensor:
        st = self._state()
        img0, start = img, ctx.block_start
        img, txt = run_double_blocks(model, ctx, img, txt, start, start + 1)
        first_residual = img - img0
        compute = (st.previous is None or st.residual is None or self._forced()
                   or _rel_l1(first_residual, st.previous, ctx) >= self.threshold)
        self._record(compute)
        if not compute:
            return img + st.residual
        st.previous = first_residual   # compared against the last *computed* step, as ParaAttention does
        ctx.block_start = start + 1
        try:
            out = inner(ctx, img, txt)
        finally:
            ctx.block_start = start
        st.residual = out - img
        return out


def apply_teacache(model, threshold: float = 0.15, num_steps: Optional[int] = None) -> TeaCache:
    """Install TeaCache on ``model``; returns the handle (``.stats``, ``.reset()``, ``.remove()``)."""
    return TeaCache(model, threshold, num_steps)


def apply_first_block_cache(model, threshold: float = 0.05, num_steps: Optional[int] = None) -> FirstBlockCache:
    """Install First-Block-Cache on ``model``; returns the handle."""
    return FirstBlockCache(model, threshold, num_steps)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: Optional[float] = None) -> float:
    """PSNR of ``a`` against reference ``b`` (peak = the reference's max abs unless given)."""
    mse = float((a.float() - b.float()).pow(2).mean())
    peak = float(b.float().abs().max()) if peak is None else peak
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)
