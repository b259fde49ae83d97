"""A bounded LRU cache of per-prompt text embeddings.

Re-queueing a prompt (same text, template, length and encoder files) returns the stored
embeddings instead of running the 8B LLM again. Rows are kept on the CPU; the key includes
the encoder identity (file paths, sizes, modification times, dtype and options), so changing
a file or an option never returns stale embeddings.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Optional, Tuple

import torch

CacheRow = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # text_states (L,D), text_mask (L,), pooled (D2,)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class EmbeddingCache:
    """Thread-safe LRU mapping ``key -> (text_states, text_mask, text_states_2)`` rows."""

    def __init__(self, max_entries: int = 64):
        self.max_entries = max_entries
        self._rows: "OrderedDict[Hashable, CacheRow]" = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get(self, key: Hashable) -> Optional[CacheRow]:
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                self.stats.misses += 1
                return None
            self._rows.move_to_end(key)
            self.stats.hits += 1
            return row

    def put(self, key: Hashable, row: CacheRow) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._rows[key] = tuple(t.detach().to("cpu").clone() for t in row)  # own the memory, not a batch view  # type: ignore[assignment]
            self._rows.move_to_end(key)
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._rows)


# Shared by every TextEncoders instance: ComfyUI may rebuild the loader object while the files
# are unchanged, and the identity in the key keeps different encoders apart.
PROMPT_EMBEDDING_CACHE = EmbeddingCache(max_entries=64)
