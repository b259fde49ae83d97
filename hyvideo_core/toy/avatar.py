"""The toy avatar: the toy-world CFG teacher with the avatar modules, driven by a tiny Whisper.

Shipped files under ``hyvideo_core/toy/weights`` (made by ``scripts/train_toy.py whisper`` and ``avatar``):

``whisper/``              a tiny Hugging Face Whisper folder (config.json, preprocessor_config.json,
                          model.safetensors): d_model 32, 4 encoder layers (5 hidden states), 80 mel bins,
                          1500 positions (30 s chunks as whisper-tiny), seeded random frozen weights
``avatar.safetensors``    the trained avatar modules (``ref_in``, ``before_proj``, ``audio_proj``, ...) under
                          their checkpoint names, in bf16; when the backbone was trained too it holds the
                          backbone's tensors as well, and those replace the teacher's

``load_toy_avatar()`` gives the ``toy-avatar`` transformer: the teacher backbone
(``transformer_teacher.safetensors``), the :class:`~hyvideo_core.apps.avatar.AvatarExtension` installed, the
avatar weights loaded. It samples like the teacher (true CFG, no embedded guidance), with the extras
``ref_latents``, ``audio_windows`` and optionally ``face_mask``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import IncompatibleWeightsError, InputError
from .model import TEACHER_FILE, WEIGHTS

AVATAR_FILE = "avatar.safetensors"
WHISPER_FOLDER = "whisper"
VARIANT = "toy-avatar"


def toy_whisper_folder(weights: str | os.PathLike = WEIGHTS) -> Path:
    """The tiny Whisper folder shipped with the toy avatar (for ``hyvideo_core.apps.avatar.load_whisper``)."""
    folder = Path(weights) / WHISPER_FOLDER
    if not (folder / "config.json").is_file():
        raise InputError(f"the toy Whisper folder {str(folder)!r} is missing; make it with "
                         f"`python scripts/train_toy.py whisper` (then `export-avatar`)")
    return folder


def load_toy_avatar(weights: str | os.PathLike = WEIGHTS, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32):
    """The ``toy-avatar`` transformer: toy teacher backbone + avatar extension + trained avatar weights."""
    from ..apps.avatar import avatar_extension
    from ..checkpoints.load import load_extension_weights, load_transformer, open_native, read_native
    from ..model.extension import install_extension
    from ..variants import get_variant

    weights = Path(weights)
    needed = [weights / TEACHER_FILE, weights / AVATAR_FILE]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise InputError(f"toy avatar weights missing: {missing}; train them with "
                         f"`python scripts/train_toy.py avatar` and export with `export-avatar`")
    spec = get_variant(VARIANT)
    transformer = load_transformer(weights / TEACHER_FILE, device=device, dtype=dtype, variant="toy-teacher")
    extension = install_extension(transformer, avatar_extension(spec.app.config)(spec.transformer))
    for module in extension.modules().values():
        module.to(device=device, dtype=dtype)
    load_extension_weights(transformer, extension, weights / AVATAR_FILE)
    prefixes = tuple(f"{m}." for m in extension.modules())
    source, scales, _ = open_native(str(weights / AVATAR_FILE))
    backbone = [k for k in source.keys() if not k.startswith(prefixes)]
    if backbone:   # a fine-tuned backbone ships beside the modules: all of it, or none
        own = {k: v for k, v in transformer.state_dict().items() if not k.startswith(prefixes)}
        if set(backbone) != set(own):
            raise IncompatibleWeightsError(
                f"{str(weights / AVATAR_FILE)!r} holds {len(backbone)} backbone tensors, but the toy avatar backbone "
                f"has {len(own)}; it must hold all of them or none. Re-export it with `python scripts/train_toy.py "
                f"export-avatar`")
        with torch.no_grad():
            for k, t in own.items():
                t.copy_(read_native(source, k, scales, t.dtype))
    transformer.variant = VARIANT
    return transformer.eval()
