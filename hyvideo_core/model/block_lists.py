"""The repeated block stacks a model declares (``BLOCK_LISTS``, ``AUX_BLOCK_LISTS`` class data),
read by passes — block swap, compile, step caches, quantisation, gradient checkpointing — so
that none of them hard-codes one model family's attribute names."""
from __future__ import annotations

from typing import Iterator, List, Tuple

from torch import nn


def block_lists(model: nn.Module, aux: bool = False) -> Tuple[str, ...]:
    """Dotted names of the model's main block stacks (in execution order), plus the auxiliary
    ones (e.g. the token refiner's) when ``aux``."""
    names = getattr(type(model), "BLOCK_LISTS", None)
    if names is None:
        raise TypeError(f"{type(model).__name__} declares no BLOCK_LISTS; a pass over transformer blocks needs "
                        f"the model class to name its repeated block stacks")
    return tuple(names) + (tuple(getattr(type(model), "AUX_BLOCK_LISTS", ())) if aux else ())


def blocks_of(model: nn.Module, name: str) -> nn.ModuleList:
    return model.get_submodule(name)


def iter_blocks(model: nn.Module, aux: bool = False) -> Iterator[Tuple[str, int, nn.Module]]:
    """(stack name, index, block) over every declared stack, in order."""
    for name in block_lists(model, aux):
        for i, block in enumerate(blocks_of(model, name)):
            yield name, i, block


def all_blocks(model: nn.Module) -> List[nn.Module]:
    """The main stacks' blocks, in execution order."""
    return [block for _, _, block in iter_blocks(model)]
