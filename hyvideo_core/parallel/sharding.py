"""Sharded weights for inference: FSDP2 ``fully_shard`` over the model's declared block stacks and
the rest of the model, so each of N ranks keeps about 1/N of the parameters resident; a block's
weights are all-gathered just before it runs and freed right after. Composes with sequence
parallel (each rank then holds 1/N of the weights and 1/N of the tokens)."""
from __future__ import annotations

import logging

from torch import nn

from ..model.block_lists import all_blocks

log = logging.getLogger(__name__)


def shard_weights(model: nn.Module) -> int:
    """Shard ``model``'s parameters over every rank of the default process group; returns the
    number of FSDP units (blocks + the root)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    blocks = all_blocks(model)
    for block in blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, reshard_after_forward=True)
    log.info("weights sharded over %d ranks: resident %.1f MiB of %.1f MiB per rank", dist.get_world_size(),
             resident_parameter_bytes(model) / 2 ** 20, parameter_bytes(model) / 2 ** 20)
    return len(blocks) + 1


def resident_parameter_bytes(model: nn.Module) -> int:
    """Bytes of parameters this rank holds (a sharded parameter counts its local shard)."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel() * local.element_size()
    return total


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of the whole model's parameters (sharded ones by their global shape)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


__all__ = ["shard_weights", "resident_parameter_bytes", "parameter_bytes"]
