"""Step caching: skip the transformer blocks on steps where their output barely changes.

Two passes, each installed from outside the model as its ``block_runner`` plus a forward
pre-hook that watches the timestep:

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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..model.layers import layer_norm, modulate
from ..model.transformer import run_blocks

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


def _rel_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean() / b.abs().mean().clamp_min(1e-12))


class StepCache:
    """Base of the caching passes: install/remove, per-run reset, per-branch state, stats."""

    def __init__(self, model, threshold: float, num_steps: Optional[int] = None):
        self.model, self.threshold, self.num_steps = model, float(threshold), num_steps
        self.stats = CacheStats()
        self._branches: Dict[int, _Branch] = {}
        self._last_t: Optional[float] = None
        self._step, self._branch = -1, 0
        self._previous_runner = model.block_runner
        model.block_runner = self
        self._hook = model.register_forward_pre_hook(self._watch_timestep, with_kwargs=True)

    def remove(self) -> None:
        """Uninstall: the model runs every block again."""
        self._hook.remove()
        self.model.block_runner = self._previous_runner

    def reset(self) -> None:
        """Forget cached residuals and counts (done automatically at the start of a run)."""
        self.stats = CacheStats()
        self._branches.clear()
        self._last_t, self._step, self._branch = None, -1, 0

    def _watch_timestep(self, module, args, kwargs) -> None:
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

    def _record(self, computed: bool) -> None:
        self.stats.decisions.append(computed)
        if computed:
            self.stats.full += 1
        else:
            self.stats.cached += 1

    def __call__(self, model, img, txt, cond, rope, mask, backend) -> torch.Tensor:
        raise NotImplementedError


class TeaCache(StepCache):
    def __init__(self, model, threshold: float = 0.15, num_steps: Optional[int] = None,
                 coefficients: Sequence[float] = TEACACHE_HUNYUAN_COEFFICIENTS):
        super().__init__(model, threshold, num_steps)
        self.rescale = np.poly1d(coefficients)

    def __call__(self, model, img, txt, cond, rope, mask, backend) -> torch.Tensor:
        st = self._state()
        modulated = _first_modulated_input(model, img, cond)
        compute = True
        if st.previous is not None and st.residual is not None and not self._forced():
            st.accumulated += float(self.rescale(_rel_l1(modulated, st.previous)))
            compute = st.accumulated >= self.threshold
        if compute:
            st.accumulated = 0.0
        st.previous = modulated
        self._record(compute)
        if not compute:
            return img + st.residual
        out = run_blocks(model, img, txt, cond, rope, mask, backend)
        st.residual = out - img
        return out


def _first_modulated_input(model, img: torch.Tensor, cond) -> torch.Tensor:
    """TeaCache's signal: the first double block's adaLN-modulated image input (float32)."""
    first = model.double_blocks[0]
    if hasattr(first, "ensure_weights"):  # block swap: bring the block's weights in first
        first.ensure_weights()
    mod = first.img_mod(cond)
    if hasattr(mod, "modulate"):          # ModulationOut (chunks, optionally per-token groups)
        return mod.modulate(layer_norm(img), 0)
    return modulate(layer_norm(img), mod[0], mod[1])


class FirstBlockCache(StepCache):
    def __init__(self, model, threshold: float = 0.05, num_steps: Optional[int] = None):
        super().__init__(model, threshold, num_steps)

    def __call__(self, model, img, txt, cond, rope, mask, backend) -> torch.Tensor:
        st = self._state()
        img0 = img
        img, txt = model.double_blocks[0](img, txt, cond, rope, mask, backend)
        first_residual = img - img0
        compute = (st.previous is None or st.residual is None or self._forced()
                   or _rel_l1(first_residual, st.previous) >= self.threshold)
        self._record(compute)
        if not compute:
            return img + st.residual
        st.previous = first_residual   # compared against the last *computed* step, as ParaAttention does
        head = img
        for block in list(model.double_blocks)[1:]:
            img, txt = block(img, txt, cond, rope, mask, backend)
        joint = torch.cat([img, txt], dim=1)
        for block in model.single_blocks:
            joint = block(joint, cond, rope, img.shape[1], mask, backend)
        out = joint[:, : img.shape[1]]
        st.residual = out - head
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
