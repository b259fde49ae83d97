"""A recognised text-encoder checkpoint (:class:`TextEncoderWeights`) and the key-mapping
sources it is made of.

Shared by the recognisers of every file kind (:mod:`.weight_layouts` for Hugging Face folders
and single files, :mod:`.gguf_llama` for GGUF); it imports neither of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..checkpoints.tensor_source import TensorSource

LLAMA = "llama"
CLIP_TEXT = "clip_text"

LLAMA_SENTINEL = "layers.0.self_attn.q_proj.weight"


class MappedSource(TensorSource):
    """A :class:`TensorSource` whose keys are produced by per-key loader functions."""

    def __init__(self, entries: Dict[str, Tuple[Tuple[int, ...], torch.dtype, Callable[[], torch.Tensor]]],
                 path: str, metadata: Optional[Dict[str, str]] = None):
        self._entries = entries
        self.path = path
        self.metadata = dict(metadata or {})

    def keys(self) -> List[str]:
        return list(self._entries)

    def shape(self, key: str) -> Tuple[int, ...]:
        return tuple(self._entries[key][0])

    def dtype(self, key: str) -> torch.dtype:
        return self._entries[key][1]

    def get(self, key: str) -> torch.Tensor:
        return self._entries[key][2]()


def renamed(source: TensorSource, mapping: Dict[str, str]) -> MappedSource:
    """View of ``source`` under new names: ``mapping`` is new name -> old name."""
    entries = {new: (source.shape(old), source.dtype(old), (lambda o=old: source.get(o)))
               for new, old in mapping.items()}
    return MappedSource(entries, source.path, source.metadata)


def merged(sources: List[TensorSource], path: str) -> TensorSource:
    if len(sources) == 1:
        return sources[0]
    entries = {}
    for src in sources:
        for k in src.keys():
            entries[k] = (src.shape(k), src.dtype(k), (lambda s=src, kk=k: s.get(kk)))
    return MappedSource(entries, path)


@dataclass
class TextEncoderWeights:
    """A recognised text-encoder checkpoint with normalised keys.

    ``fp8_scales``: linear-layer name (``layers.0.self_attn.q_proj``) -> float32 scale, for
    fp8-scaled files. ``tokenizer`` is set when the file carries one (GGUF metadata).
    """

    kind: str
    layout: str
    source: TensorSource
    config: Any
    path: str
    fp8_scales: Dict[str, torch.Tensor] = field(default_factory=dict)
    tokenizer: Any = None

    @property
    def file_dtype(self) -> torch.dtype:
        """dtype of the big matrices (fp8 for fp8-scaled files, float16 for dequantised GGUF)."""
        key = LLAMA_SENTINEL if self.kind == LLAMA else "text_model.encoder.layers.0.mlp.fc1.weight"
        if key in self.source:
            return self.source.dtype(key)
        return torch.float16
