"""Loading the Foley audio VAE (``vae_128d_48k.pth``), with no arbitrary unpickling.

The released file is an audiotools ``BaseModel`` save: ``{"state_dict": …, "metadata": {"kwargs":
{constructor arguments}}}``. It is read with ``torch.load(weights_only=True)`` (tensors and plain
containers of numbers and strings only). The architecture is read from the tensor shapes; the
metadata's constructor arguments, when present, must agree with them (and give the sample rate,
which no shape shows). A ``.safetensors`` copy carries the arguments as JSON in its header
(``dac_kwargs``).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from ...checkpoints.io import SafetensorsSource
from ...checkpoints.validate import describe_mismatch
from ...errors import CheckpointError, IncompatibleWeightsError, UnknownCheckpointError, UnsafeCheckpointError
from ..load import describe_other_kind
from .model import DacConfig, DacVae

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 48000     # the released vae_128d_48k; no tensor shape shows it
# Constructor arguments of the official DAC class; the ones that describe the continuous VAE are checked.
_KNOWN_KWARGS = {"encoder_dim", "encoder_rates", "latent_dim", "decoder_dim", "decoder_rates", "sample_rate",
                 "continuous", "n_codebooks", "codebook_size", "codebook_dim", "quantizer_dropout"}
_SHAPE_KWARGS = ("encoder_dim", "encoder_rates", "latent_dim", "decoder_dim", "decoder_rates")


def read_audio_vae_file(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """The state dict and the constructor arguments (``{}`` when the file has none)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"audio VAE file not found: {path!r}. Expected vae_128d_48k.pth from the "
                              f"HunyuanVideo-Foley release.")
    if path.lower().endswith((".safetensors", ".sft")):
        source = SafetensorsSource(path)
        kwargs = source.metadata.get("dac_kwargs")
        try:
            kwargs = json.loads(kwargs) if kwargs else {}
        except json.JSONDecodeError as exc:
            raise UnknownCheckpointError(f"{path!r}: its 'dac_kwargs' metadata is not JSON ({exc}); expected the "
                                         f"audio VAE's constructor arguments as a JSON object.") from exc
        return {k: source.get(k) for k in source.keys()}, kwargs
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path!r} needs arbitrary code execution to unpickle, which this loader refuses (torch.load "
            f"weights_only=True said: {str(exc).splitlines()[0]}). The released vae_128d_48k.pth loads without; "
            f"re-download it, or convert the file once in a trusted environment.") from exc
    except Exception as exc:  # noqa: BLE001 - garbage bytes fail anywhere in the unpickler
        raise CheckpointError(f"could not read {path!r} as a PyTorch checkpoint: {exc}. The file is corrupt or "
                              f"truncated; re-download it.") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        state, metadata = obj["state_dict"], obj.get("metadata", {})
        if not isinstance(metadata, Mapping) or not isinstance(metadata.get("kwargs", {}), Mapping):
            raise UnknownCheckpointError(
                f"{path!r}: metadata must be a dict with a 'kwargs' dict of constructor arguments (as audiotools "
                f"saves it); found {type(metadata).__name__} {str(metadata)[:80]!r}.")
        kwargs = dict(metadata.get("kwargs", {}))
    else:
        state, kwargs = obj, {}
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnknownCheckpointError(f"{path!r} holds no state dict of tensors (found {type(state).__name__}); "
                                     f"expected the audio VAE vae_128d_48k.pth.")
    return dict(state), kwargs


def _count(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({int(m.group(1)) for k in keys if (m := rx.match(k))})


def derive_dac_config(state: Mapping[str, torch.Tensor], path: str) -> Dict[str, Any]:
    """Architecture read off the tensor shapes."""
    keys = list(state)
    if "quant_conv.weight" not in state or "encoder.block.0.weight_v" not in state:
        kind = describe_other_kind(keys)
        if "audio_embedder.proj.weight" in state:
            kind = "the HunyuanVideo-Foley DiT; load it with load_foley"
        found = f"it is {kind}" if kind and "DAC audio VAE" not in kind else f"found keys such as {sorted(keys)[:4]}"
        raise UnknownCheckpointError(
            f"{path!r} is not the continuous DAC audio VAE of HunyuanVideo-Foley (expected 'encoder.block.0.weight_v', "
            f"'quant_conv.weight', 'post_quant_conv.weight', 'decoder.model.N…'); {found}.")
    n_enc = _count(keys, r"encoder\.block\.(\d+)\.block\.0\.block\.0\.alpha")
    n_dec = _count(keys, r"decoder\.model\.(\d+)\.block\.0\.alpha")
    try:
        enc_rates = tuple(state[f"encoder.block.{i + 1}.block.4.weight_v"].shape[2] // 2 for i in range(n_enc))
        dec_rates = tuple(state[f"decoder.model.{i + 1}.block.1.weight_v"].shape[2] // 2 for i in range(n_dec))
        return {"encoder_dim": state["encoder.block.0.weight_v"].shape[0], "encoder_rates": enc_rates,
                "latent_dim": state["post_quant_conv.weight"].shape[0],
                "decoder_dim": state["decoder.model.0.weight_v"].shape[0], "decoder_rates": dec_rates}
    except KeyError as exc:
        raise IncompatibleWeightsError(f"{path!r} looks like the DAC audio VAE but lacks {exc.args[0]!r}, which its "
                                       f"architecture is read from; the file is incomplete, re-download it.") from None


def dac_config(state: Mapping[str, torch.Tensor], kwargs: Mapping[str, Any], path: str) -> DacConfig:
    derived = derive_dac_config(state, path)
    unknown = sorted(set(kwargs) - _KNOWN_KWARGS)
    if unknown:
        raise UnknownCheckpointError(
            f"{path!r}: unexpected constructor arguments in its metadata: {unknown}; expected only "
            f"{sorted(_KNOWN_KWARGS)}. This is not the audio VAE of HunyuanVideo-Foley (or a newer version).")
    if "continuous" in kwargs and kwargs["continuous"] is not True:
        raise UnknownCheckpointError(f"{path!r}: metadata says continuous={kwargs['continuous']!r}; this is a "
                                     f"quantised (codebook) DAC, not the continuous VAE HunyuanVideo-Foley decodes with.")
    for name in _SHAPE_KWARGS:
        if name in kwargs:
            given = tuple(kwargs[name]) if isinstance(kwargs[name], (list, tuple)) else kwargs[name]
            if given != derived[name]:
                raise UnknownCheckpointError(
                    f"{path!r}: metadata says {name}={kwargs[name]!r} but the tensors have {derived[name]!r}; the "
                    f"file's metadata and weights disagree. Re-download vae_128d_48k.pth.")
    rate = kwargs.get("sample_rate", DEFAULT_SAMPLE_RATE)
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 384000:
        raise UnknownCheckpointError(f"{path!r}: metadata sample_rate={rate!r}; expected an integer number of "
                                     f"samples per second (48000 for vae_128d_48k.pth).")
    return DacConfig(sample_rate=rate, **derived)


def load_audio_vae(path: str | os.PathLike, device: str | torch.device = "cpu",
                   dtype: Optional[torch.dtype] = torch.float32) -> DacVae:
    """Load the Foley audio VAE. ``dtype`` float32 by default (the release decodes in float32)."""
    path = os.fspath(path)
    state, kwargs = read_audio_vae_file(path)
    cfg = dac_config(state, kwargs, path)
    with torch.device("meta"):
        vae = DacVae(cfg)
    problems = describe_mismatch({k: tuple(v.shape) for k, v in vae.state_dict().items()},
                                 {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise IncompatibleWeightsError(f"{path!r} is a DAC audio VAE ({cfg}) but its tensors do not fit: {problems}. "
                                       f"The file is incomplete or from a different VAE; re-download it.")
    vae.load_state_dict({k: v.to(device=device, dtype=dtype or v.dtype) for k, v in state.items()},
                        strict=True, assign=True)
    log.info("loaded audio VAE (%s) from %s", cfg, path)
    return vae.eval().requires_grad_(False)


def save_audio_vae(vae: DacVae, path: str | os.PathLike) -> None:
    """Write ``.safetensors`` with the constructor arguments in the header (the file appears only when complete)."""
    from ...checkpoints.load import write_safetensors_atomic

    cfg = vae.config
    kwargs = {"encoder_dim": cfg.encoder_dim, "encoder_rates": list(cfg.encoder_rates), "latent_dim": cfg.latent_dim,
              "decoder_dim": cfg.decoder_dim, "decoder_rates": list(cfg.decoder_rates), "sample_rate": cfg.sample_rate,
              "continuous": True}
    write_safetensors_atomic({k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()},
                             os.fspath(path), {"format": "pt", "dac_kwargs": json.dumps(kwargs)})
