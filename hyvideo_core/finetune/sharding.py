"""Fully sharded data parallel training (FSDP2 through accelerate) for the trainer.

Launched with ``accelerate_configs/fsdp.yaml`` every process keeps 1/N of each trainable tensor
(and of its AdamW state) as a ``DTensor`` shard; accelerate's ``prepare`` applies ``fully_shard``
per double/single block and re-points the optimizer at the shards. What this module adds:

* the same FSDP path on CPU-only machines (gloo): accelerate chooses FSDP only for accelerator
  devices and otherwise runs plain DDP without saying so, so :func:`enable_fsdp_on_cpu` puts
  accelerate's state on its FSDP path with the plugin parsed from the same config;
* checkpoints in the single-process format: :func:`gather_training_state` collects full tensors
  (parameters and the index-keyed optimizer state) on the main process, :func:`scatter_training_state`
  loads them back into the shards, and :func:`plain_replica` rebuilds an unsharded model from the
  full tensors for the inference exports. So a run saved under FSDP resumes in one process or on
  another world size, and the reverse.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Tuple

import torch
from torch import nn

from ..errors import InputError

log = logging.getLogger(__name__)


def fsdp_requested() -> bool:
    """True when the launch asked for FSDP (``accelerate launch`` exports this from the config file)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def refuse_deepspeed() -> None:
    """DeepSpeed launches are refused before accelerate builds anything.

    The trainer drives its own AdamW, gradient clipping and full-tensor checkpoints; DeepSpeed would
    need its engine built by ``accelerate.prepare(model, optimizer)``, its own clipping and step, and
    ZeRO-partitioned checkpoints, none of which is wired here. Left alone, accelerate's backward would
    call an engine that was never made. Nothing of it can be exercised on CPU either (accelerate only
    selects DeepSpeed on GPUs; ZeRO's fused optimizer and communication are CUDA kernels over NCCL)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise InputError("DeepSpeed is not supported by this trainer; launch with accelerate_configs/fsdp.yaml "
                         "(parameters, gradients and optimizer state sharded, as ZeRO-3) or ddp.yaml instead")


def enable_fsdp_on_cpu(acc) -> bool:
    """Put ``acc`` on accelerate's FSDP path when FSDP was asked for but accelerate fell back to
    DDP because the processes run on CPU. Returns True when it did so.

    accelerate (1.x) selects ``DistributedType.FSDP`` only for accelerator devices; on CPU the same
    launch becomes ``MULTI_CPU`` (DDP) silently. FSDP2 itself runs on CPU over gloo, so the state is
    switched to FSDP with a ``FullyShardedDataParallelPlugin`` built from the launch's own
    environment, i.e. from the same config file; the wrapping, the optimizer re-pointing and the
    mixed-precision policy are then accelerate's own code."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not fsdp_requested() or acc.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise InputError(f"FSDP on CPU processes needs fsdp_version: 2 in the accelerate config (found "
                         f"{plugin.fsdp_version}); use hyvideo_core/finetune/accelerate_configs/fsdp.yaml")
    if acc.mixed_precision != "no":
        plugin.set_mixed_precision(acc.mixed_precision)
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return True


def resident_parameter_share(model: nn.Module) -> float:
    """Fraction of the model's parameter elements this process holds (1.0 unsharded, ~1/N under FSDP)."""
    from torch.distributed.tensor import DTensor

    total = local = 0
    for p in model.parameters():
        total += p.numel()
        local += p.to_local().numel() if isinstance(p, DTensor) else p.numel()
    return local / max(1, total)


def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_training_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                          names: List[str]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], dict]:
    """``(model state, trainable parameters, optimizer state)`` as full CPU tensors on the main
    process (empty on the others). A collective: every process must call it. ``names`` are the
    trainable parameters in the optimizer's order; the optimizer state comes back keyed by their
    index, exactly as ``optimizer.state_dict()`` of an unsharded run."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    full = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    by_name = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    if not full:                                       # not the main process
        return {}, {}, {}
    index = {n: i for i, n in enumerate(names)}
    state = {index[n]: v for n, v in by_name["state"].items()}
    groups = [dict(g, params=[index[n] for n in g["params"]]) for g in by_name["param_groups"]]
    return full, {n: full[n] for n in names}, {"state": state, "param_groups": groups}


def scatter_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, names: List[str],
                           trainable: Dict[str, torch.Tensor], optimizer_state: dict) -> None:
    """Load full trainable tensors and an index-keyed optimizer state (every process read the same
    checkpoint) into this process's shards. A collective."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    unknown = sorted(set(trainable) - set(names))
    if unknown:
        raise InputError(f"the checkpoint trains parameters this run does not: {unknown[:3]}")
    set_model_state_dict(model, dict(trainable), options=_full_options(strict=False))
    by_name = {"state": {names[i]: v for i, v in optimizer_state["state"].items()},
               "param_groups": [dict(g, params=[names[i] for i in g["params"]])
                                for g in optimizer_state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=_full_options())


def plain_replica(build, full_state: Dict[str, torch.Tensor]) -> nn.Module:
    """An unsharded model holding ``full_state`` (the tensors are taken, not copied): ``build()``
    makes the module structure on the meta device, so the replica costs no memory of its own."""
    with torch.device("meta"):
        model = build()
    missing, unexpected = model.load_state_dict(full_state, strict=False, assign=True)
    if missing or unexpected:
        raise RuntimeError(f"the gathered state does not fit the model: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return model
