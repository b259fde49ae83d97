"""Comparing a file's tensors with what a model expects, for load errors people can act on."""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

Shapes = Mapping[str, Tuple[int, ...]]


def describe_mismatch(expected: Shapes, found: Shapes, examples: int = 3) -> Optional[str]:
    """None when ``found`` has exactly the expected keys and shapes; otherwise a summary such as
    "2 missing (e.g. [...]); 1 with the wrong shape (e.g. k: expected (48,), found (5,))"."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: expected {tuple(expected[k])}, found {tuple(found[k])}"
             for k in sorted(set(expected) & set(found)) if tuple(found[k]) != tuple(expected[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[:examples]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:examples]})")
    if wrong:
        parts.append(f"{len(wrong)} with the wrong shape (e.g. {wrong[:examples]})")
    return "; ".join(parts) or None
