"""Loading and saving the transformer in every supported checkpoint layout.

``load_transformer`` reads any supported file lazily: strip a wrapper prefix, map a foreign
layout to native keys, collect fp8 scales, detect the variant from shapes, build the model on
the ``meta`` device and assign the tensors one by one (peak memory ≈ the weights once).
"""
from __future__ import annotations

import logging
import os
import re
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..config import VariantSpec
from ..errors import IncompatibleWeightsError, InputError
from ..model import HunyuanVideoTransformer
from ..model.extension import Extension, install_extension
from ..quant.cast import cast_weights_on_the_fly, set_fp8_scale
from ..quant.fp8 import official_map_path, split_scale_keys
from ..quant.packed import attach_packed_weights
from ..attention import resolve_backend
from .detect import detect_variant
from .io import TensorSource, load_pickle_weights, open_weights, strip_prefix
from .validate import describe_mismatch
from .layouts import KEY_PREFIXES, LAYOUTS, NativeView, RenamedView, detect_layout, from_native

log = logging.getLogger(__name__)

_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def open_native(path: str) -> Tuple[TensorSource, Dict[str, torch.Tensor], str]:
    """A native-key view of a transformer file, its fp8 scales by module name, and the layout name."""
    source = open_weights(path)
    prefix = strip_prefix(source.keys(), KEY_PREFIXES)
    if prefix:
        source = RenamedView.without_prefix(source, prefix)
    scale_keys, extra_keys = split_scale_keys(source.keys())
    scales = {module: source.get(key) for module, key in scale_keys.items()}
    if extra_keys:
        source = RenamedView.without_keys(source, extra_keys)
    layout = detect_layout(source.keys())
    if layout is not None and layout.rules:
        source = NativeView(source, layout)
    map_path = official_map_path(path)
    if map_path and any(source.dtype(k) in _FP8 for k in source.keys()):
        scales.update(load_pickle_weights(map_path))
        log.info("fp8 scales read from %s", map_path)
    return source, scales, (layout.name if layout else "unknown")


def read_native(source: TensorSource, key: str, scales: Mapping[str, torch.Tensor],
                dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """One tensor of an :func:`open_native` source. An fp8 tensor needs its scale (an error names the
    key otherwise). With ``dtype`` fp8 weights are dequantized (W = fp8 · scale) and every tensor is
    converted to ``dtype``; without, the tensor comes back as stored."""
    tensor = source.get(key)
    module = key.rsplit(".", 1)[0]
    if tensor.dtype in _FP8 and module not in scales:
        raise IncompatibleWeightsError(
            f"{source.path!r}: {key} is stored as {tensor.dtype} but no scale was found for {module!r} "
            f"(expected '{module}.scale_weight' in the file or an official *_fp8_map.pt beside it).")
    if dtype is None:
        return tensor
    return (tensor.to(torch.float32) * scales[module].float() if tensor.dtype in _FP8 else tensor).to(dtype)


def default_compute_dtype(device: torch.device, storage: torch.dtype) -> torch.dtype:
    """float32 on CPU. On GPUs bf16 for half/fp8 weights: fp16 activations overflow in this model
    (black frames), so fp16 is never chosen by default."""
    if device.type == "cpu" or storage == torch.float32:
        return torch.float32
    return torch.bfloat16


ExtensionSpec = Union[Extension, Callable[..., Extension]]


# in ``load_transformer(extensions=...)``: whatever application modules the detected variant carries
APP_EXTENSION = "app"


def load_transformer(path: str | os.PathLike, device: str | torch.device = "cpu",
                     dtype: Optional[torch.dtype] = None, attention_backend: Optional[str] = None,
                     variant: Optional[str] = None,
                     extensions: Sequence[ExtensionSpec] = ()) -> HunyuanVideoTransformer:
    """Load a HunyuanVideo transformer from ``.safetensors`` / ``.pt`` in any supported layout.

    Args:
        path: official, ComfyUI-prefixed, diffusers, or fp8-scaled checkpoint.
        device: where the model runs.
        dtype: None keeps each tensor's file dtype (fp8 stays fp8 and is dequantized per layer on
            the fly) and computes in float32 on CPU / bf16 on GPU; a dtype converts all weights
            to it and computes in it.
        attention_backend: "sdpa" (default), "reference", "flash_varlen", "sage"; an unavailable
            one falls back to sdpa with one log line.
        variant: a variant name to prefer when several registered variants share the shapes.
        extensions: :class:`~hyvideo_core.model.extension.Extension` objects, or factories
            ``f(transformer_config) -> Extension`` (built on the meta device, so their weights are
            allocated once, from the file). Their modules are part of the model before the file
            is read, so their keys load with an identity map and every key must be present.
            ``APP_EXTENSION`` stands for the detected variant's own application extension (the
            avatar's adapters for a HunyuanVideo-Avatar file) and for nothing with other files.
    """
    device = torch.device(device)
    path = os.fspath(path)
    source, scales, layout = open_native(path)
    spec = detect_variant(source, hint=variant)
    with torch.device("meta"):
        model = HunyuanVideoTransformer(spec.transformer)
        for ext in extensions:
            if isinstance(ext, str) and ext == APP_EXTENSION:
                ext = spec.app.extension_factory() if spec.app is not None else None
                if ext is None:
                    continue
            install_extension(model, ext if isinstance(ext, Extension) else ext(spec.transformer))
    _check_keys(model, source, spec)

    packed = source.packed_tensors()  # GGUF-quantised weights stay packed (attached below)
    state, storage = {}, (torch.bfloat16 if packed else None)
    for key in model.state_dict():
        if key in packed:
            continue
        tensor = read_native(source, key, scales, dtype)
        if key.endswith("weight") and tensor.dim() >= 2:
            storage = storage or tensor.dtype
        state[key] = tensor.to(device)
    model.load_state_dict(state, strict=not packed, assign=True)
    attach_packed_weights(model, packed, device)

    if dtype is None:
        for module_name, scale in scales.items():
            module = model.get_submodule(module_name)
            if module.weight.dtype in _FP8:
                set_fp8_scale(module, scale.to(device))
    compute = dtype or default_compute_dtype(device, storage if storage not in _FP8 else torch.bfloat16)
    cast_weights_on_the_fly(model, compute)
    model.compute_dtype = compute
    model.attention_backend = resolve_backend(attention_backend, device)
    model.variant = spec.name
    model.eval().requires_grad_(False)
    log.info("loaded %s (%s layout, %s weights, %s compute) from %s", spec.name, layout, storage, compute, path)
    return model


def load_extension_weights(model: torch.nn.Module, extension: Extension, path: str | os.PathLike) -> None:
    """Load an installed extension's weights from a file holding them under its checkpoint names
    (an adapter file, or a whole model checkpoint: other keys are ignored). Every key of the
    extension must be present with its shape; the tensors are cast to the model's weights' dtype."""
    path = os.fspath(path)
    source, _, _ = open_native(path)
    prefixes = tuple(extension.modules())
    expected = {f"{name}.{k}": tuple(v.shape) for name, module in extension.modules().items()
                for k, v in module.state_dict().items()}
    found = {k: s for k, s in source.shapes().items() if k.startswith(tuple(f"{p}." for p in prefixes))}
    problems = describe_mismatch(expected, found)
    if problems:
        raise IncompatibleWeightsError(
            f"{path!r} does not hold the weights of extension {extension.name!r} (modules {list(prefixes)}): "
            f"{problems}. Use the adapter file made for this extension and model size.")
    for name, module in extension.modules().items():
        own = module.state_dict()
        module.load_state_dict({k: source.get(f"{name}.{k}").to(own[k].dtype) for k in own}, assign=False)


def _check_keys(model: torch.nn.Module, source: TensorSource, spec: VariantSpec) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = describe_mismatch(expected, source.shapes())
    if problems and spec.app is not None and not any(k.startswith(f"{m}.") for k in expected for m in spec.app.modules):
        app_keys = [k for k in source.keys() if k.startswith(tuple(f"{m}." for m in spec.app.modules))]
        raise IncompatibleWeightsError(
            f"{source.path!r} holds the {spec.app.app} modules of variant {spec.name!r}: its {len(app_keys)} "
            f"{spec.app.app} keys (e.g. {sorted(app_keys)[:3]}) need the {spec.app.app} extension. Load it with "
            f"{spec.app.loader}(path).")
    if problems:
        raise IncompatibleWeightsError(
            f"{source.path!r} matches variant {spec.name!r} but its tensors do not fit: {problems}. "
            f"The file is incomplete or from a modified model; re-export it, or convert it with "
            f"`python -m hyvideo_core convert`.")


def save_transformer(model: HunyuanVideoTransformer, path: str | os.PathLike, layout: str = "official",
                     dtype: Optional[torch.dtype] = None, prefix: str = "") -> None:
    """Write ``model`` as ``.safetensors`` in ``layout`` ("official" or "diffusers").

    fp8-stored layers are written with ComfyUI's ``scale_weight`` keys. The file appears only
    when complete (written to a temporary name, then renamed)."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    scaled = any(getattr(m, "scale_weight", None) is not None for m in model.modules())
    if scaled and dtype is None and layout != "official":
        raise InputError(f"fp8-scaled weights can only be written in the official layout, not {layout!r}; "
                         f"pass dtype=torch.bfloat16 to dequantize them first")
    state = {}
    for key, tensor in model.state_dict().items():
        module = model.get_submodule(key.rsplit(".", 1)[0])
        scale = getattr(module, "scale_weight", None)
        if dtype is not None:
            tensor = (tensor.float() * scale if scale is not None and key.endswith(".weight") else tensor).to(dtype)
        elif scale is not None and key.endswith(".weight"):
            state[key.rsplit(".", 1)[0] + ".scale_weight"] = scale.reshape(()).float().cpu()
        state[key] = tensor.detach().cpu().contiguous()
    state = from_native(state, LAYOUTS[layout], model.config) if layout != "official" else state
    if scaled and dtype is None:
        state["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)  # ComfyUI's fp8_scaled marker
    metadata = {"format": "pt", "hyvideo_layout": layout, "hyvideo_variant": model.variant or ""}
    write_safetensors_atomic({prefix + k: v for k, v in state.items()}, os.fspath(path), metadata)


def write_safetensors_atomic(tensors: Dict[str, torch.Tensor], path: str, metadata: Optional[dict] = None) -> None:
    """``safetensors.torch.save_file`` through :func:`~hyvideo_core.atomic_files.atomic_output`."""
    from safetensors.torch import save_file

    from ..atomic_files import atomic_output

    with atomic_output(path) as out:
        try:
            save_file(tensors, out.path, metadata=metadata)
        except Exception as exc:  # noqa: BLE001 - safetensors reports a full disk as SafetensorError("... (os error 28)")
            code = re.search(r"os error (\d+)", str(exc))
            if code is None or isinstance(exc, OSError):
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), path) from exc

