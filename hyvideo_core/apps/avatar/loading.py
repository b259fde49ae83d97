"""Loading a HunyuanVideo-Avatar transformer: the official ``mp_rank_00_model_states.pt`` (weights under
``module``), its fp8 twin with ``*_fp8_map.pt``, or a ComfyUI-style ``.safetensors`` (prefixed or not), all with
an identity key map. Every key of the file must be used and every key of the model present: a file missing an
adapter key is an error naming it (the release loads with ``strict=False``, which hides that)."""
from __future__ import annotations

import os
from typing import Optional

import torch

from ...checkpoints.detect import detect_variant
from ...checkpoints.load import load_transformer, open_native
from ...errors import IncompatibleWeightsError
from ...model import HunyuanVideoTransformer
from ...variants import AVATAR_MODULES
from .extension import avatar_extension


def load_avatar_transformer(path: str | os.PathLike, device: str | torch.device = "cpu",
                            dtype: Optional[torch.dtype] = None, attention_backend: Optional[str] = None,
                            variant: Optional[str] = None) -> HunyuanVideoTransformer:
    """Load an avatar checkpoint with its :class:`~hyvideo_core.apps.avatar.extension.AvatarExtension`
    installed. Arguments as :func:`~hyvideo_core.checkpoints.load.load_transformer`."""
    path = os.fspath(path)
    source, _, _ = open_native(path)
    spec = detect_variant(source, hint=variant)
    if spec.app is None or spec.app.app != "avatar":
        raise IncompatibleWeightsError(
            f"{path!r} is not a HunyuanVideo-Avatar checkpoint: it holds no avatar modules ({', '.join(AVATAR_MODULES)}) "
            f"and matches variant {spec.name!r}. Load it with hyvideo_core.load_transformer, or pick the avatar "
            f"file (mp_rank_00_model_states.pt of HunyuanVideo-Avatar).")
    del source
    return load_transformer(path, device=device, dtype=dtype, attention_backend=attention_backend,
                            variant=spec.name, extensions=[avatar_extension(spec.app.config)])

