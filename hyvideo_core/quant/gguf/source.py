"""GGUF transformer files in city96/ComfyUI-GGUF's layout, read lazily and memory-mapped.

* ``general.architecture`` must be ``hyvid`` (ComfyUI-GGUF's name for HunyuanVideo); files
  without the field (sd.cpp style) are accepted and detected from their keys like any file.
* Keys are the official Tencent names; a ``model.diffusion_model.`` prefix is stripped.
* A tensor whose true shape does not fit GGUF's four dimensions (the Conv3d
  ``img_in.proj.weight``) carries its shape in ``comfy.gguf.orig_shape.<key>`` metadata.
* F32 / F16 / BF16 tensors come back as torch tensors over the file mapping (copy-on-write,
  the file is never written). Quantised tensors come back as :class:`PackedWeight`: raw
  bytes + type + logical shape, to stay quantised in memory (``quant.gguf.layers``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch

from ...checkpoints.tensor_source import TensorSource
from ...errors import CheckpointError, UnknownCheckpointError
from .dequant import BLOCK_SIZES, SUPPORTED_QUANT_TYPES, dequantize

log = logging.getLogger(__name__)

ARCHITECTURE = "hyvid"
ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."
STRIPPED_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
_FLOAT_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class UnsupportedQuantTypeError(CheckpointError):
    pass


@dataclass
class PackedWeight:
    """A quantised tensor kept as its raw GGML bytes."""

    raw: torch.Tensor            # uint8, (stored rows, bytes per stored row), row-major blocks
    qtype: str                   # "Q8_0", "Q4_K", ...
    shape: Tuple[int, ...]       # logical (torch) shape

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.raw, self.qtype, self.shape, dtype)

    @property
    def nbytes(self) -> int:
        return self.raw.numel()


@dataclass
class _Entry:
    tensor: object               # gguf ReaderTensor
    qtype: str
    shape: Tuple[int, ...]


class GGUFSource(TensorSource):
    """A lazy :class:`TensorSource` over a ComfyUI-GGUF ``hyvid`` file."""

    def __init__(self, path: str):
        try:
            from gguf import GGMLQuantizationType, GGUFReader
        except ImportError as exc:  # pragma: no cover - gguf is a declared dependency
            raise CheckpointError(f"reading {path!r} needs the `gguf` package: pip install gguf") from exc
        self.path = path
        try:
            self._reader = GGUFReader(path, "c")  # copy-on-write map: writable arrays, file untouched
        except Exception as exc:
            raise CheckpointError(f"could not read {path!r} as GGUF: {exc}. The file is corrupt or "
                                  f"truncated; re-download or re-convert it.") from exc
        reader = self._reader
        arch = _field(reader, "general.architecture")
        if arch is not None and arch != ARCHITECTURE:
            raise UnknownCheckpointError(
                f"{path!r} is a GGUF file for architecture {arch!r}; expected {ARCHITECTURE!r} "
                f"(ComfyUI-GGUF's HunyuanVideo transformer). Load {arch!r} files with their own loader.")
        self.metadata = {"gguf_architecture": str(arch)}
        self._entries: Dict[str, _Entry] = {}
        for t in reader.tensors:
            name = t.name
            for prefix in STRIPPED_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    break
            qtype = GGMLQuantizationType(int(t.tensor_type)).name
            stored = tuple(int(d) for d in reversed([int(x) for x in t.shape]))
            orig = _field(reader, ORIG_SHAPE_PREFIX + t.name)
            shape = tuple(int(d) for d in orig) if orig is not None else stored
            if int(np.prod(shape)) != int(np.prod(stored)):
                raise CheckpointError(
                    f"{path!r}: tensor {name!r} is stored with shape {stored} but its "
                    f"{ORIG_SHAPE_PREFIX}{t.name} metadata says {shape}; the element counts differ, "
                    f"so the file is broken. Re-convert it.")
            if qtype not in _FLOAT_TYPES and qtype not in BLOCK_SIZES:
                raise UnsupportedQuantTypeError(
                    f"{path!r}: tensor {name!r} uses GGUF type {qtype}, which this loader does not "
                    f"support. Supported: {', '.join(list(_FLOAT_TYPES) + list(SUPPORTED_QUANT_TYPES))}. "
                    f"Re-quantise the file to one of those (Q8_0, Q6_K, Q5_K and Q4_K are common).")
            self._entries[name] = _Entry(t, qtype, shape)

    # -- TensorSource -------------------------------------------------------------------------
    def keys(self) -> List[str]:
        return list(self._entries)

    def shape(self, key: str) -> Tuple[int, ...]:
        return self._entries[key].shape

    def dtype(self, key: str) -> torch.dtype:
        """The torch dtype of float tensors; quantised tensors report bfloat16, the precision
        their dequantised values are used in."""
        return _FLOAT_TYPES.get(self._entries[key].qtype, torch.bfloat16)

    def qtype(self, key: str) -> str:
        return self._entries[key].qtype

    def is_quantized(self, key: str) -> bool:
        return self._entries[key].qtype not in _FLOAT_TYPES

    def get_packed(self, key: str) -> PackedWeight:
        """The raw bytes of a quantised tensor, zero-copy over the file mapping."""
        e = self._entries[key]
        data = np.asarray(e.tensor.data).view(np.uint8)
        return PackedWeight(torch.from_numpy(data.reshape(-1, data.shape[-1])), e.qtype, e.shape)

    def packed_tensors(self) -> Dict[str, PackedWeight]:
        """The quantised tensors, zero-copy over the file mapping (see :meth:`get_packed`)."""
        return {k: self.get_packed(k) for k in self.keys() if self.is_quantized(k)}

    def get(self, key: str) -> torch.Tensor:
        """Float tensors as torch tensors over the mapping; quantised ones dequantised to
        float32 (callers that can keep them packed use :meth:`get_packed`)."""
        e = self._entries[key]
        if e.qtype not in _FLOAT_TYPES:
            return self.get_packed(key).dequantize(torch.float32)
        raw = torch.from_numpy(np.asarray(e.tensor.data).reshape(-1).view(np.uint8))
        return raw.view(_FLOAT_TYPES[e.qtype]).reshape(e.shape)

    def quant_summary(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for e in self._entries.values():
            counts[e.qtype] = counts.get(e.qtype, 0) + 1
        return counts


def _field(reader, name: str):
    f = reader.get_field(name)
    if f is None:
        return None
    return f.contents()
