"""LoRA as a pass over a built transformer: inject, train, merge, save and read in every common
file format.

Injection changes the class of each chosen Linear in place (as the dtype-casting pass does), so
the base weights keep their official keys and ``lora_A`` / ``lora_B`` appear next to them:
``double_blocks.0.img_attn_qkv.weight`` stays, ``double_blocks.0.img_attn_qkv.lora_A.weight``
is added. ``y = base(x) + strength · (alpha / r) · B(A(x))``.

Files (all ``.safetensors``; ``r`` = rank, ``m`` = official module path such as
``double_blocks.0.img_attn_qkv``):

============== ==================================================================================
``comfyui``     ``diffusion_model.m.lora_A.weight`` (r, in), ``.lora_B.weight`` (out, r), ``.alpha`` — what
                ComfyUI's LoRA loaders read (``lora_down`` / ``lora_up`` spellings read too)
``kohya``       ``lora_unet_<m with . -> _>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha`` (musubi-tuner)
``official_i2v`` ``Hunyuan_video_I2V_lora_<m with . -> _>.lora_down.weight`` … (HunyuanVideo-I2V repo)
``diffusers``   ``transformer.<diffusers module>.lora_A.weight`` / ``.lora_B.weight`` (scale folded into B)
============== ==================================================================================

Diffusers splits fused projections (``img_attn_qkv`` = ``to_q | to_k | to_v``, ``linear1`` =
``to_q | to_k | to_v | proj_mlp``); on reading, the pieces are composed exactly into one LoRA of
the fused layer: the down matrices stacked, the up matrices block-diagonal (or, when every piece
shares one down matrix, the up matrices stacked). The mapping is the diffusers layout table of
``hyvideo_core.checkpoints.layouts``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..checkpoints.layouts import DIFFUSERS, split_sizes
from ..errors import CheckpointError, IncompatibleWeightsError, InputError

# The official HunyuanVideo-I2V LoRA targets (PEFT suffix semantics): 325 layers on the 13B model.
DEFAULT_TARGETS: Tuple[str, ...] = ("linear", "fc1", "fc2", "img_attn_qkv", "img_attn_proj", "txt_attn_qkv",
                                    "txt_attn_proj", "linear1", "linear2")
FORMATS = ("comfyui", "kohya", "official_i2v", "diffusers")
KOHYA_PREFIX = "lora_unet_"
I2V_PREFIX = "Hunyuan_video_I2V_lora_"
_DOT_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.", "model.")
_SUFFIXES = {".lora_A.weight": "down", ".lora_down.weight": "down", ".lora_B.weight": "up",
             ".lora_up.weight": "up", ".alpha": "alpha", ".lora_A.default.weight": "down",
             ".lora_B.default.weight": "up"}
_DIFFUSERS_ROOTS = ("transformer_blocks.", "single_transformer_blocks.", "x_embedder.", "context_embedder.",
                    "time_text_embed.", "proj_out", "norm_out.")


@dataclass
class LoRAWeights:
    """One adapted layer: ``down`` (r, in), ``up`` (out, r), ``alpha`` (scale = alpha / r)."""
    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self) -> torch.Tensor:
        return (self.up.float() @ self.down.float()) * self.scale


# ------------------------------------------------------------------------------------------
# the pass


class _LoRAForward:
    """Mixed in before the layer's own class; ``_lora_base`` is that class."""

    _lora_base: type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._lora_base.forward(self, x)
        if not self.lora_enabled or self.lora_strength == 0:
            return y
        h = self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype)))
        return y + (self.lora_B(h) * (self.lora_scale * self.lora_strength)).to(y.dtype)


_CLASSES: Dict[type, type] = {}


def _lora_class(base: type) -> type:
    if base not in _CLASSES:
        _CLASSES[base] = type(f"LoRA{base.__name__}", (_LoRAForward, base), {"_lora_base": base})
    return _CLASSES[base]


def _matches(name: str, targets: Sequence[str]) -> bool:
    for t in targets:
        if t.startswith("re:"):
            if re.fullmatch(t[3:], name):
                return True
        elif name == t or name.endswith("." + t):
            return True
    return False


def linear_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """Every Linear-like layer (has in_features / out_features / a 2-D weight), by name. A layer
    of a block-swapped block whose weight is swapped out (an empty placeholder) counts too."""
    return {n: m for n, m in model.named_modules()
            if isinstance(getattr(m, "in_features", None), int) and isinstance(getattr(m, "out_features", None), int)
            and getattr(m, "weight", None) is not None and (m.weight.dim() == 2 or m.weight.numel() == 0)}


def inject_lora(model: nn.Module, rank: int = 16, alpha: Optional[float] = None,
                targets: Sequence[str] = DEFAULT_TARGETS, dropout: float = 0.0, init: str = "gaussian",
                seed: Optional[int] = 0, freeze_base: bool = True,
                weights: Optional[Mapping[str, LoRAWeights]] = None, strength: float = 1.0) -> List[str]:
    """Add trainable LoRA adapters to the layers named by ``targets`` (PEFT suffix match, or
    ``"re:<regex>"``), or to exactly the layers of ``weights`` with those values. Returns the
    adapted layer names. ``init``: "gaussian" (A ~ N(0, 1/r), as the official recipe) or
    "kaiming" (PEFT's default); B starts at zero, so the model is unchanged at step 0."""
    layers = linear_modules(model)
    chosen = sorted(weights) if weights is not None else [n for n in layers if _matches(n, targets)]
    if not chosen:
        raise InputError(f"no Linear layer matches the LoRA targets {list(targets)}; layer names look like "
                         f"{list(layers)[:5]}")
    if freeze_base:
        model.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for name in chosen:
        m = layers[name]
        if isinstance(m, _LoRAForward):
            raise InputError(f"{name} already carries a LoRA; merge or remove it first")
        if weights is not None:
            w = weights[name]
            r, a = w.rank, w.alpha
        else:
            r, a = rank, float(alpha if alpha is not None else rank)
        device = m.weight.device
        m.lora_A = nn.Linear(m.in_features, r, bias=False, device=device, dtype=torch.float32)
        m.lora_B = nn.Linear(r, m.out_features, bias=False, device=device, dtype=torch.float32)
        with torch.no_grad():
            if weights is not None:
                m.lora_A.weight.copy_(weights[name].down.float())
                m.lora_B.weight.copy_(weights[name].up.float())
            else:
                if init == "gaussian":
                    m.lora_A.weight.copy_(torch.randn(r, m.in_features, generator=gen) / r)
                elif init == "kaiming":
                    bound = 1 / math.sqrt(m.in_features)
                    m.lora_A.weight.copy_(torch.rand(r, m.in_features, generator=gen) * 2 * bound - bound)
                else:
                    raise InputError(f"LoRA init {init!r} is unknown; use 'gaussian' or 'kaiming'")
                m.lora_B.weight.zero_()
        m.lora_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        m.lora_alpha, m.lora_scale, m.lora_strength, m.lora_enabled = a, a / r, strength, True
        m.__class__ = _lora_class(type(m))
    return chosen


def lora_layers(model: nn.Module) -> Dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _LoRAForward)}


def lora_parameters(model: nn.Module) -> List[nn.Parameter]:
    return [p for m in lora_layers(model).values() for p in (m.lora_A.weight, m.lora_B.weight)]


def extract_lora(model: nn.Module) -> Dict[str, LoRAWeights]:
    """The adapters of ``model`` as plain tensors (CPU, float32), by official module name."""
    return {n: LoRAWeights(m.lora_A.weight.detach().float().cpu().clone(), m.lora_B.weight.detach().float().cpu().clone(),
                           float(m.lora_alpha)) for n, m in lora_layers(model).items()}


def _strip(m: nn.Module) -> None:
    for attr in ("lora_A", "lora_B", "lora_dropout"):
        delattr(m, attr)
    for attr in ("lora_alpha", "lora_scale", "lora_strength", "lora_enabled"):
        m.__dict__.pop(attr, None)
    m.__class__ = m._lora_base


def merge_lora(model: nn.Module, strength: Optional[float] = None) -> List[str]:
    """Fold every adapter into its base weight (W += strength · scale · B A, in float32) and
    remove it; the model is left with its plain classes and official keys."""
    merged = []
    for name, m in lora_layers(model).items():
        if getattr(m, "scale_weight", None) is not None or m.weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            raise InputError(f"{name} is stored in fp8; merge the LoRA into a bf16/fp32 model, or keep it unmerged")
        s = m.lora_strength if strength is None else strength
        with torch.no_grad():
            delta = (m.lora_B.weight.float() @ m.lora_A.weight.float()) * (m.lora_scale * s)
            m.weight.copy_((m.weight.float() + delta.to(m.weight.device)).to(m.weight.dtype))
        _strip(m)
        merged.append(name)
    return merged


def remove_lora(model: nn.Module) -> None:
    for m in lora_layers(model).values():
        _strip(m)


def set_lora_strength(model: nn.Module, strength: float) -> None:
    for m in lora_layers(model).values():
        m.lora_strength = strength


@contextlib.contextmanager
def lora_disabled(model: nn.Module):
    """Within the block ``model`` computes as its base (every adapter off); the adapters come back on
    exit, even after an error. Prior preservation uses it to get the base output without a second copy."""
    layers = list(lora_layers(model).values())
    before = [m.lora_enabled for m in layers]
    for m in layers:
        m.lora_enabled = False
    try:
        yield model
    finally:
        for m, on in zip(layers, before):
            m.lora_enabled = on


# ------------------------------------------------------------------------------------------
# applying weights read from a file


def check_lora_fits(model: nn.Module, weights: Mapping[str, LoRAWeights], path: str = "<memory>") -> None:
    layers = linear_modules(model)
    variant = getattr(model, "variant", None) or "this model"
    missing = [n for n in weights if n not in layers]
    if missing:
        raise IncompatibleWeightsError(
            f"LoRA {path!r} adapts {len(missing)} layer(s) that {variant!r} does not have (e.g. {missing[:3]}); "
            f"it was made for another model architecture. Use a HunyuanVideo LoRA.")
    wrong = [f"{n}: LoRA {tuple(w.up.shape[:1]) + tuple(w.down.shape[1:])} (out, in) vs layer "
             f"({layers[n].out_features}, {layers[n].in_features})"
             for n, w in weights.items()
             if w.down.shape[1] != layers[n].in_features or w.up.shape[0] != layers[n].out_features
             or w.up.shape[1] != w.down.shape[0]]
    if wrong:
        raise IncompatibleWeightsError(
            f"LoRA {path!r} does not fit {variant!r}: {len(wrong)} layer(s) have other sizes (e.g. {wrong[:2]}). "
            f"It was trained for a different model size (e.g. the 13B model vs a toy one); load it with the "
            f"model it was made for.")


def apply_lora(model: nn.Module, weights: Mapping[str, LoRAWeights], strength: float = 1.0,
               merge: bool = True, path: str = "<memory>") -> List[str]:
    """Add ``weights`` to ``model``: merged into the base weights (default) or as live adapters."""
    check_lora_fits(model, weights, path)
    names = inject_lora(model, weights=weights, strength=strength, freeze_base=False)
    if merge:
        merge_lora(model)
    return names


def load_lora(path: Union[str, os.PathLike], model: nn.Module, strength: float = 1.0, merge: bool = True) -> List[str]:
    """Read a LoRA file in any supported format and apply it to ``model``."""
    weights = read_lora(path, model)
    return apply_lora(model, weights, strength=strength, merge=merge, path=os.fspath(path))


_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


def shared_copy(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """A copy of ``model`` in which the modules named in ``names`` and their ancestors are new
    objects (so they can be changed freely) and everything else is shared: every parameter and
    buffer tensor, and every other submodule. Costs a few Python objects, no tensor memory.
    Hooks present now (e.g. block swap's) keep firing on the copy; hooks added later to one of
    the two do not reach the other."""
    def fresh(module: nn.Module) -> nn.Module:
        new = copy.copy(module)          # own __dict__ (attributes, class); tensors stay shared
        new._modules = dict(module._modules)
        for attr in _HOOK_DICTS:
            if isinstance(getattr(module, attr, None), dict):
                setattr(new, attr, type(getattr(module, attr))(getattr(module, attr)))
        return new

    root = fresh(model)
    copies = {"": root}
    for name in sorted(set(names)):
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            path = ".".join(parts[:depth])
            if path not in copies:
                parent = copies[".".join(parts[:depth - 1])]
                child = parent._modules.get(parts[depth - 1])
                if child is None:
                    raise InputError(f"{path} is not a submodule of this model")
                copies[path] = parent._modules[parts[depth - 1]] = fresh(child)
    return root


def _stack_adapter(m: nn.Module, w: LoRAWeights, strength: float) -> None:
    """Add ``w`` to a layer that already carries an adapter: one adapter of rank r1 + r2 with
    B = [s1·scale1·B1 | s2·scale2·B2], A = [A1; A2] (the sum of both updates), scale 1."""
    down = torch.cat([m.lora_A.weight.detach().float(), w.down.float().to(m.lora_A.weight.device)], 0)
    up = torch.cat([m.lora_B.weight.detach().float() * (m.lora_scale * m.lora_strength),
                    w.up.float().to(m.lora_B.weight.device) * (w.scale * strength)], 1)
    m.lora_A = nn.Linear(down.shape[1], down.shape[0], bias=False, device=down.device, dtype=torch.float32)
    m.lora_B = nn.Linear(up.shape[1], up.shape[0], bias=False, device=up.device, dtype=torch.float32)
    with torch.no_grad():
        m.lora_A.weight.copy_(down)
        m.lora_B.weight.copy_(up)
    m.lora_A.requires_grad_(False)
    m.lora_B.requires_grad_(False)
    m.lora_alpha, m.lora_scale, m.lora_strength = float(down.shape[0]), 1.0, 1.0


def with_lora(model: nn.Module, weights: Mapping[str, LoRAWeights], strength: float = 1.0,
              path: str = "<memory>") -> nn.Module:
    """``model`` plus ``weights`` as live (unmerged) adapters, returned as a new model object;
    ``model`` itself is not changed and keeps working (for node graphs that share one loaded
    model between branches). Base weights are shared, not copied; only the adapted layers are
    new objects holding the small A/B matrices, so it works on fp8, GGUF and block-swapped
    models too. A layer that already carries an adapter (from an earlier ``with_lora``) gets
    the sum of both. ``strength`` 0 returns ``model`` itself (exactly the base output)."""
    check_lora_fits(model, weights, path)
    if strength == 0:
        return model
    new = shared_copy(model, weights)
    layers = linear_modules(new)
    fresh = {n: w for n, w in weights.items() if not isinstance(layers[n], _LoRAForward)}
    for name, w in weights.items():
        if name not in fresh:
            _stack_adapter(layers[name], w, strength)
    if fresh:
        inject_lora(new, weights=fresh, strength=strength, freeze_base=False)
        for name in fresh:
            layers[name].lora_A.requires_grad_(False)
            layers[name].lora_B.requires_grad_(False)
    source = getattr(model, "source", None)   # how to rebuild it elsewhere (runtime.options.TransformerSource)
    if source is not None:
        new.source = source.with_lora(path, strength) if path != "<memory>" else None
    return new


# ------------------------------------------------------------------------------------------
# reading files


def _open(path: str) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"LoRA file {path!r} does not exist")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"LoRA file {path!r} could not be read as .safetensors ({e}); re-download it") from None


def detect_lora_format(keys: Iterable[str]) -> str:
    modules = [k for k in keys if any(k.endswith(s) for s in _SUFFIXES)]
    if not modules:
        raise CheckpointError(f"no LoRA tensors found (expected keys ending in .lora_A.weight / .lora_down.weight); "
                              f"found keys like {sorted(keys)[:4]}")
    if all(k.startswith(KOHYA_PREFIX) for k in modules):
        return "kohya"
    if all(k.startswith(I2V_PREFIX) for k in modules):
        return "official_i2v"
    stripped = [_strip_dot_prefix(k) for k in modules]
    if any(k.startswith(_DIFFUSERS_ROOTS) for k in stripped):
        return "diffusers"
    return "comfyui"


def _strip_dot_prefix(key: str) -> str:
    for p in _DOT_PREFIXES:
        if key.startswith(p):
            return key[len(p):]
    return key


def _group(tensors: Mapping[str, torch.Tensor]) -> Dict[str, Dict[str, torch.Tensor]]:
    groups: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        for suffix, role in _SUFFIXES.items():
            if key.endswith(suffix):
                groups.setdefault(key[: -len(suffix)], {})[role] = t
                break
    return groups


def _weights(group: Mapping[str, torch.Tensor], name: str, path: str) -> LoRAWeights:
    if "down" not in group or "up" not in group:
        raise CheckpointError(f"LoRA {path!r}: {name} has only {sorted(group)}; both down/A and up/B are needed")
    down, up = group["down"].float(), group["up"].float()
    if down.dim() != 2 or up.dim() != 2:   # conv-shaped (r, in, 1, 1) LoRAs of 1x1 layers
        down, up = down.flatten(1), up.flatten(1)
    alpha = float(group["alpha"].float().reshape(-1)[0]) if "alpha" in group else float(down.shape[0])
    return LoRAWeights(down, up, alpha)


def read_lora(path: Union[str, os.PathLike], model: nn.Module) -> Dict[str, LoRAWeights]:
    """A LoRA file in any supported format, as native (official module name) weights for ``model``."""
    path = os.fspath(path)
    tensors = _open(path)
    fmt = detect_lora_format(tensors.keys())
    groups = _group(tensors)
    layers = linear_modules(model)
    if fmt in ("kohya", "official_i2v"):
        prefix = KOHYA_PREFIX if fmt == "kohya" else I2V_PREFIX
        by_flat = {n.replace(".", "_"): n for n in layers}
        out, unknown = {}, []
        for key, group in groups.items():
            flat = key[len(prefix):]
            if flat not in by_flat:
                unknown.append(key)
                continue
            out[by_flat[flat]] = _weights(group, key, path)
        if unknown:
            raise IncompatibleWeightsError(
                f"LoRA {path!r} ({fmt} format) names {len(unknown)} layer(s) this HunyuanVideo model does not have "
                f"(e.g. {unknown[:3]}); it was made for another model architecture.")
        return out
    if fmt == "comfyui":
        return {_strip_dot_prefix(k): _weights(g, k, path) for k, g in groups.items()}
    return _from_diffusers({_strip_dot_prefix(k): g for k, g in groups.items()}, layers, model, path)


def _diffusers_rules():
    compiled = []
    for rule in DIFFUSERS.rules:
        pats = [re.compile("^" + re.escape(f).replace(r"\{i\}", r"(\d+)") + "$") for f in rule.foreign]
        compiled.append((rule, pats))
    return compiled


def _from_diffusers(groups: Mapping[str, Mapping[str, torch.Tensor]], layers, model, path) -> Dict[str, LoRAWeights]:
    rules = _diffusers_rules()
    parts: Dict[str, Tuple[object, Dict[int, LoRAWeights]]] = {}
    unknown = []
    for key, group in groups.items():
        for rule, pats in rules:
            hit = next(((j, m) for j, p in enumerate(pats) if (m := p.match(key))), None)
            if hit is None:
                continue
            j, m = hit
            native = rule.native.replace("{i}", m.group(1)) if "{i}" in rule.native else rule.native
            parts.setdefault(native, (rule, {}))[1][j] = _weights(group, key, path)
            break
        else:
            unknown.append(key)
    if unknown:
        raise IncompatibleWeightsError(
            f"LoRA {path!r} (diffusers format) names {len(unknown)} module(s) with no HunyuanVideo counterpart "
            f"(e.g. {unknown[:3]}); it was made for another model architecture.")
    out = {}
    for native, (rule, pieces) in parts.items():
        if native not in layers:
            raise IncompatibleWeightsError(f"LoRA {path!r} adapts {native}, which this model does not have; "
                                           f"it was made for another model.")
        out[native] = _compose(rule, pieces, layers[native].out_features, model, native, path)
    return out


def _compose(rule, pieces: Mapping[int, LoRAWeights], out_features: int, model, native: str, path: str) -> LoRAWeights:
    n = len(rule.foreign)
    if n == 1:
        w = pieces[0]
        up = w.up * w.scale
        if rule.swap_halves:
            a, b = up.chunk(2, dim=0)
            up = torch.cat([b, a], 0)
        return LoRAWeights(w.down, up, float(w.rank))
    sizes = split_sizes(rule, out_features, model.config.hidden_size)
    for j, w in pieces.items():
        if w.up.shape[0] != sizes[j]:
            raise IncompatibleWeightsError(
                f"LoRA {path!r}: {rule.foreign[j]} of {native} has {w.up.shape[0]} outputs, the model's slice has "
                f"{sizes[j]}; it was made for a different model size.")
    downs = [pieces[j].down for j in sorted(pieces)]
    shared = all(d.shape == downs[0].shape and torch.equal(d, downs[0]) for d in downs)
    if shared:   # one down matrix for every piece: stack the (scaled) up matrices
        r = downs[0].shape[0]
        up = torch.zeros(out_features, r)
        row = 0
        for j, size in enumerate(sizes):
            if j in pieces:
                up[row:row + size] = pieces[j].up * pieces[j].scale
            row += size
        return LoRAWeights(downs[0], up, float(r))
    # general case: stacked downs, block-diagonal ups (exact: B A = [B_q A_q; B_k A_k; B_v A_v])
    ranks = {j: pieces[j].rank for j in pieces}
    total = sum(ranks.values())
    down = torch.cat([pieces[j].down for j in sorted(pieces)], 0)
    up = torch.zeros(out_features, total)
    row, col = 0, 0
    for j, size in enumerate(sizes):
        if j in pieces:
            up[row:row + size, col:col + ranks[j]] = pieces[j].up * pieces[j].scale
            col += ranks[j]
        row += size
    return LoRAWeights(down, up, float(total))


# ------------------------------------------------------------------------------------------
# writing files


def lora_tensors(weights: Mapping[str, LoRAWeights], fmt: str = "comfyui", model: Optional[nn.Module] = None,
                 dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
    if fmt not in FORMATS:
        raise InputError(f"unknown LoRA format {fmt!r}; use one of {FORMATS}")
    cast = (lambda t: t.to(dtype).contiguous()) if dtype is not None else (lambda t: t.contiguous())
    out: Dict[str, torch.Tensor] = {}
    if fmt == "diffusers":
        if model is None:
            raise InputError("writing the diffusers LoRA format needs the model (for the fused-layer split sizes)")
        rules = {r.native: r for r, _ in _diffusers_rules()}
        for name, w in weights.items():
            index = re.search(r"\.(\d+)\.", name)
            generic = name.replace(f".{index.group(1)}.", ".{i}.", 1) if index else name
            rule = rules.get(generic)
            if rule is None:
                raise InputError(f"{name} has no diffusers counterpart; save this LoRA in the comfyui format")
            up = w.up * w.scale
            if rule.swap_halves:
                a, b = up.chunk(2, dim=0)
                up = torch.cat([b, a], 0)
            sizes = split_sizes(rule, up.shape[0], model.config.hidden_size) if len(rule.foreign) > 1 else [up.shape[0]]
            for foreign, piece in zip(rule.foreign, up.split(sizes, 0)):
                f = foreign.replace("{i}", index.group(1)) if index else foreign
                out[f"transformer.{f}.lora_A.weight"] = cast(w.down).clone()
                out[f"transformer.{f}.lora_B.weight"] = cast(piece)
        return out
    for name, w in weights.items():
        if fmt == "comfyui":
            base, a, b = f"diffusion_model.{name}", "lora_A", "lora_B"
        else:
            base = (KOHYA_PREFIX if fmt == "kohya" else I2V_PREFIX) + name.replace(".", "_")
            a, b = "lora_down", "lora_up"
        out[f"{base}.{a}.weight"] = cast(w.down)
        out[f"{base}.{b}.weight"] = cast(w.up)
        out[f"{base}.alpha"] = torch.tensor(float(w.alpha), dtype=dtype or torch.float32)
    return out


def save_lora(weights_or_model: Union[nn.Module, Mapping[str, LoRAWeights]], path: Union[str, os.PathLike],
              fmt: str = "comfyui", model: Optional[nn.Module] = None, dtype: Optional[torch.dtype] = None,
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write a LoRA (from a model carrying adapters, or from weights) atomically as .safetensors."""
    from ..checkpoints.load import write_safetensors_atomic

    if isinstance(weights_or_model, nn.Module):
        model = model or weights_or_model
        weights = extract_lora(weights_or_model)
    else:
        weights = dict(weights_or_model)
    if not weights:
        raise InputError("nothing to save: the model carries no LoRA adapters")
    meta = {"format": "pt", "hyvideo_lora_format": fmt,
            "hyvideo_variant": str(getattr(model, "variant", "") or ""), **(metadata or {})}
    write_safetensors_atomic(lora_tensors(weights, fmt, model, dtype), os.fspath(path), meta)
