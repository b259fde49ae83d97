"""Training passes applied to a built transformer from outside (no model-code branches)."""
from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint

from ..model.block_lists import block_lists as declared_block_lists


def enable_gradient_checkpointing(model: torch.nn.Module, block_lists=None) -> int:
    """Recompute each transformer block in the backward pass instead of keeping its activations.

    The block's ``forward`` is replaced on the instance, so parameters and state-dict keys are
    unchanged; only active when grad is enabled and the model is in training mode. Returns the
    number of blocks wrapped."""
    count = 0
    for name in block_lists or declared_block_lists(model, aux=True):
        try:
            blocks = model.get_submodule(name)
        except AttributeError:
            continue
        for block in blocks:
            if getattr(block, "_hvs_checkpointed", False):
                continue
            original = block.forward

            @functools.wraps(original)
            def forward(*args, _original=original, _block=block, **kwargs):
                if _block.training and torch.is_grad_enabled():
                    return checkpoint(_original, *args, use_reentrant=False, **kwargs)
                return _original(*args, **kwargs)

            block.forward = forward
            block._hvs_checkpointed = True
            count += 1
    return count


def disable_gradient_checkpointing(model: torch.nn.Module) -> None:
    for module in model.modules():
        if getattr(module, "_hvs_checkpointed", False):
            del module.forward
            module._hvs_checkpointed = False
