"""Write a transformer state dict as GGUF in city96/ComfyUI-GGUF's layout (arch ``hyvid``).

Used by tests and benchmarks to make files the loader must read. Rules follow ComfyUI-GGUF's
``tools/convert.py``: official key names; 1-D tensors and tensors with <= 1024 values stay
F32; a tensor that cannot be quantised with ``qtype`` (row length not a multiple of the block)
falls back to F16; tensors with more than 4 dimensions (the Conv3d ``img_in.proj.weight``) are
stored flattened to 2-D, unquantised, with ``comfy.gguf.orig_shape.<key>``. K-quants have no
quantiser in the ``gguf`` package; for those, pass ``raw_blocks`` (e.g. random valid blocks).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Mapping, Optional

import numpy as np
import torch

from .source import ARCHITECTURE, ORIG_SHAPE_PREFIX

MAX_DIMS = 4
SMALL = 1024


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def write_gguf(state: Mapping[str, torch.Tensor], path: str | os.PathLike, qtype: str = "Q8_0",
               float_type: str = "BF16", arch: str = ARCHITECTURE,
               select: Optional[Callable[[str, torch.Tensor], bool]] = None,
               raw_blocks: Optional[Dict[str, np.ndarray]] = None) -> str:
    """Write ``state`` (native keys). ``qtype``: a GGML type name, or "F16"/"BF16"/"F32" for an
    unquantised file; ``float_type``: the type of unquantised big tensors; ``select(key, t)``
    limits which tensors are quantised (default: every >= 2-D tensor with > 1024 values)."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    raw_blocks = raw_blocks or {}
    writer = gguf.GGUFWriter(os.fspath(path), arch)
    writer.add_file_type(int(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}", gguf.LlamaFileType.ALL_F32)))
    block = gguf.GGML_QUANT_SIZES[Q[qtype]][0]
    for key, tensor in state.items():
        data = _np(tensor)
        if tensor.dim() > MAX_DIMS:
            writer.add_array(ORIG_SHAPE_PREFIX + key, [int(d) for d in tensor.shape])
            data = data.reshape(tensor.shape[0], -1)
            _add(writer, key, data, Q[float_type])
            continue
        if key in raw_blocks:
            writer.add_tensor(key, raw_blocks[key], raw_dtype=Q[qtype])  # (rows, bytes) uint8
            continue
        big = tensor.dim() >= 2 and tensor.numel() > SMALL
        wanted = big and (select is None or select(key, tensor))
        if not big:
            _add(writer, key, data, Q.F32)
        elif wanted and qtype not in ("F32", "F16", "BF16") and data.shape[-1] % block == 0:
            try:
                _add(writer, key, data, Q[qtype])
            except NotImplementedError:  # no numpy quantiser (K-quants): fall back, as convert.py does
                _add(writer, key, data, Q[float_type])
        else:
            _add(writer, key, data, Q[float_type] if qtype not in ("F32", "F16", "BF16") else Q[qtype])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return os.fspath(path)


def _add(writer, key: str, data: np.ndarray, qtype) -> None:
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    if qtype == Q.F32:
        writer.add_tensor(key, data.astype(np.float32))
    elif qtype == Q.F16:
        writer.add_tensor(key, data.astype(np.float16))
    else:
        writer.add_tensor(key, quantize(data.astype(np.float32), qtype), raw_dtype=qtype)
