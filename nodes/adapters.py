"""The one place that converts between ComfyUI conventions and the engine's.

IMAGE (frames, H, W, 3) in [0, 1] <-> engine video (B, 3, F, H, W) in [-1, 1]; AUDIO
``{"waveform": (B, C, N) float, "sample_rate": int}`` (core's type) <-> (C, N) float32 samples and
their rate; LATENT dicts
hold raw VAE-space latents (B, C, T, H/8, W/8), as core's HunyuanVideo latents do; model file
names come from ``folder_paths``; ComfyUI's progress bar, previews and interrupt are bridged to
the engine's progress callback.
"""
from __future__ import annotations

import numbers
import os
from typing import Dict, List, Optional, Sequence

import torch

PREFIX = "HVS"
CATEGORY = "HunyuanVideo Suite"

# Entries that select the embedded models: the tiny random-weight demo (written once, see
# hyvideo_core.demo_models) and the toy-world model trained by the suite (hyvideo_core/toy/weights).
EMBEDDED = "[embedded] tiny demo"
EMBEDDED_TOY = "[embedded] toy world"
EMBEDDED_TOY_AVATAR = "[embedded] toy avatar"      # the toy world's talking avatar (hyvideo_core/toy/avatar.py)
_TOY_FILES = {"transformer": "transformer.safetensors", "vae": "vae.safetensors",
              "text_encoder": "text_encoder", "clip": "text_encoder_2"}

# folder_paths keys per model kind, newest name first (older ComfyUI releases lack some).
MODEL_FOLDERS: Dict[str, Sequence[str]] = {
    "transformer": ("diffusion_models", "unet"),
    "vae": ("vae",),
    "text_encoder": ("text_encoders", "clip"),
    "image_encoder": ("clip_vision", "text_encoders", "clip"),   # LLaVA vision tower (image-to-video)
}


def list_models(kind: str) -> List[str]:
    import folder_paths

    names: List[str] = []
    for folder in MODEL_FOLDERS[kind]:
        try:
            names += [n for n in folder_paths.get_filename_list(folder) if n not in names]
        except KeyError:  # folder name unknown to this ComfyUI version
            continue
    toy_avatar = [EMBEDDED_TOY_AVATAR] if kind == "transformer" and _toy_avatar_shipped() else []
    return [EMBEDDED] + ([EMBEDDED_TOY] if _toy_path(kind) else []) + toy_avatar + names


def _toy_avatar_shipped() -> bool:
    from ..hyvideo_core.toy.avatar import AVATAR_FILE
    from ..hyvideo_core.toy.model import WEIGHTS

    return (WEIGHTS / AVATAR_FILE).is_file()


def _toy_path(part: str) -> Optional[str]:
    """The toy model's file for ``part``; None when the toy model has none (e.g. no image encoder)."""
    if part not in _TOY_FILES:
        return None
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hyvideo_core", "toy",
                        "weights", _TOY_FILES[part])
    return path if os.path.exists(path) else None


def resolve_model(kind: str, name: str, part: Optional[str] = None) -> str:
    """Full path of a listed model file. A file inside a Hugging Face folder (config.json beside
    it) resolves to the folder, which is how those models load."""
    if name == EMBEDDED:
        from ..hyvideo_core.demo_models import ensure_demo_models

        paths = ensure_demo_models()
        return getattr(paths, part or kind)
    if name == EMBEDDED_TOY and _toy_path(part or kind):
        return _toy_path(part or kind)
    import folder_paths

    for folder in MODEL_FOLDERS[kind]:
        try:
            path = folder_paths.get_full_path(folder, name)
        except KeyError:
            continue
        if path:
            parent = os.path.dirname(path)
            return parent if os.path.isfile(os.path.join(parent, "config.json")) else path
    raise FileNotFoundError(f"{kind} file {name!r} not found in ComfyUI's model folders "
                            f"{', '.join(MODEL_FOLDERS[kind])}; put it in models/{MODEL_FOLDERS[kind][0]}/")


def torch_device() -> torch.device:
    import comfy.model_management

    return comfy.model_management.get_torch_device()


def images_to_video(images: torch.Tensor) -> torch.Tensor:
    """IMAGE (F, H, W, 3) in [0, 1] -> one video (1, 3, F, H, W) in [-1, 1]."""
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected IMAGE frames (F, H, W, 3), found {tuple(images.shape)}")
    return (images.float() * 2 - 1).permute(3, 0, 1, 2).unsqueeze(0)


def video_to_images(video: torch.Tensor) -> torch.Tensor:
    """Engine video (B, 3, F, H, W) in [-1, 1] -> IMAGE (B·F, H, W, 3) in [0, 1]."""
    frames = ((video.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1)
    return frames.reshape(-1, *frames.shape[2:]).cpu()


def audio_from_samples(samples, sample_rate: int) -> dict:
    """(C, N) float32 samples at ``sample_rate`` -> core AUDIO ``{"waveform": (1, C, N), "sample_rate"}``."""
    wave = torch.as_tensor(samples, dtype=torch.float32)
    if wave.dim() == 1:
        wave = wave[None]
    return {"waveform": wave.unsqueeze(0).contiguous(), "sample_rate": int(sample_rate)}


def audio_to_samples(audio, what: str = "audio"):
    """Core AUDIO of one sound -> ((C, N) float32 numpy samples, sample_rate); InputError otherwise."""
    from ..hyvideo_core.errors import InputError

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(f"{what}: expected ComfyUI AUDIO {{'waveform': (batch, channels, samples), 'sample_rate'}}, "
                         f"found {type(audio).__name__}; connect a Load Audio node")
    wave, rate = audio["waveform"], audio["sample_rate"]
    if not isinstance(wave, torch.Tensor) or wave.dim() != 3:
        found = tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__
        raise InputError(f"{what}: expected a waveform of shape (batch, channels, samples), found {found}")
    if wave.shape[0] != 1:
        raise InputError(f"{what}: expected one sound, found a batch of {wave.shape[0]}; split the batch and "
                         f"save each video with its own sound")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate <= 0:
        raise InputError(f"{what}: expected a positive whole sample_rate, found {rate!r}")
    return wave[0].detach().to("cpu", torch.float32).numpy(), int(rate)


def latent(samples: torch.Tensor) -> dict:
    return {"samples": samples.float().cpu()}


def latent_preview(latents: torch.Tensor):
    """A quick RGB look at (B, C, T, H, W) latents: the middle frame's first three channels,
    each stretched to [0, 255]. Good enough to see motion and layout while sampling."""
    from PIL import Image

    frame = latents[0, :3, latents.shape[2] // 2].float()
    lo = frame.amin(dim=(1, 2), keepdim=True)
    hi = frame.amax(dim=(1, 2), keepdim=True)
    rgb = ((frame - lo) / (hi - lo).clamp_min(1e-6) * 255).byte().permute(1, 2, 0).cpu().numpy()
    return ("JPEG", Image.fromarray(rgb).resize((rgb.shape[1] * 8, rgb.shape[0] * 8)), 512)


def progress_callback(previews: bool = True):
    """Engine callback -> ComfyUI progress bar (one per stage), latent previews and interrupt."""
    import comfy.model_management
    import comfy.utils

    bars: Dict[str, object] = {}

    def callback(event) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar = bars.get(event.stage)
        if bar is None:
            bar = bars[event.stage] = comfy.utils.ProgressBar(event.total)
        preview = latent_preview(event.denoised) if previews and event.denoised is not None else None
        bar.update_absolute(event.step, event.total, preview)

    return callback


def step_progress(total: int):
    """Engine callback ``callback(done, *details)`` (training steps, cached clips) -> one ComfyUI
    progress bar of ``total`` units; every call is also an interrupt point."""
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def callback(done: int, *_details) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total)

    return callback


def image_from_array(rgb) -> torch.Tensor:
    """An (H, W, 3) uint8 picture (e.g. the engine's loss plot) -> IMAGE (1, H, W, 3) in [0, 1]."""
    return torch.from_numpy(rgb).float().div(255.0).unsqueeze(0)


def list_loras() -> List[str]:
    """LoRA files (.safetensors) in ComfyUI's models/loras folders."""
    import folder_paths

    try:
        return [n for n in folder_paths.get_filename_list("loras") if n.lower().endswith(".safetensors")]
    except KeyError:
        return []


def lora_output_folder() -> str:
    """Where trained LoRAs are written: the first models/loras folder ComfyUI knows."""
    import folder_paths

    try:
        return folder_paths.get_folder_paths("loras")[0]
    except (KeyError, IndexError):
        return os.path.join(folder_paths.models_dir, "loras")


def tooltip(text: str, **options) -> dict:
    return dict(options, tooltip=text)
