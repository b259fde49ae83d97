"""Finding a Hugging Face feature-model folder on disk, and saying exactly what is missing.

The Foley feature models (SigLIP2, CLAP) are read with transformers' own classes from a local
folder in the Hugging Face layout; nothing is ever downloaded. Only safetensors weights are read:
a ``pytorch_model.bin`` is a pickle, which can run code when loaded.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from ...errors import CheckpointError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class FeatureModelMissingError(CheckpointError, FileNotFoundError):
    """A feature model's folder, or a file it needs, is not on disk."""


def require_model_folder(path: str | os.PathLike, *, what: str, repo: str, comfy_folder: str,
                         other_files: Sequence[str] = ()) -> Path:
    """Check that ``path`` is a folder holding config.json, safetensors weights and ``other_files``
    (each entry may list alternatives as "a|b"); return it as a Path. The error names the model,
    where to put it and every file that is missing."""
    folder = Path(os.fspath(path))
    where = (f"download the Hugging Face repository {repo} (config.json, model.safetensors"
             f"{''.join(', ' + f for f in other_files)}) into a folder, e.g. ComfyUI/models/{comfy_folder}/"
             f"{repo.split('/')[-1]}/, and pass that folder")
    if not folder.is_dir():
        kind = "a file, not a folder" if folder.exists() else "not found"
        raise FeatureModelMissingError(f"{what}: expected a model folder at {str(folder)!r} ({kind}); {where}")
    missing = []
    for entry in ("config.json", "|".join(WEIGHT_FILES), *other_files):
        options = entry.split("|")
        if not any((folder / name).is_file() for name in options):
            missing.append(" or ".join(options))
    if missing:
        pickled = " (pytorch_model.bin is a pickle and is not read: convert it to model.safetensors)" \
            if (folder / "pytorch_model.bin").is_file() else ""
        raise FeatureModelMissingError(f"{what}: the folder {str(folder)!r} lacks {', '.join(missing)}{pickled}; "
                                       f"{where}")
    return folder


def read_model_type(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / 'config.json'}: not a readable JSON model config ({exc})") from None
    return str(config.get("model_type", "")) if isinstance(config, dict) else ""


def refuse_missing_weights(loading_info: dict, folder: Path, what: str) -> None:
    """transformers fills missing tensors with random values and only warns; we refuse instead."""
    missing = sorted(loading_info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"{what}: {folder} does not hold the weights the model needs (missing {shown}); "
                              f"the folder is not this model, or its download is incomplete")


@contextmanager
def quiet_loading_report():
    """transformers logs every unused tensor (CLAP's whole audio tower, SigLIP's text tower) as a
    warning; we check the missing ones ourselves, so the report is only noise in the console."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
