"""The training loop: flow matching on cached latents, full or LoRA, optional CFG distillation and
LoRA prior preservation.

Determinism: every random draw of a training sample (noise, σ, caption dropout, distillation
guidance) comes from a generator seeded by ``(seed, step, global sample index)``, and the data
order is a pure function of ``(seed, epoch)``. So

* resuming from a checkpoint reproduces the uninterrupted run exactly, and
* N processes with a per-process batch B/N see the same samples with the same noise as one
  process with batch B (DDP averages equal-size shards), up to float summation order.

Run it with ``python -m hyvideo_core.finetune train --config cfg.yaml`` (one process) or
``accelerate launch [--config_file hyvideo_core/finetune/accelerate_configs/fsdp.yaml] -m
hyvideo_core.finetune train --config cfg.yaml`` (several).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import secrets
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..atomic_files import atomic_write_text
from ..errors import InputError
from .checkpoint import (LEGACY_STATE_FILE, STATE_FILE, CheckpointFolder, legacy_state_error, load_training_state,
                         save_training_state)
from .data import BucketBatchSampler, CachedDataset, collate
from .ema import EMA
from .extensions import (check_batch_extras, drop_extras, install_training_extension, known_extensions,
                         param_groups, train_only_extensions)
from .flow import flow_matching_loss, noisy_latents, sample_sigmas, velocity_target
from .lora import DEFAULT_TARGETS
from .sharding import (enable_fsdp_on_cpu, gather_training_state, plain_replica, refuse_deepspeed,
                       resident_parameter_share, scatter_training_state)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    cache_dir: str = ""
    output_dir: str = ""
    variant: str = "toy"                   # architecture to build (registry name)
    init: Optional[str] = None             # start from these transformer weights (any supported layout)
    mode: str = "full"                     # "full" or "lora"
    lora_rank: int = 16
    lora_alpha: Optional[float] = None     # None = rank (scale 1)
    lora_targets: Tuple[str, ...] = DEFAULT_TARGETS   # the official I2V LoRA layer list
    lora_dropout: float = 0.0
    lora_format: str = "comfyui"
    steps: int = 100
    global_batch: int = 4                  # samples per optimizer step over all processes
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    warmup_start: float = 0.01             # LR at step 0 as a fraction of lr
    schedule: str = "constant"             # "constant" or "cosine"
    min_lr_ratio: float = 0.1              # cosine floor
    max_grad_norm: float = 1.0
    timestep_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: Optional[float] = None          # shifted timestep sampling (official I2V LoRA: 7.0)
    train_guidance: float = 6.0            # embedded guidance fed to guidance-distilled models (official: 6.0)
    # guided data target for guidance-distilled models: u + w·(data velocity − u), u = the base's own
    # unconditional output (adapters off, empty prompt, guidance 1), w = train_guidance. Its mean is the
    # guided velocity the embedded guidance stands for; the plain data target is the unguided one.
    guided_target: bool = False
    caption_dropout: float = 0.0           # replace the caption by "" (official: 0.1); needed for a CFG teacher
    distill_teacher: Optional[str] = None  # guidance distillation: CFG teacher weights (tech report §5.1)
    distill_guidance: Tuple[float, float] = (1.0, 8.0)
    # LoRA prior preservation: on these clips the LoRA model is trained to match its own base (adapters
    # off), at an embedded guidance drawn from distill_guidance, so what the model already did stays put
    prior_cache_dir: Optional[str] = None
    prior_weight: float = 1.0
    ema_decay: float = 0.0                 # 0 = off
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"            # "no" or "bf16"
    save_every: int = 0                    # 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    resume: Optional[str] = "auto"         # "auto" (latest in output_dir), a checkpoint folder, or None
    stop_after: Optional[int] = None       # stop (after checkpointing) at this step: for tests / time slots
    threads: Optional[int] = None
    # Model extensions (an application's modules, e.g. the avatar's): "avatar" installs the variant's app
    # extension; the cache's clips then carry its extras (ref_latents, audio_windows, ...), passed as extras=.
    # Extension weights missing from `init` (a base model file) start from the extension's own initialisation.
    extension: Optional[str] = None
    trainable: str = "all"                 # "all" or "extension" (only the extension's modules; the rest frozen)
    base_lr: Optional[float] = None        # trainable "all" with an extension: LR of the base model (None = lr)
    zero_init: Tuple[str, ...] = ()        # parameter-name prefixes zeroed when `init` does not provide them
    # condition dropout per extra, beside caption dropout: {"audio_windows": 0.1} zeroes a sample's audio
    # windows with probability 0.1 (the unconditional input of audio CFG), independently of the caption
    extra_dropout: Optional[Dict[str, float]] = None

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        d = dict(d)
        for k in ("lora_targets", "betas", "distill_guidance", "zero_init"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def check(self) -> None:
        if not self.cache_dir or not self.output_dir:
            raise InputError("cache_dir and output_dir are required")
        if self.mode not in ("full", "lora"):
            raise InputError(f"mode must be 'full' or 'lora'; found {self.mode!r}")
        if self.schedule not in ("constant", "cosine"):
            raise InputError(f"schedule must be 'constant' or 'cosine'; found {self.schedule!r}")
        if self.steps < 1 or self.global_batch < 1 or self.grad_accum < 1:
            raise InputError("steps, global_batch and grad_accum must be >= 1")
        if self.guided_target and self.distill_teacher:
            raise InputError("guided_target and distill_teacher both set the target; choose one")
        if self.trainable not in ("all", "extension"):
            raise InputError(f"trainable must be 'all' or 'extension'; found {self.trainable!r}")
        if self.extension is not None and self.extension not in known_extensions():
            raise InputError(f"unknown extension {self.extension!r}; known: {list(known_extensions())}")
        if self.trainable == "extension" and (self.extension is None or self.mode != "full"):
            raise InputError("trainable 'extension' trains an installed extension's modules: set extension (e.g. "
                             "'avatar') and mode 'full'")
        if self.extension and (self.distill_teacher or self.guided_target or self.prior_cache_dir):
            raise InputError("an extension run trains on data with its extras; distill_teacher, guided_target and "
                             "prior_cache_dir are not supported with it")
        for k, p in (self.extra_dropout or {}).items():
            if not 0.0 <= float(p) <= 1.0:
                raise InputError(f"extra_dropout[{k!r}] must be a probability in [0, 1]; found {p}")
        if self.prior_cache_dir and self.mode != "lora":
            raise InputError(f"prior preservation compares the model with its base (LoRA off), so it needs mode "
                             f"'lora'; found mode {self.mode!r}. Drop prior_cache_dir or train a LoRA")


_PRIOR = 0x9121   # seeds the prior clips' data order and noise apart from the main clips'



def sample_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return cfg.warmup_start + (1 - cfg.warmup_start) * step / cfg.warmup_steps
        if cfg.schedule == "cosine":
            span = max(1, cfg.steps - cfg.warmup_steps)
            p = min(1.0, (step - cfg.warmup_steps) / span)
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        return 1.0
    return f


# ------------------------------------------------------------------------------------------
# model set-up


def build_model(cfg: TrainConfig):
    """The transformer to train: the registry variant, optionally initialised from ``cfg.init``.
    A guidance-distilled student may start from a teacher without guidance embedding: its
    ``guidance_in`` starts with a zero output layer, so step 0 reproduces the teacher."""
    from ..checkpoints.load import open_native, read_native
    from ..checkpoints.validate import describe_mismatch
    from ..model import HunyuanVideoTransformer
    from ..variants import get_variant

    spec = get_variant(cfg.variant)
    torch.manual_seed(sample_seed(cfg.seed, 0xB11D))
    model = HunyuanVideoTransformer(spec.transformer)
    model.variant = spec.name
    new_modules = install_training_extension(model, cfg)
    if cfg.init:
        source, scales, layout = open_native(cfg.init)
        state = model.state_dict()
        # a teacher without guidance embedding may start a guidance-distilled student (see below); a base
        # model file starts an extension run, whose modules it does not hold
        optional = ("guidance_in.", *new_modules)
        expected = {k: tuple(t.shape) for k, t in state.items() if k in source or not k.startswith(optional)}
        problems = describe_mismatch(expected, source.shapes())
        if problems:
            from ..errors import IncompatibleWeightsError
            raise IncompatibleWeightsError(f"init weights {cfg.init!r} do not fit variant {cfg.variant!r}: {problems}; "
                                           f"pick the variant the file was made for")
        with torch.no_grad():
            for k, t in state.items():
                if k in source:
                    t.copy_(read_native(source, k, scales, torch.float32))
            if model.guidance_in is not None and "guidance_in.mlp.0.weight" not in source:
                model.guidance_in.mlp[2].weight.zero_()
                model.guidance_in.mlp[2].bias.zero_()
                log.info("guidance_in initialised with a zero output layer (student starts as the teacher)")
    with torch.no_grad():
        zeroed = [n for n, p in model.named_parameters() if n.startswith(tuple(cfg.zero_init))
                  and not (cfg.init and n in source)]
        for n in zeroed:
            model.get_parameter(n).zero_()
    if cfg.zero_init and not zeroed and not cfg.init:
        raise InputError(f"zero_init {list(cfg.zero_init)} matches no parameter of the model")
    return model



def add_adapters(model, cfg: TrainConfig) -> None:
    """Make the trainable part: LoRA adapters (base frozen) or every parameter."""
    if cfg.mode == "lora":
        from .lora import inject_lora
        inject_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.lora_targets,
                    dropout=cfg.lora_dropout, seed=sample_seed(cfg.seed, 0x10AA))
    elif cfg.trainable == "extension":
        train_only_extensions(model)
    else:
        model.requires_grad_(True)


def load_teacher(path: str, device):
    from ..checkpoints.load import load_transformer

    teacher = load_transformer(path, device=device)
    if teacher.config.guidance_embed:
        log.warning("the distillation teacher %s has a guidance embedding; it is fed guidance 1.0 for both passes", path)
    return teacher.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------
# the loop


@dataclass
class TrainResult:
    step: int
    losses: List[float]
    output_dir: str
    checkpoint: Optional[str]


StepCallback = Callable[[int, float], None]


class Trainer:
    """``callback(step, loss)`` (optional) is called on the main process after every optimizer
    step with the 1-based step and its mean loss; it may raise (e.g. to stop a run from a UI),
    which ends training without a final checkpoint."""

    def __init__(self, cfg: TrainConfig, callback: Optional[StepCallback] = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        cfg.check()
        refuse_deepspeed()
        self.cfg = cfg
        self.callback = callback
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
                               kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        from accelerate.utils import DistributedType
        self.fsdp = enable_fsdp_on_cpu(self.acc) or self.acc.distributed_type == DistributedType.FSDP
        if self.fsdp and cfg.ema_decay:
            raise InputError("ema_decay is not supported with FSDP yet (the EMA copies would be sharded too); "
                             "set ema_decay: 0 or train with the DDP config")
        per_step = self.world * cfg.grad_accum
        if cfg.global_batch % per_step:
            raise InputError(f"global_batch {cfg.global_batch} must be divisible by processes × grad_accum = "
                             f"{self.world} × {cfg.grad_accum}")
        self.micro = cfg.global_batch // per_step
        self.data = CachedDataset(cfg.cache_dir)
        self.sampler = BucketBatchSampler(self.data, cfg.global_batch, seed=cfg.seed)
        self.out = Path(cfg.output_dir)
        self.device = self.acc.device

        self.prior = CachedDataset(cfg.prior_cache_dir) if cfg.prior_cache_dir else None
        self.prior_sampler = (BucketBatchSampler(self.prior, cfg.global_batch, seed=sample_seed(cfg.seed, _PRIOR))
                              if self.prior is not None else None)

        model = build_model(cfg)
        for data in (self.data, self.prior):
            if data is not None and (model.config.text_states_dim != data.manifest["text_states_dim"] or
                                     model.config.text_states_dim_2 != data.manifest["text_states_dim_2"]):
                raise InputError(f"the cache {data.root} holds text embeddings of size {data.manifest['text_states_dim']}"
                                 f" / {data.manifest['text_states_dim_2']}, variant {cfg.variant!r} expects "
                                 f"{model.config.text_states_dim} / {model.config.text_states_dim_2}; re-cache with "
                                 f"that model's text encoders")
        add_adapters(model, cfg)
        if cfg.gradient_checkpointing:
            from .passes import enable_gradient_checkpointing
            enable_gradient_checkpointing(model)
        model.to(self.device).train()
        self.model = model
        self.named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.ema = EMA(self.named.items(), cfg.ema_decay) if cfg.ema_decay else None
        self.opt = torch.optim.AdamW(param_groups(self.model, self.named, cfg), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        if self.fsdp:
            # fully_shard works in place: the parameters become DTensor shards and accelerate re-points
            # the optimizer at them, so the trainable set is read again
            self.ddp = self.acc.prepare(model, self.opt)[0]
            self.named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        else:
            self.ddp = self.acc.prepare_model(model) if self.world > 1 else model
        self.param_share = resident_parameter_share(model)
        self.teacher = load_teacher(cfg.distill_teacher, self.device) if cfg.distill_teacher else None
        if self.teacher is not None and not model.config.guidance_embed:
            raise InputError(f"guidance distillation needs a student with a guidance embedding; variant "
                             f"{cfg.variant!r} has none")
        if cfg.guided_target and not model.config.guidance_embed:
            raise InputError(f"guided_target is for guidance-distilled models (embedded guidance); variant "
                             f"{cfg.variant!r} has none: train it on the plain data target")
        self.step, self.losses = 0, []
        self.run_id = secrets.token_hex(8)      # carried over on resume; tells this run's checkpoints apart
        self._resume()
        if self.acc.is_main_process:            # what a save killed mid-way left behind
            CheckpointFolder(self._ckpt_root()).remove_unfinished()

    # -- checkpoints ------------------------------------------------------------------------

    def _ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    def latest_checkpoint(self) -> Optional[Path]:
        """The newest complete checkpoint of this run folder (None if there is none yet)."""
        return CheckpointFolder(self._ckpt_root()).latest()

    def _resume(self) -> None:
        cfg = self.cfg
        if not cfg.resume:
            return
        path = self.latest_checkpoint() if cfg.resume == "auto" else Path(cfg.resume)
        if path is None:
            return
        if not (path / STATE_FILE).is_file():
            if (path / LEGACY_STATE_FILE).is_file():
                raise legacy_state_error(path)
            raise InputError(f"resume checkpoint {str(path)!r} has no {STATE_FILE}; pass a folder under "
                             f"{self._ckpt_root()} or resume='auto'")
        state = load_training_state(path / STATE_FILE)
        if state["mode"] != cfg.mode or state["variant"] != cfg.variant:
            raise InputError(f"checkpoint {str(path)!r} is a {state['mode']} run of {state['variant']!r}; this run "
                             f"is {cfg.mode} of {cfg.variant!r}")
        if self.fsdp:
            scatter_training_state(self.model, self.opt, list(self.named), state["trainable"], state["optimizer"])
        else:
            with torch.no_grad():
                for n, t in state["trainable"].items():
                    self.named[n].copy_(t)
            self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.sampler.load_state_dict(state["sampler"])
        if self.prior_sampler is not None:
            if state.get("prior_sampler") is None:
                raise InputError(f"checkpoint {str(path)!r} was trained without prior preservation; resume it without "
                                 f"prior_cache_dir or start a new output_dir")
            self.prior_sampler.load_state_dict(state["prior_sampler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.step, self.losses = state["step"], list(state["losses"])
        self.run_id = state.get("run") or self.run_id
        if self.acc.is_main_process:
            log.info("resumed from %s at step %d", path, self.step)

    def save_checkpoint(self) -> Optional[Path]:
        """Write ``checkpoints/step_<N>`` crash-safely (see :class:`CheckpointFolder`) and prune old
        ones. Only the main process writes."""
        self.acc.wait_for_everyone()
        # under FSDP every process takes part in gathering the full tensors; the main one writes them
        full, trainable, optimizer = (gather_training_state(self.model, self.opt, list(self.named)) if self.fsdp
                                      else (None, None, None))
        if not self.acc.is_main_process:
            return None
        state = {
            "step": self.step, "mode": self.cfg.mode, "variant": self.cfg.variant, "config": asdict(self.cfg),
            "run": self.run_id,
            "trainable": trainable if self.fsdp else {n: p.detach().cpu().clone() for n, p in self.named.items()},
            "optimizer": optimizer if self.fsdp else self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None, "sampler": self.sampler.state_dict(),
            "prior_sampler": self.prior_sampler.state_dict() if self.prior_sampler is not None else None,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "losses": list(self.losses),
        }

        def write(folder: Path) -> None:
            if self.fsdp:
                self.export(folder, model=plain_replica(self._module_structure, full))
            else:
                self.export(folder)
            save_training_state(state, folder / STATE_FILE, run=self.run_id)

        return CheckpointFolder(self._ckpt_root()).save(self.step, write, keep=self.cfg.keep_checkpoints)

    def _module_structure(self):
        """A fresh module shaped like the one being trained (variant and adapters), weights not set."""
        from ..model import HunyuanVideoTransformer
        from ..variants import get_variant

        spec = get_variant(self.cfg.variant)
        model = HunyuanVideoTransformer(spec.transformer)
        model.variant = spec.name
        install_training_extension(model, self.cfg)
        add_adapters(model, self.cfg)
        return model

    def export(self, folder: Path, model=None) -> None:
        """Weights for inference: ``model.safetensors`` (official layout; EMA weights when EMA is
        on, raw ones in ``model_raw.safetensors``) or ``lora.safetensors``. ``model``: an unsharded
        replica to write instead of the trained module (FSDP)."""
        from ..checkpoints.load import save_transformer
        from .lora import extract_lora, save_lora

        model = self.model if model is None else model
        if self.cfg.mode == "lora":
            weights = extract_lora(model)
            if self.ema is not None:
                save_lora(weights, folder / "lora_raw.safetensors", fmt=self.cfg.lora_format, model=model)
                for n, w in weights.items():
                    w.down, w.up = self.ema.shadow[f"{n}.lora_A.weight"].clone(), self.ema.shadow[f"{n}.lora_B.weight"].clone()
            save_lora(weights, folder / "lora.safetensors", fmt=self.cfg.lora_format, model=model)
            return
        if self.ema is None:
            save_transformer(model, folder / "model.safetensors")
            return
        save_transformer(self.model, folder / "model_raw.safetensors")
        backup = {n: p.detach().clone() for n, p in self.named.items()}
        self.ema.copy_to(self.named)
        save_transformer(self.model, folder / "model.safetensors")
        with torch.no_grad():
            for n, p in self.named.items():
                p.copy_(backup[n])

    # -- one step ---------------------------------------------------------------------------

    def _sample_inputs(self, indices: Sequence[int], positions: Sequence[int], prior: bool = False) -> dict:
        cfg = self.cfg
        data = self.prior if prior else self.data
        items, noises, sigmas, guid = [], [], [], []
        for i, j in zip(indices, positions):
            parts = (cfg.seed, self.step, j, _PRIOR) if prior else (cfg.seed, self.step, j)
            g = torch.Generator().manual_seed(sample_seed(*parts))
            item = dict(data[i])
            sigma = sample_sigmas(1, g, cfg.timestep_sampling, cfg.logit_mean, cfg.logit_std, cfg.shift)
            drop = float(torch.rand(1, generator=g)) < cfg.caption_dropout
            w = float(torch.empty(1).uniform_(*cfg.distill_guidance, generator=g))
            noise = torch.randn(item["latents"].shape, generator=g)
            if drop:
                item["text_states"], item["text_states_2"] = data.null["text_states"], data.null["text_states_2"]
            if cfg.extra_dropout:   # drawn after the rest, so runs without it keep their random stream
                item["extras"] = drop_extras(item.get("extras") or {}, cfg.extra_dropout, g)
            items.append(item)
            noises.append(noise)
            sigmas.append(sigma)
            guid.append(w)
        batch = collate(items)
        batch["noise"] = torch.stack(noises)
        batch["sigma"] = torch.cat(sigmas)
        batch["w"] = torch.tensor(guid)
        check_batch_extras(batch, self.cfg.extension)
        return {k: ({n: t.to(self.device) for n, t in v.items()} if k == "extras" else v.to(self.device))
                for k, v in batch.items()}

    def _loss(self, b: dict) -> torch.Tensor:
        cfg = self.cfg
        x0, noise, sigma = b["latents"], b["noise"], b["sigma"]
        xt = noisy_latents(x0, noise, sigma)
        t = sigma * 1000.0
        n = x0.shape[0]
        if self.teacher is not None:
            with torch.no_grad():
                g1 = torch.full((n,), 1000.0, device=self.device) if self.teacher.config.guidance_embed else None
                vc = self.teacher(xt, t, b["text_states"], b["text_mask"], b["text_states_2"], g1)
                vu = self.teacher(xt, t, *self._null_text(n), g1)
                w = b["w"].view(-1, 1, 1, 1, 1)
                target = vu + w * (vc - vu)
            pred = self.ddp(xt, t, b["text_states"], b["text_mask"], b["text_states_2"], b["w"] * 1000.0)
            return flow_matching_loss(pred, target)
        guidance = (torch.full((n,), cfg.train_guidance * 1000.0, device=self.device)
                    if self.model.config.guidance_embed else None)
        target = velocity_target(x0, noise)
        if cfg.guided_target:
            target = self._guided(xt, t, target)
        pred = self.ddp(xt, t, b["text_states"], b["text_mask"], b["text_states_2"], guidance,
                        **({"extras": b["extras"]} if "extras" in b else {}))
        return flow_matching_loss(pred, target)

    def _null_text(self, n: int) -> tuple:
        """(text_states, text_mask, text_states_2) of the empty prompt, ``n`` times, on the device."""
        null = collate([{"latents": torch.zeros(()), **self.data.null}] * n)
        return tuple(null[k].to(self.device) for k in ("text_states", "text_mask", "text_states_2"))

    def _guided(self, xt: torch.Tensor, t: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        from .lora import lora_disabled

        one = torch.full((xt.shape[0],), 1000.0, device=self.device)
        with torch.no_grad(), lora_disabled(self.model):
            u = self.model(xt, t, *self._null_text(xt.shape[0]), one)
        return u + self.cfg.train_guidance * (data - u)

    def _prior_loss(self, b: dict) -> torch.Tensor:
        """Distance of the LoRA model's velocity from its base's on a prior clip, at the sample's guidance."""
        from .lora import lora_disabled

        xt, t = noisy_latents(b["latents"], b["noise"], b["sigma"]), b["sigma"] * 1000.0
        args = (xt, t, b["text_states"], b["text_mask"], b["text_states_2"],
                b["w"] * 1000.0 if self.model.config.guidance_embed else None)
        with torch.no_grad(), lora_disabled(self.model):
            target = self.model(*args)
        return flow_matching_loss(self.ddp(*args), target)

    def train_step(self) -> float:
        cfg = self.cfg
        batch = self.sampler.next()
        prior_batch = self.prior_sampler.next() if self.prior_sampler is not None else None
        torch.manual_seed(sample_seed(cfg.seed, self.step, 0xD0, self.rank))   # LoRA dropout etc.
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for k in range(cfg.grad_accum):
            start = (k * self.world + self.rank) * self.micro
            positions = list(range(start, start + self.micro))
            # one backward per forward (DDP needs that): the data part, then the prior part
            parts = [(self._loss, self._sample_inputs([batch[p] for p in positions], positions), 1.0)]
            if prior_batch is not None:
                parts.append((self._prior_loss, self._sample_inputs([prior_batch[p] for p in positions], positions,
                                                                    prior=True), cfg.prior_weight))
            for m, (loss_fn, b, weight) in enumerate(parts):
                sync = (k == cfg.grad_accum - 1 and m == len(parts) - 1) or self.world == 1
                ctx = self.acc.no_sync(self.ddp) if not sync else contextlib.nullcontext()
                with ctx, self.acc.autocast():
                    loss = weight * loss_fn(b) / cfg.grad_accum
                    self.acc.backward(loss)
                total += loss.detach()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(list(self.named.values()), cfg.max_grad_norm)
        self.opt.step()
        self.sched.step()
        if self.ema is not None:
            self.ema.update()
        self.step += 1
        mean = float(self.acc.reduce(total, reduction="mean")) if self.world > 1 else float(total)
        self.losses.append(mean)
        return mean

    def train(self) -> TrainResult:
        cfg = self.cfg
        last = None
        stop = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
        t0 = time.time()
        log_path = self.out / "log.jsonl"
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.json", json.dumps(asdict(self.cfg), indent=1))
        while self.step < stop:
            loss = self.train_step()
            if self.callback is not None and self.acc.is_main_process:
                self.callback(self.step, loss)
            if self.acc.is_main_process and (self.step % cfg.log_every == 0 or self.step == stop):
                rec = {"step": self.step, "loss": loss, "lr": self.sched.get_last_lr()[0], "processes": self.world,
                       "sharded": self.fsdp, "param_share": round(self.param_share, 6),
                       "s_per_step": (time.time() - t0) / cfg.log_every}
                t0 = time.time()
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                log.info("step %d loss %.5f lr %.2e", self.step, loss, rec["lr"])
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < stop:
                last = self.save_checkpoint()
        last = self.save_checkpoint() or last
        self.acc.wait_for_everyone()
        return TrainResult(self.step, list(self.losses), str(self.out), str(last) if last else None)


def train(cfg: TrainConfig, callback: Optional[StepCallback] = None) -> TrainResult:
    """Run (or resume) the training described by ``cfg``; ``callback(step, loss)`` as in :class:`Trainer`."""
    return Trainer(cfg, callback=callback).train()
