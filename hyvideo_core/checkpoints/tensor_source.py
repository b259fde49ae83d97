"""What every weights reader is: a :class:`TensorSource`, a lazily read name -> tensor mapping.

The file readers (:mod:`.io`, :mod:`hyvideo_core.quant.gguf`) and the key-renaming views
(:mod:`.layouts`) all implement it; this module imports none of them, so any of them can
import it.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch


class TensorSource:
    """Read-only, lazily loaded mapping of tensor names to tensors."""

    path: str
    metadata: Dict[str, str]

    def keys(self) -> List[str]:
        raise NotImplementedError

    def shape(self, key: str) -> Tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def __contains__(self, key: str) -> bool:
        return key in self._key_set()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def _key_set(self) -> set:
        cached = getattr(self, "_keys_cache", None)
        if cached is None:
            cached = set(self.keys())
            self._keys_cache = cached
        return cached

    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        return {k: self.shape(k) for k in self.keys()}

    def packed_tensors(self) -> Dict[str, object]:
        """Tensors this source keeps quantised in memory (GGUF ``PackedWeight``), by visible key.
        Ordinary files keep none; their tensors are read with :meth:`get`."""
        return {}


class DictSource(TensorSource):
    """A state dict already in memory (or memory-mapped by ``torch.load(mmap=True)``)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], path: str = "<memory>",
                 metadata: Optional[Dict[str, str]] = None):
        self._tensors = dict(tensors)
        self.path = path
        self.metadata = dict(metadata or {})

    def keys(self) -> List[str]:
        return list(self._tensors)

    def shape(self, key: str) -> Tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._tensors[key].dtype

    def get(self, key: str) -> torch.Tensor:
        return self._tensors[key]
