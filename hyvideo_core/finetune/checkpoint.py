"""Training checkpoints with exact resume, written atomically.

A checkpoint is a folder ``<run>/checkpoints/step_<N>/`` holding ``state.pt`` (model or LoRA
weights, optimizer, scheduler, EMA, RNG states, data-order position) and ``model.safetensors``
(the weights in the official layout, loadable by ``load_transformer``); ``<run>/checkpoints/latest``
names the newest complete one. Each file is written to a temporary name and renamed, and the
``latest`` pointer moves only after the whole folder is complete, so an interrupted run always
keeps its last good checkpoint.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

import torch


def atomic_torch_save(obj: Any, path: "str | os.PathLike") -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".pt", dir=directory)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: "str | os.PathLike", text: str) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".txt", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
