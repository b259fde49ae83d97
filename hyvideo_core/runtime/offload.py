"""Block swap: keep some transformer blocks resident on the compute device and stream the rest
in from an offload store just before use, one block at a time.

``plan_block_swap(model, budget_bytes, activation_bytes)`` chooses how many double / single
blocks to swap so that the predicted peak (resident weights + blocks in flight + activations)
fits the budget; ``enable_block_swap(model, plan, device)`` applies it as a pass: forward
pre-hooks on the blocks materialise a swapped block's weights on the device (waiting for its
prefetch on CUDA) and start the prefetch of the next swapped block on a side CUDA stream;
forward hooks drop the device copy again. The first blocks stay resident and the tail is
swapped, so passes that read ``double_blocks[0]`` directly (TeaCache) see real weights.

Stores:
* ``"cpu"``: the weights live in CPU memory (pinned when the device is CUDA); materialising is a
  host-to-device copy (async on a side stream with ``prefetch=True``).
* ``"disk"``: the weights are written once to a flat file and read back (plain reads, no mmap,
  so nothing stays resident) into fresh tensors per use. On a CPU "device" this is what makes the
  saving real and measurable: peak RSS drops by what the plan predicts.
"""
from __future__ import annotations

import logging
import os
import tempfile
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..model.block_lists import all_blocks, block_lists, blocks_of

log = logging.getLogger(__name__)

GiB = 1024 ** 3


def _fmt(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / 2 ** 20:.1f} MiB"


# --------------------------------------------------------------------------------------------
# sizes and the plan
# --------------------------------------------------------------------------------------------
def _tensors(module: nn.Module):
    for sub in module.modules():
        for name, t in list(sub._parameters.items()) + list(sub._buffers.items()):
            if t is not None:
                yield sub, name, t


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (meta tensors count by shape and dtype)."""
    return sum(t.numel() * t.element_size() for _, _, t in _tensors(module))


def estimate_activation_bytes(config, latent_thw: Tuple[int, int, int], text_tokens: int = 256, batch: int = 1,
                              dtype: torch.dtype = torch.bfloat16, materialised_scores: bool = False) -> int:
    """A working-set estimate of one transformer forward, dominated by a single-stream block.

    Live at the peak of a single block (in units of tokens x hidden x dtype bytes): the input and
    output residual (2), the fused linear1 output q|k|v|mlp (3 + r), the GELU'd MLP input (r), the
    concatenation fed to linear2 (1 + r), the attention output (1) and q/k after norm+RoPE in
    float32 (2 x 2 x fp32/dtype), with r = mlp_width_ratio; plus the float32 LayerNorm/modulate
    temporary (2 fp32 units). ``materialised_scores`` adds the batch x heads x L x L float32
    score matrix of a non-flash attention (the CPU math path)."""
    tokens = batch * (latent_thw[0] // config.patch_size[0]) * (latent_thw[1] // config.patch_size[1]) * \
        (latent_thw[2] // config.patch_size[2])
    length = tokens + batch * text_tokens
    unit = length * config.hidden_size * torch.empty(0, dtype=dtype).element_size()
    fp32 = length * config.hidden_size * 4
    r = config.mlp_width_ratio
    total = unit * (2 + (3 + r) + r + (1 + r) + 1) + fp32 * (2 + 2)
    if materialised_scores:
        total += batch * config.heads_num * (length // batch) ** 2 * 4
    return int(total)


@dataclass(frozen=True)
class OffloadPlan:
    double_swap: int                 # number of double blocks swapped (the last ones)
    single_swap: int                 # number of single blocks swapped (the last ones)
    resident_bytes: int              # non-block weights + resident blocks
    swapped_bytes: int               # weights living in the offload store
    in_flight_bytes: int             # swapped weights materialised at once (1 block, 2 with prefetch)
    activation_bytes: int
    budget_bytes: Optional[int] = None
    prefetch: bool = True

    @property
    def predicted_peak_bytes(self) -> int:
        return self.resident_bytes + self.in_flight_bytes + self.activation_bytes

    @property
    def fits(self) -> bool:
        return self.budget_bytes is None or self.predicted_peak_bytes <= self.budget_bytes

    def describe(self) -> str:
        return (f"swap {self.double_swap} double + {self.single_swap} single blocks: resident "
                f"{_fmt(self.resident_bytes)} + in flight {_fmt(self.in_flight_bytes)} + activations "
                f"{_fmt(self.activation_bytes)} = predicted peak {_fmt(self.predicted_peak_bytes)}" +
                ("" if self.budget_bytes is None else f" (budget {_fmt(self.budget_bytes)}"
                 f"{'' if self.fits else ', DOES NOT FIT'})"))


def _block_sizes(model: nn.Module) -> Tuple[List[int], List[int], int]:
    first, second = (blocks_of(model, name) for name in block_lists(model))
    double = [module_bytes(b) for b in first]
    single = [module_bytes(b) for b in second]
    return double, single, module_bytes(model) - sum(double) - sum(single)


def plan_for(model: nn.Module, double_swap: int, single_swap: int, activation_bytes: int = 0,
             prefetch: bool = True, budget_bytes: Optional[int] = None) -> OffloadPlan:
    """The plan (and its predicted peak) for swapping the last ``double_swap`` / ``single_swap`` blocks."""
    double, single, other = _block_sizes(model)
    if not (0 <= double_swap <= len(double) and 0 <= single_swap <= len(single)):
        raise ValueError(f"cannot swap {double_swap}/{single_swap} of {len(double)} double / {len(single)} single blocks")
    swapped = double[len(double) - double_swap:] + single[len(single) - single_swap:]
    largest = sorted(swapped, reverse=True)
    in_flight = sum(largest[: 2 if prefetch else 1])
    return OffloadPlan(double_swap, single_swap, other + sum(double) + sum(single) - sum(swapped), sum(swapped),
                       in_flight, int(activation_bytes), budget_bytes, prefetch)


def plan_block_swap(model: nn.Module, budget_bytes: int, activation_bytes: int = 0,
                    prefetch: bool = True) -> OffloadPlan:
    """The fewest swapped blocks whose predicted peak fits ``budget_bytes``: double blocks (the
    largest) are swapped first, from the last one backwards, then single blocks. If even swapping
    every block does not fit, that plan is returned with ``fits == False``."""
    n_double, n_single = (len(blocks_of(model, name)) for name in block_lists(model))
    candidates = [(d, 0) for d in range(n_double + 1)] + [(n_double, s) for s in range(1, n_single + 1)]
    plan = None
    for d, s in candidates:
        plan = plan_for(model, d, s, activation_bytes, prefetch, budget_bytes)
        if plan.fits:
            return plan
    log.warning("block swap: even swapping every block does not fit the budget: %s", plan.describe())
    return plan


# --------------------------------------------------------------------------------------------
# stores
# --------------------------------------------------------------------------------------------
class _CpuStore:
    def __init__(self, pin: bool):
        self.pin = pin
        self._data: Dict[int, List[torch.Tensor]] = {}

    def put(self, idx: int, tensors: List[torch.Tensor]) -> None:
        cpu = [t.detach().to("cpu") for t in tensors]
        self._data[idx] = [t.pin_memory() if self.pin else t for t in cpu]

    def get(self, idx: int, device: torch.device, non_blocking: bool) -> List[torch.Tensor]:
        return [t.to(device, non_blocking=non_blocking) for t in self._data[idx]]

    def close(self) -> None:
        self._data.clear()


class _DiskStore:
    """Raw tensor bytes in one flat file; read back with plain reads into fresh tensors.

    Without a ``path`` the file is anonymous (``tempfile.TemporaryFile``: never named on Linux,
    unlinked at once elsewhere on POSIX), so its space returns to the disk when the store is closed,
    collected with the model, or the process ends in any way, even killed; nothing is left in the
    temp folder. A finaliser closes the file when the store is dropped without ``close()``."""

    def __init__(self, path: Optional[str]):
        if path is None:
            self._file = tempfile.TemporaryFile(prefix="hyvideo-blockswap-", suffix=".bin")
        else:
            self._file = open(path, "w+b")
        self.path = path
        self._index: Dict[int, List[Tuple[int, int, torch.dtype, torch.Size]]] = {}
        self._finalizer = weakref.finalize(self, self._file.close)

    def put(self, idx: int, tensors: List[torch.Tensor]) -> None:
        entries = []
        self._file.seek(0, os.SEEK_END)
        for t in tensors:
            raw = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            offset = self._file.tell()
            self._file.write(memoryview(raw.numpy()))
            entries.append((offset, raw.numel(), t.dtype, t.shape))
        self._file.flush()
        self._index[idx] = entries

    def get(self, idx: int, device: torch.device, non_blocking: bool) -> List[torch.Tensor]:
        out = []
        for offset, nbytes, dtype, shape in self._index[idx]:
            buf = torch.empty(nbytes, dtype=torch.uint8)
            self._file.seek(offset)
            self._file.readinto(memoryview(buf.numpy()))
            out.append(buf.view(dtype).reshape(shape).to(device))
        return out

    def close(self) -> None:
        self._finalizer()


# --------------------------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------------------------
class BlockSwap:
    """Handle of an applied block swap: ``.plan``, ``.loads`` (materialisations so far), ``.remove()``."""

    def __init__(self, model: nn.Module, plan: OffloadPlan, device, store: str = "cpu",
                 path: Optional[str] = None):
        self.model, self.plan, self.device = model, plan, torch.device(device)
        cuda = self.device.type == "cuda"
        self.prefetch = plan.prefetch and cuda
        if plan.prefetch and not cuda:
            log.info("block swap on %s: no side stream, blocks are loaded synchronously", self.device)
        stacks = block_lists(model)
        self.blocks: List[nn.Module] = all_blocks(model)
        n_double = len(blocks_of(model, stacks[0]))
        swapped = list(range(n_double - plan.double_swap, n_double)) + \
            list(range(len(self.blocks) - plan.single_swap, len(self.blocks)))
        self.swapped = set(swapped)
        if store == "cpu":
            self.store = _CpuStore(pin=cuda)
        elif store == "disk":
            self.store = _DiskStore(path)
        else:
            raise ValueError(f"unknown offload store {store!r}; expected 'cpu' or 'disk'")
        self.loads = 0
        self._stream = torch.cuda.Stream(self.device) if self.prefetch else None
        self._pending: Dict[int, Tuple[List[torch.Tensor], Optional[torch.cuda.Event]]] = {}
        self._loaded: set = set()

        for name, child in model.named_children():
            if name not in stacks:
                child.to(self.device)
        # tensors held by the model itself (Foley's learned sync positions and empty features) are resident too
        with torch.no_grad():
            for param in model.parameters(recurse=False):
                param.data = param.data.to(self.device)
        for i, block in enumerate(self.blocks):
            if i in self.swapped:
                self.store.put(i, [t for _, _, t in _tensors(block)])
                self._release(i)
            else:
                block.to(self.device)
        self._handles = []
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(lambda m, a, i=i: self._before(i)))
            if i in self.swapped:
                self._handles.append(block.register_forward_hook(lambda m, a, o, i=i: self._release(i)))
                # for passes that call a block's submodules directly (TeaCache reads img_mod of block 0)
                block.ensure_weights = lambda i=i: self._before(i)

    # weights in and out
    def _assign(self, i: int, tensors: List[torch.Tensor]) -> None:
        for (module, name, _), t in zip(list(_tensors(self.blocks[i])), tensors):
            if name in module._parameters:
                module._parameters[name].data = t
            else:
                module._buffers[name] = t

    def _release(self, i: int) -> None:
        self._loaded.discard(i)
        placeholders = [torch.empty(0, dtype=t.dtype, device=self.device) for _, _, t in _tensors(self.blocks[i])]
        self._assign(i, placeholders)

    def _fetch(self, i: int) -> None:
        """Start materialising block ``i`` (async on the side stream when prefetching)."""
        if i in self._pending:
            return
        if self._stream is None:
            self._pending[i] = (self.store.get(i, self.device, non_blocking=False), None)
            return
        with torch.cuda.stream(self._stream):
            tensors = self.store.get(i, self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._stream)
        self._pending[i] = (tensors, event)

    def _before(self, i: int) -> None:
        if i in self.swapped and i not in self._loaded:
            self._fetch(i)
            tensors, event = self._pending.pop(i)
            if event is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(event)
                for t in tensors:
                    t.record_stream(current)   # freed in compute-stream order, not the side stream's
            self._assign(i, tensors)
            self._loaded.add(i)
            self.loads += 1
        if self.prefetch:
            nxt = next((j for j in range(i + 1, len(self.blocks)) if j in self.swapped), None)
            if nxt is not None:
                self._fetch(nxt)

    def remove(self) -> None:
        """Undo: every block resident on the device again, hooks removed, store closed."""
        for h in self._handles:
            h.remove()
        for i in sorted(self.swapped):
            self._assign(i, self.store.get(i, self.device, non_blocking=False))
            del self.blocks[i].ensure_weights
        self._pending.clear()
        self.store.close()


def enable_block_swap(model: nn.Module, plan: OffloadPlan | Tuple[int, int], device="cuda", store: str = "cpu",
                      path: Optional[str] = None, prefetch: bool = True) -> BlockSwap:
    """Apply block swap. ``plan``: an :class:`OffloadPlan` or (double_swap, single_swap)."""
    if not isinstance(plan, OffloadPlan):
        plan = plan_for(model, *plan, prefetch=prefetch)
    swap = BlockSwap(model, plan, device, store, path)
    log.info("block swap: %s", plan.describe())
    return swap
