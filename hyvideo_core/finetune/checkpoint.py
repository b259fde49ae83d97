"""Training checkpoints: a safe on-disk format for the training state, and the run's checkpoint folder.

A checkpoint is a folder ``<run>/checkpoints/step_<N>/`` holding ``training_state.safetensors``
(trainable weights, optimizer, scheduler, EMA, RNG states, data-order position) and the weights for
inference (``model.safetensors`` in the official layout, loadable by ``load_transformer``, or
``lora.safetensors``). ``<run>/checkpoints/latest`` names the current one.

The training state holds no pickle: every tensor is a safetensors tensor and everything else
(numbers, strings, lists, tuples, dicts with any JSON-able keys, NumPy arrays) is JSON in the file's
metadata, so reading a checkpoint can never run code. Floats round-trip exactly (JSON keeps
``repr``), so ``resume: auto`` continues bit for bit.

Saving is crash-safe at every point (see :meth:`CheckpointFolder.save`): the folder is built under a
temporary name, fsynced and renamed into place, then the ``latest`` pointer is replaced atomically,
and only then are older checkpoints deleted. ``latest`` never names a missing or partial folder, and
resuming takes the newest complete checkpoint of the run ``latest`` belongs to, so a kill between
the rename and the pointer update still resumes from the new checkpoint.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from ..atomic_files import FOLDER_TMP_INFIX, atomic_folder, atomic_write_text, remove_unfinished
from ..errors import CheckpointError

STATE_FILE = "training_state.safetensors"
LEGACY_STATE_FILE = "state.pt"
_FORMAT = "hyvideo-training-state/1"
_NAME = re.compile(r"step_(\d{7,})(?:\.1)?")     # step_<N> or its alternate name step_<N>.1


# -- the state format -------------------------------------------------------------------------------------------


def _encode(obj: Any, tensors: Dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"@tensor": key}
    if isinstance(obj, np.ndarray):
        return {"@ndarray": obj.tolist(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return {"@numpy": obj.item(), "dtype": obj.dtype.str}
    if isinstance(obj, tuple):
        return {"@tuple": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("@") for k in obj):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        return {"@dict": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}[{k!r}]")] for k, v in obj.items()]}
    raise TypeError(f"training state entry {where} is a {type(obj).__name__}; only tensors, numbers, strings, "
                    f"None, lists, tuples, dicts and NumPy arrays are stored")


def _decode(obj: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "@tensor" in obj:
        return tensors[obj["@tensor"]]
    if "@ndarray" in obj:
        return np.asarray(obj["@ndarray"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    if "@numpy" in obj:
        return np.dtype(obj["dtype"]).type(obj["@numpy"])
    if "@tuple" in obj:
        return tuple(_decode(v, tensors) for v in obj["@tuple"])
    if "@dict" in obj:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in obj["@dict"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


def save_training_state(state: dict, path: "str | os.PathLike", run: str = "") -> None:
    """Write ``state`` (nested dicts / lists / tuples of tensors, numbers, strings, NumPy arrays) atomically.
    ``run`` identifies the training run (readable cheaply with :func:`run_of`)."""
    from ..checkpoints.load import write_safetensors_atomic

    tensors: Dict[str, torch.Tensor] = {}
    structure = json.dumps(_encode(state, tensors, "state"))
    write_safetensors_atomic(tensors, os.fspath(path), {"format": _FORMAT, "run": run, "structure": structure})


def run_of(folder: "str | os.PathLike") -> Optional[str]:
    """The run id stored in a checkpoint folder's training state (header only), None if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(os.path.join(folder, STATE_FILE), framework="pt") as f:
            return (f.metadata() or {}).get("run")
    except Exception:  # noqa: BLE001 - a damaged state simply does not belong to any run
        return None


def load_training_state(path: "str | os.PathLike") -> dict:
    """Read a state written by :func:`save_training_state` (no pickle: nothing in the file can run code)."""
    from safetensors import safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise CheckpointError(f"{path!r} is not a training state written by this suite (format "
                                      f"{meta.get('format')!r}, expected {_FORMAT!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return _decode(json.loads(meta["structure"]), tensors)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file fails anywhere in the reader or the JSON
        raise CheckpointError(f"could not read the training state {path!r} ({type(exc).__name__}: {exc}); the "
                              f"checkpoint is damaged: resume from another one (pass its folder as resume) or "
                              f"start a new output_dir") from None


# -- the run's checkpoint folder --------------------------------------------------------------------------------


def checkpoint_step(name: str) -> Optional[int]:
    """The step of a checkpoint folder name (``step_0000012`` or ``step_0000012.1``), None for other names."""
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else None


class CheckpointFolder:
    """``<run>/checkpoints``: the step folders and the ``latest`` pointer, confined to that folder."""

    def __init__(self, root: "str | os.PathLike"):
        self.root = Path(root)
        self.pointer = self.root / "latest"

    def latest(self) -> Optional[Path]:
        """The checkpoint ``latest`` names, None when the run has none yet. A pointer that names
        anything but a complete step folder inside this folder is an error (never followed)."""
        if not self.pointer.is_file():
            return self._newest_uncommitted()
        name = self.pointer.read_text(encoding="utf-8", errors="replace").strip()
        if checkpoint_step(name) is None:
            raise CheckpointError(
                f"{self.pointer} names {name[:200]!r}, which is not a checkpoint folder of this run (expected a "
                f"name like step_0000100 inside {self.root}); the pointer was edited or damaged. Write the name "
                f"of one of {self.names()[-3:] or 'the step_* folders'} into it, or pass resume=<folder>")
        path = self.root / name
        if (path / LEGACY_STATE_FILE).is_file() and not (path / STATE_FILE).is_file() and not path.is_symlink():
            raise legacy_state_error(path)
        if not (path / STATE_FILE).is_file() or path.is_symlink():
            raise CheckpointError(
                f"{self.pointer} names {name!r}, but {path} is not a checkpoint folder holding {STATE_FILE}; the "
                f"folder was removed or damaged. Write the name of another checkpoint ({self.names()[-3:]}) into "
                f"{self.pointer}, or pass resume=<folder>")
        # a newer complete checkpoint of the same run: published, then killed before the pointer moved
        run, step = run_of(path), checkpoint_step(name)
        newer = [n for n in self.names() if checkpoint_step(n) > step and (self.root / n / STATE_FILE).is_file()
                 and run_of(self.root / n) == run]
        return self.root / newer[-1] if run and newer else path

    def _newest_uncommitted(self) -> Optional[Path]:
        """No pointer yet: a run killed between publishing its first checkpoint and writing the pointer."""
        names = [n for n in self.names() if (self.root / n / STATE_FILE).is_file()]
        return self.root / names[-1] if names else None

    def remove_unfinished(self) -> int:
        """Delete the temporary folders and files a killed save left (this run owns the folder)."""
        return remove_unfinished(self.root)

    def names(self) -> List[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir()
                 if checkpoint_step(p.name) is not None and p.is_dir() and not p.is_symlink()]
        return sorted(found, key=lambda n: (checkpoint_step(n), n))

    def save(self, step: int, write: Callable[[Path], None], keep: int) -> Path:
        """Write a checkpoint for ``step`` with ``write(folder)`` and make it the latest, crash-safely:

        1. ``write`` fills ``step_<N>.tmp-*``, which is fsynced and renamed to ``step_<N>`` (or, when
           that name is taken, ``step_<N>.1``: an existing folder is never deleted before its
           replacement is complete);
        2. ``latest`` is replaced atomically;
        3. the other folders of step N and all but the newest ``keep`` checkpoints are deleted.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_unfinished()
        current = self.pointer.read_text(encoding="utf-8", errors="replace").strip() if self.pointer.is_file() else None
        candidates = [f"step_{step:07d}", f"step_{step:07d}.1"]
        free = [n for n in candidates if not os.path.lexists(self.root / n)]
        name = free[0] if free else next(n for n in candidates if n != current)
        final = self.root / name
        if not free:                # both taken: the one latest does not name is a same-step copy
            _discard(final)
        with atomic_folder(final) as tmp:
            write(tmp)
        atomic_write_text(self.pointer, name)
        for other in self.names():
            if other != name and checkpoint_step(other) == step:
                _discard(self.root / other)
        older = [n for n in self.names() if n != name]
        for old in older[: max(0, len(older) - max(0, keep - 1))]:
            _discard(self.root / old)
        return final


def _discard(path: Path) -> None:
    """Delete a checkpoint folder so that a kill mid-way never leaves a half-deleted ``step_*`` folder:
    first rename it to a temporary name (swept by :func:`remove_unfinished` if the kill comes now)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    doomed = path.with_name(f"{path.name}{FOLDER_TMP_INFIX}{secrets.token_hex(6)}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def legacy_state_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{str(path)!r} is a checkpoint of an earlier version ({LEGACY_STATE_FILE}, a pickle); it is not loaded "
        f"because unpickling can run code. Its weights for inference are still usable; to continue training, "
        f"start a new output_dir initialised from them (init: {str(path / 'model.safetensors')!r}) or set resume "
        f"to another checkpoint")
