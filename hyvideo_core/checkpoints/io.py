"""Lazy readers for weight files: ``.safetensors`` (memory-mapped), ``.pt``/``.pth``/``.bin``
(``weights_only`` pickles, memory-mapped when possible).

A reader is a :class:`TensorSource`: key listing and shapes are free, a tensor is read only
when asked for, so a 25 GB file can be inspected and loaded one tensor at a time.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from ..errors import CheckpointError, UnsafeCheckpointError
from .tensor_source import DictSource, TensorSource

# Wrappers that training frameworks put around a state dict (DeepSpeed "module", Lightning
# "state_dict", EMA copies). The official .pt files use "module".
WRAPPER_KEYS = ("module", "state_dict", "model", "ema")


class SafetensorsSource(TensorSource):
    def __init__(self, path: str):
        from safetensors import safe_open

        self.path = path
        try:
            self._file = safe_open(path, framework="pt", device="cpu")
            self._keys = list(self._file.keys())
            self.metadata = dict(self._file.metadata() or {})
            # Header parsing alone does not catch a file cut short: check the data region length.
            _check_safetensors_length(path)
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise CheckpointError(
                f"could not read {path!r} as safetensors: {exc}. Expected a complete .safetensors "
                f"file; the file is corrupt or truncated (re-download or re-export it).") from exc

    def keys(self) -> List[str]:
        return list(self._keys)

    def _slice(self, key: str):
        return self._file.get_slice(key)

    def shape(self, key: str) -> Tuple[int, ...]:
        return tuple(self._slice(key).get_shape())

    def dtype(self, key: str) -> torch.dtype:
        return _SAFETENSORS_DTYPES[self._slice(key).get_dtype()]

    def get(self, key: str) -> torch.Tensor:
        return self._file.get_tensor(key)


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _check_safetensors_length(path: str) -> None:
    import json
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        raise CheckpointError(
            f"{path!r} is truncated: its header describes {8 + header_len + end} bytes but the file "
            f"has {size}. Re-download or re-export the file.")


def _unwrap(obj, path: str) -> Dict[str, torch.Tensor]:
    """Peel training-framework wrappers until a flat name -> tensor dict remains."""
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise CheckpointError(
                f"{path!r} holds a dict without tensors at the top level (keys: {sorted(obj)[:8]}); "
                f"expected a state dict, optionally wrapped in one of {WRAPPER_KEYS}.")
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path!r} holds a {type(obj).__name__}, expected a state dict of tensors.")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_pickle_weights(path: str) -> Dict[str, torch.Tensor]:
    """``torch.load`` restricted to tensors (``weights_only=True``); never runs pickled code."""
    mmap = zipfile.is_zipfile(path)   # legacy (non-zip) pickles cannot be memory-mapped
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - garbage bytes fail anywhere in the unpickler (IndexError, KeyError, ...)
        needs = _globals_needing_code(path) if isinstance(exc, pickle.UnpicklingError) else []
        if needs:
            raise UnsafeCheckpointError(
                f"{path!r} needs arbitrary code execution to unpickle ({', '.join(needs[:4])}), which this loader "
                f"refuses. Convert it once in a trusted environment to .safetensors, e.g. `python -m hyvideo_core "
                f"convert IN OUT.safetensors`, after loading it yourself.") from exc
        if isinstance(exc, pickle.UnpicklingError):
            detail = "its bytes are not a readable pickle"
        else:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"could not read {path!r} as a PyTorch checkpoint ({detail[:200]}): the file is corrupt or truncated, or "
            f"not a checkpoint at all; re-download or re-export it.") from exc
    return _unwrap(obj, path)


# globals torch's weights_only loader accepts; anything else a pickle names needs code execution
_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset",
                         "builtins.bytearray", "_codecs.encode")


def _globals_needing_code(path: str) -> List[str]:
    """The ``module.name`` globals (beyond torch's tensor machinery) the pickle in ``path`` refers to;
    empty when ``path`` holds no well-formed pickle. Parsed with pickletools: nothing is executed."""
    import io
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return []
                data = archive.read(member)
        else:
            with open(path, "rb") as f:     # legacy format: its pickles come first, then raw storages
                data = f.read(64 << 20)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return []
    stream, names = io.BytesIO(data), []
    while stream.tell() < len(data):
        found, strings = [], []
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # noqa: BLE001 - not (or no longer) a pickle: keep what complete pickles named
            break
        names += found
    return [n for n in dict.fromkeys(names) if not n.startswith(_SAFE_GLOBAL_PREFIXES)]


SUPPORTED_SUFFIXES = (".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt")


def open_weights(path: str | os.PathLike) -> TensorSource:
    """Open a weights file by its extension and return a lazy :class:`TensorSource`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path!r}. Check the path or the model folder.")
    lower = path.lower()
    if lower.endswith((".safetensors", ".sft")):
        return SafetensorsSource(path)
    if lower.endswith((".pt", ".pth", ".bin", ".ckpt")):
        return DictSource(load_pickle_weights(path), path=path)
    if lower.endswith(".gguf"):
        from ..quant.gguf import GGUFSource  # optional: only needed for GGUF files

        return GGUFSource(path)
    raise CheckpointError(
        f"unsupported weights file extension for {path!r}; expected one of "
        f"{', '.join(SUPPORTED_SUFFIXES + ('.gguf',))}.")


def strip_prefix(keys: Iterable[str], prefixes: Iterable[str]) -> Optional[str]:
    """Return the first prefix that most keys start with (ComfyUI's >5-matches rule), else None."""
    keys = list(keys)
    for prefix in prefixes:
        if sum(k.startswith(prefix) for k in keys) > min(5, len(keys) // 2):
            return prefix
    return None
