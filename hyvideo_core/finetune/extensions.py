"""Training a model extension (an application's modules, e.g. the avatar's) with the fine-tuning engine.

The trainer installs the extension named by ``TrainConfig.extension`` on the model it builds, trains its
modules alone (``trainable="extension"``, the base frozen) or everything (optionally the base at its own
``base_lr``), and passes the cached clips' extras to the model as ``extras=``. ``extra_dropout`` zeroes an
extra per sample with a probability (the unconditional input of that condition's CFG, e.g. silent-adapter
audio windows of zeros), beside caption dropout.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import torch

from ..errors import InputError


def extension_of(name: str, spec):
    """The extension ``name`` of variant ``spec``, built from the function its registry entry names (the
    trainer knows no application: the variant says which of its modules form the extension)."""
    if spec.app is None or spec.app.app != name or not spec.app.extension:
        raise InputError(f"extension {name!r} needs a variant that carries it (e.g. toy-avatar for 'avatar'); "
                         f"{spec.name!r} has {'no application modules' if spec.app is None else spec.app.app!r}")
    return spec.app.extension_factory()(spec.transformer)


def known_extensions() -> Tuple[str, ...]:
    """Names of the extensions some registered variant carries."""
    from ..variants import VARIANTS

    return tuple(sorted({s.app.app for s in VARIANTS.values() if s.app is not None and s.app.extension}))


def install_training_extension(model, cfg) -> tuple:
    """Install ``cfg.extension`` on ``model``; the checkpoint prefixes of its modules (``()`` without one)."""
    from ..model.extension import install_extension
    from ..variants import get_variant

    if not cfg.extension:
        return ()
    extension = install_extension(model, extension_of(cfg.extension, get_variant(cfg.variant)))
    return tuple(f"{name}." for name in extension.modules())


def train_only_extensions(model) -> None:
    """Freeze everything but the installed extensions' modules."""
    from ..model.extension import extensions_of

    model.requires_grad_(False)
    for ext in extensions_of(model):
        for module in ext.modules().values():
            module.requires_grad_(True)


def param_groups(model, named: Mapping[str, torch.nn.Parameter], cfg) -> list:
    """Optimizer groups: one at ``cfg.lr``; with an extension and ``cfg.base_lr``, the base model's trainable
    parameters in a second group at ``base_lr``."""
    if not (cfg.extension and cfg.base_lr is not None and cfg.trainable == "all"):
        return [{"params": list(named.values())}]
    from ..model.extension import extensions_of

    own = {id(p) for ext in extensions_of(model) for m in ext.modules().values() for p in m.parameters()}
    new = [p for p in named.values() if id(p) in own]
    base = [p for p in named.values() if id(p) not in own]
    return [{"params": new}, {"params": base, "lr": cfg.base_lr}]


def drop_extras(extras: Mapping[str, torch.Tensor], dropout: Mapping[str, float],
                generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """A copy of one sample's ``extras`` with each extra named in ``dropout`` zeroed with its probability
    (one draw per name, in name order, from ``generator``)."""
    out = dict(extras)
    for name in sorted(dropout):
        if name not in out:
            raise InputError(f"extra_dropout names {name!r}, but the cached clips carry the extras {sorted(out)}; "
                             f"fix the option or re-cache with that extra")
        if float(torch.rand(1, generator=generator)) < float(dropout[name]):
            out[name] = torch.zeros_like(out[name])
    return out


def check_batch_extras(batch: Mapping, extension) -> None:
    """Extras and extension go together: clips with extras need the extension that reads them, and back."""
    if batch.get("extras") and not extension:
        raise InputError(f"the cached clips carry extension extras {sorted(batch['extras'])}; set the training "
                         f"option extension (e.g. 'avatar') to train the model that reads them")
    if extension and not batch.get("extras"):
        raise InputError(f"extension {extension!r} needs its extras in the cache; the cached clips carry none: "
                         f"re-cache them with RawClip.extras / RawClip.reference")
