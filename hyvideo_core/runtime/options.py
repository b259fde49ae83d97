"""Typed options for the speed and memory passes, and the one call that applies them.

``prepare_transformer`` loads a transformer and applies, from outside the model, fp8 weight
quantisation, block swap (planned from a memory budget or set by hand) and regional compile;
``StepCacheOptions`` is what ``sample(..., step_cache=...)`` installs for one sampling run.
The model it returns carries ``model.source`` (:class:`TransformerSource`): the file and options
it was built from, so another process (the ComfyUI worker pool) can build the same model.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass, replace
from typing import Iterator, Optional, Tuple

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

GIB = 1 << 30


@dataclass(frozen=True)
class MemoryOptions:
    quantize: str = "none"         # "none" | "fp8_e4m3fn" (block linears, per-tensor scale)
    block_swap: str = "off"        # "off" | "auto" (plan from weights_budget_gb) | "manual"
    weights_budget_gb: float = 12.0  # device memory the transformer weights may take with "auto"
    swap_double: int = 0           # with "manual": the last N double blocks live off the device
    swap_single: int = 0
    store: str = "cpu"             # where swapped blocks live: "cpu" (pinned RAM) or "disk"
    compile: bool = False          # regional torch.compile per block

    def __post_init__(self) -> None:
        for name, value, allowed in (("quantize", self.quantize, ("none", "fp8_e4m3fn")),
                                     ("block_swap", self.block_swap, ("off", "auto", "manual")),
                                     ("store", self.store, ("cpu", "disk"))):
            if value not in allowed:
                raise InputError(f"{name} must be one of {allowed}, got {value!r}")


# The avatar model's own cache (hyvideo_core.apps.avatar.frame_cache): the release's DeepCache schedule,
# per latent frame of the avatar sampler's windows. Only the avatar sampler can drive it; the threshold is unused.
AVATAR_FRAME_CACHE = "avatar_frame_cache"
STEP_CACHE_METHODS = ("teacache", "first_block_cache", AVATAR_FRAME_CACHE)


@dataclass(frozen=True)
class StepCacheOptions:
    method: str = "teacache"       # "teacache" | "first_block_cache" | "avatar_frame_cache"
    threshold: float = 0.15        # 0 disables skipping (bit-identical output); unused by the avatar frame cache

    def __post_init__(self) -> None:
        if self.method not in STEP_CACHE_METHODS:
            raise InputError(f"step cache method must be 'teacache', 'first_block_cache' or '{AVATAR_FRAME_CACHE}' "
                             f"(avatar models only), got {self.method!r}")
        if self.threshold < 0:
            raise InputError(f"step cache threshold must be >= 0, got {self.threshold}")

    @property
    def avatar_frame_cache(self) -> bool:
        """True for the avatar sampler's frame cache (``AvatarOptions(frame_cache=True)``)."""
        return self.method == AVATAR_FRAME_CACHE


@dataclass(frozen=True)
class TransformerSource:
    """How a transformer was built: ``prepare_transformer(path, device, dtype, attention_backend,
    memory)`` then each of ``loras`` (file, strength) added with ``finetune.lora.with_lora``. Set as
    ``model.source`` by those two calls; None (or absent) when the model was built another way."""
    path: str
    device: str = "cpu"
    dtype: Optional[str] = None                # torch dtype name ("bfloat16"), None = the file's precision
    attention_backend: Optional[str] = None
    memory: MemoryOptions = MemoryOptions()
    loras: Tuple[Tuple[str, float], ...] = ()

    def with_lora(self, path: str, strength: float) -> "TransformerSource":
        return replace(self, loras=self.loras + ((os.fspath(path), float(strength)),))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TransformerSource":
        return cls(**dict(data, memory=MemoryOptions(**data["memory"]),
                          loras=tuple((str(p), float(s)) for p, s in data["loras"])))

    def files(self) -> Tuple[str, ...]:
        return (self.path,) + tuple(p for p, _ in self.loras)


def load_with_memory_passes(load, device: torch.device, dtype: Optional[torch.dtype],
                            attention_backend: Optional[str], memory: "MemoryOptions", what: str = "the model"):
    """``load(device)`` a model with block lists (the video transformer, Foley), then fp8 and block swap as
    ``memory`` asks. With block swap the model is loaded on the CPU and only the resident part moves to
    ``device``."""
    from ..attention import resolve_backend
    from ..checkpoints.load import default_compute_dtype
    from ..model.block_lists import all_blocks
    from ..quant.cast import cast_weights_on_the_fly
    from .offload import enable_block_swap, plan_block_swap, plan_for

    # Swapping to the CPU's own RAM saves nothing; to disk it does.
    swap = memory.block_swap != "off" and (device.type != "cpu" or memory.store == "disk")
    if memory.block_swap != "off" and not swap:
        log.info("block swap off: %s already runs from CPU memory (choose store='disk' to page blocks)", what)
    model = load("cpu" if swap else device)
    if swap and device.type != "cpu":
        # loaded on the CPU so swapped blocks never touch the device: set the device's compute dtype
        weights = [m.weight for b in all_blocks(model) for m in b.modules() if isinstance(m, torch.nn.Linear)]
        storage = weights[0].dtype if weights else torch.bfloat16
        compute = dtype or default_compute_dtype(device, storage if storage.is_floating_point else torch.bfloat16)
        cast_weights_on_the_fly(model, compute)
        model.compute_dtype = compute
        model.attention_backend = resolve_backend(attention_backend, device)
    if memory.quantize != "none":
        from ..quant.passes import quantize_transformer

        quantize_transformer(model, memory.quantize)
    if swap:
        plan = (plan_block_swap(model, int(memory.weights_budget_gb * GIB)) if memory.block_swap == "auto"
                else plan_for(model, memory.swap_double, memory.swap_single))
        model.block_swap = enable_block_swap(model, plan, device, store=memory.store)
    return model


def prepare_transformer(path, device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None,
                        attention_backend: Optional[str] = None, memory: Optional[MemoryOptions] = None,
                        extensions=()):
    """``load_transformer`` (with ``extensions``, e.g. the avatar's) followed by the memory passes in ``memory``."""
    from ..checkpoints.load import load_transformer

    memory = memory or MemoryOptions()
    device = torch.device(device)
    model = load_with_memory_passes(
        lambda on: load_transformer(path, device=on, dtype=dtype, attention_backend=attention_backend,
                                    extensions=extensions),
        device, dtype, attention_backend, memory)
    if memory.compile:
        from .compile import compile_blocks, compile_unavailable

        reason = compile_unavailable(device)
        if reason:
            log.warning("torch.compile skipped: %s", reason)
        else:
            compile_blocks(model)
    model.source = TransformerSource(os.fspath(path), str(device), None if dtype is None else str(dtype)[6:],
                                     attention_backend, memory)
    return model


@contextlib.contextmanager
def step_caching(model, options: Optional[StepCacheOptions], num_steps: int) -> Iterator[object]:
    """Install the step cache for one sampling run and remove it afterwards."""
    if options is None:
        yield None
        return
    if options.avatar_frame_cache:
        raise InputError(f"the step cache method {AVATAR_FRAME_CACHE!r} is the avatar model's frame cache: it follows "
                         f"the avatar sampler's windows, so it works only when sampling with avatar conditioning "
                         f"(generate_avatar / AvatarOptions(frame_cache=True)). For text- or image-to-video choose "
                         f"'teacache' or 'first_block_cache'.")
    from .caching import apply_first_block_cache, apply_teacache

    apply = apply_teacache if options.method == "teacache" else apply_first_block_cache
    handle = apply(model, options.threshold, num_steps)
    try:
        yield handle
    finally:
        log.info("step cache (%s %.3g): %d full / %d cached transformer passes", options.method, options.threshold,
                 handle.stats.full, handle.stats.cached)
        handle.remove()
