"""The avatar's frame cache: the release's always-on DeepCache, per latent frame (shared/spec/official_apps.md §B.6).

What the release does (``models_audio.py`` forward with ``is_cache``, and the pipeline's loop): at a *computing*
step every window runs the whole model, and the input of the last single-stream block ([reference frame | video |
text] tokens) is recorded; the video tokens are kept per latent frame of the circular buffer, the reference-frame
and text tokens with each frame they were recorded with. At the other steps the model runs only the last single
block, on that cached input put together for the window's latent frames (video tokens frame by frame; reference
and text tokens of the record of the window's first latent frame), under the current step's conditioning
(timestep modulation); the final layer follows as usual. Windows shift between steps, so a window at a cached step
mixes frames recorded by different windows: the cache is per latent frame, not per call. Each guidance branch
(``"cond"`` / ``"uncond"``) has its own records.

This is a block pass (``model.block_passes``, like the step caches in :mod:`hyvideo_core.runtime.caching`). The
generic step caches refuse to skip on the avatar model (its ``cache_policy`` is ``"never_skip"``: they would reuse
the previous call's residual, which belongs to another window); this cache knows the windows because the sampler
tells it, call by call, with :meth:`FrameCache.at`. Outside ``at`` the model runs as if the cache were not there.

Which steps compute: :func:`~hyvideo_core.apps.avatar.schedule.frame_cache_computes` is the release's rule for its
50 steps (0-15, 20, 25, 30, 35, 40, 41-49: 30 of 50). The release applies those step numbers whatever the step
count; :func:`frame_cache_rule` scales the pattern to ``steps`` instead (module docstring of that function).

Memory: the cache holds the video tokens of every latent frame of the buffer per branch (as the release does),
about ``frames x h x w / 4 x hidden`` values each: 0.45 GB per 33 latent frames at 704x768 in bf16.
Sequence parallel is not supported with the frame cache (an error says so).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ...errors import InputError
from ...model.block_lists import blocks_of
from ...model.extension import find_extension, hooked
from .extension import AvatarExtension
from .schedule import TEXT_CFG_STEPS, frame_cache_computes

RELEASED_STEPS = 50
RELEASED_HEAD = 16           # steps 0-15 compute
RELEASED_TAIL = 9            # steps 41-49 compute
RELEASED_PERIOD = 5          # in between, every 5th step (20, 25, ..., 40) computes


def frame_cache_rule(steps: int) -> Callable[[int], bool]:
    """The computing steps for a run of ``steps`` steps: the release's 50-step pattern scaled to ``steps``.

    The release's pattern is three parts: a head that always computes (16 of 50), a middle that computes every
    5th step, and a tail that always computes (9 of 50). Scaled: head ``round(16·N/50)``, tail ``round(9·N/50)``,
    period ``max(1, round(5·N/50))`` counted from the head's last step (halves round up), so a cached stretch
    spans about the same share of the schedule as in the release; at 50 steps this is the release's rule
    exactly, below 15 steps every step computes. One addition for other step counts: the first step after the
    released CFG schedule switches the unconditional branch from the negative to the positive prompt (step 10)
    always computes, so no cached step reuses text tokens of the other prompt (at 50 steps it is in the head)."""
    if steps == RELEASED_STEPS:
        return frame_cache_computes
    if steps < 1:
        raise InputError(f"frame cache: steps must be at least 1, found {steps}")
    scaled = lambda n: int(n * steps / RELEASED_STEPS + 0.5)
    head, tail, period = scaled(RELEASED_HEAD), scaled(RELEASED_TAIL), max(1, scaled(RELEASED_PERIOD))

    def computes(step: int) -> bool:
        return (step < head or step >= steps - tail or step == TEXT_CFG_STEPS
                or (step - (head - 1)) % period == 0)
    return computes


@dataclass
class _Record:
    """What one computing call recorded besides the per-frame video tokens."""
    reference: torch.Tensor                 # (B, prefix, D) the prepended reference-frame tokens
    text: torch.Tensor                      # (B, L, D)
    mask: Optional[torch.Tensor]            # the joint key mask of that call (None = all real)


@dataclass
class _Call:
    step: int
    latents: Tuple[int, ...]
    branch: str


@dataclass
class FrameCacheStats:
    full: int = 0                           # calls that ran every block
    cached: int = 0                         # calls that ran only the last single block
    decisions: List[bool] = field(default_factory=list)   # True = computed, in call order


class FrameCache:
    """Install on an avatar model for one sampling run; see the module docstring.

    ``computes(step)`` says which steps run the whole model: default the release's 50-step rule, or with
    ``steps=N`` :func:`frame_cache_rule` (N) (the same rule at 50). Use as a context manager or call
    :meth:`close`; an exception inside :meth:`at` removes the cache too."""

    def __init__(self, model, computes: Optional[Callable[[int], bool]] = None, *, steps: Optional[int] = None):
        if computes is None:
            computes = frame_cache_computes if steps is None else frame_cache_rule(steps)
        elif steps is not None:
            raise InputError("frame cache: give either computes (a rule) or steps (the released rule scaled), not both")
        if find_extension(model, AvatarExtension) is None:
            raise InputError("the frame cache is the avatar model's own step cache (it follows the avatar sampler's "
                             "windows); this model has no avatar extension. For text- or image-to-video use the "
                             "step cache methods teacache or first_block_cache.")
        singles = blocks_of(model, model.BLOCK_LISTS[1])
        if len(singles) == 0:
            raise InputError("the frame cache reruns the last single-stream block; this model has none")
        self.model, self.computes = model, computes
        self.stats = FrameCacheStats()
        self._frames: Dict[str, Dict[int, Tuple[torch.Tensor, _Record]]] = {}
        self._call: Optional[_Call] = None
        self._last_step: Optional[int] = None
        # the last single block's input, taken while a computing call runs (hooked once: compiled blocks would
        # recompile if hooks came and went every call)
        self._captured: Optional[List[torch.Tensor]] = None
        self._hook = singles[len(singles) - 1].register_forward_pre_hook(self._capture)
        model.block_passes.append(self)

    def __enter__(self) -> "FrameCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the cache from the model and drop what it holds."""
        if self in self.model.block_passes:
            self.model.block_passes.remove(self)
            self._hook.remove()
        self._frames.clear()
        self._call = None

    @property
    def installed(self) -> bool:
        return self in self.model.block_passes

    def reset(self) -> None:
        """Forget every record (done automatically when the step number goes down: a new run)."""
        self._frames.clear()
        self.stats = FrameCacheStats()
        self._last_step = None

    @contextlib.contextmanager
    def at(self, step: int, latent_indices: Sequence[int], branch: str) -> Iterator["FrameCache"]:
        """Around one model call of one window: denoising step ``step``, the window's latent frame indices into
        the sampler's buffer (in the window's order), and the guidance branch ("cond" / "uncond")."""
        if not self.installed:
            raise InputError("this frame cache was closed; make a new FrameCache for the next run")
        try:
            indices = tuple(int(i) for i in latent_indices)
        except (TypeError, ValueError):
            raise InputError(f"frame cache: latent_indices must be whole numbers, found {latent_indices!r}") from None
        if not indices or min(indices) < 0 or not isinstance(branch, str) or int(step) < 0:
            raise InputError(f"frame cache: expected a step >= 0, the window's latent frame indices (>= 0) and a "
                             f"branch name; found step {step!r}, indices {indices}, branch {branch!r}")
        if self._last_step is not None and int(step) < self._last_step:
            self.reset()
        self._last_step = int(step)
        self._call = _Call(int(step), indices, branch)
        try:
            yield self
        except BaseException:
            self.close()
            raise
        finally:
            self._call = None

    # -- the block pass ------------------------------------------------------------------------------

    def __call__(self, model, ctx, img: torch.Tensor, txt: torch.Tensor, inner) -> torch.Tensor:
        call = self._call
        if call is None:
            return inner(ctx, img, txt)
        if "sp_tokens" in ctx.state:
            raise InputError("the frame cache does not work with sequence parallel (each worker holds only part of "
                             "the frames); turn one of them off")
        t = ctx.grid[0]
        if len(call.latents) != t:
            raise InputError(f"frame cache: the window has {t} latent frames but {len(call.latents)} latent indices "
                             f"were given ({call.latents}); pass the window's buffer index of each latent frame")
        frames = self._frames.setdefault(call.branch, {})
        if not self.computes(call.step):
            reuse = self._cached_input(frames, call.latents, img, txt.shape[2])
            if reuse is not None:
                self._record_decision(False)
                return self._last_block(model, ctx, *reuse)
        self._record_decision(True)
        return self._compute_and_record(model, ctx, img, txt, inner, frames, call.latents)

    def _record_decision(self, computed: bool) -> None:
        self.stats.decisions.append(computed)
        if computed:
            self.stats.full += 1
        else:
            self.stats.cached += 1

    def _capture(self, module, args) -> None:
        if self._captured is not None:
            self._captured.append(args[0].detach())

    def _compute_and_record(self, model, ctx, img, txt, inner, frames, latents) -> torch.Tensor:
        captured = self._captured = []
        try:
            out = inner(ctx, img, txt)
        finally:
            self._captured = None
        if len(captured) != 1:
            raise RuntimeError(f"the last single block ran {len(captured)} times in one forward; expected once")
        joint = captured[0]
        (t, h, w), p, n = ctx.grid, ctx.prefix_tokens, ctx.img_len
        record = _Record(joint[:, :p].clone(), joint[:, n:].clone(), None if ctx.mask is None else ctx.mask.clone())
        video = joint[:, p:p + t * h * w].reshape(joint.shape[0], t, h * w, joint.shape[2])
        for k, index in enumerate(latents):
            frames[index] = (video[:, k].clone(), record)
        return out

    def _cached_input(self, frames, latents, img, text_width):
        """[reference | video | text] for this window from the records, or None when a latent frame has no record
        of the same shape yet (then the call computes: the release would read zeros)."""
        entries = [frames.get(i) for i in latents]
        if any(e is None for e in entries):
            return None
        first = entries[0][1]
        video = torch.cat([e[0] for e in entries], dim=1)
        joint = torch.cat([first.reference, video, first.text], dim=1)
        if joint.shape[0] != img.shape[0] or first.reference.shape[1] + video.shape[1] != img.shape[1] \
                or joint.shape[2] != img.shape[2]:
            return None
        return joint, first.mask

    def _last_block(self, model, ctx, joint: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        singles = blocks_of(model, model.BLOCK_LISTS[1])
        index = len(singles) - 1
        # the cached text may be another length than this call's (its own prompt): its own key mask goes with it
        saved = ctx.mask
        ctx.mask = mask
        try:
            joint = singles[index](joint.to(ctx.dtype), ctx)
            for ext in hooked(model, "after_single"):
                joint = ext.after_single(ctx, index, joint)
        finally:
            ctx.mask = saved
        return joint[:, :ctx.img_len]
