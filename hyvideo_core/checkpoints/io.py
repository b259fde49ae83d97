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
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path!r} needs arbitrary code execution to unpickle, which this loader refuses "
            f"(torch.load weights_only=True said: {str(exc).splitlines()[0]}). Convert it once in a "
            f"trusted environment to .safetensors, e.g. `python -m hyvideo_core convert IN OUT.safetensors`, "
            f"after loading it yourself.") from exc
    except Exception as exc:  # noqa: BLE001 - garbage bytes fail anywhere in the unpickler (IndexError, KeyError, ...)
        raise CheckpointError(
            f"could not read {path!r} as a PyTorch checkpoint: {exc}. The file is corrupt or "
            f"truncated; re-download or re-export it.") from exc
    return _unwrap(obj, path)


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
