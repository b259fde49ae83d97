"""LoRA fine-tuning nodes: cache a dataset, train a LoRA, load a LoRA onto a transformer."""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Tuple

from .adapters import (CATEGORY, PREFIX, image_from_array, list_loras, list_models, lora_output_folder, resolve_model,
                       step_progress, tooltip, torch_device)
from .folders import confined_path, input_roots, lora_roots, output_roots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetCache:
    """What HVS_CacheDataset hands to HVS_TrainLoRA: the cache folder and a summary of it."""
    folder: str
    clips: int
    buckets: Tuple[Tuple[int, int, int], ...]
    skipped: int = 0


def _bucket_list(spec: str):
    from ..hyvideo_core.finetune.data import parse_buckets

    return parse_buckets([b for b in re.split(r"[\s,;]+", spec.strip()) if b])


def _dataset_source(dataset: str) -> str:
    """``toy:N[:SEED]`` as is; a folder must be inside ComfyUI's input or output folder (relative: input/)."""
    from ..hyvideo_core.toy.clip_source import parse_toy_source

    dataset = dataset.strip()
    if parse_toy_source(dataset) is not None:
        return dataset
    return confined_path(dataset, input_roots(), "dataset_folder")


def _cache_folder(cache_folder: str, source: str, buckets) -> str:
    """Empty: output/hvs_lora_cache/<dataset name>-<hash of source and buckets>; else inside output/
    (relative: under it)."""
    import folder_paths

    out = folder_paths.get_output_directory()
    if cache_folder.strip():
        return confined_path(cache_folder, output_roots(), "cache_folder")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.basename(source.rstrip("/\\")) or source).strip("-") or "dataset"
    digest = hashlib.sha1(repr((source, [tuple(b) for b in buckets])).encode()).hexdigest()[:8]
    return os.path.join(out, "hvs_lora_cache", f"{name}-{digest}")


class CacheDataset:
    DESCRIPTION = ("Prepares a LoRA training set: every clip of a folder (videos with same-name .txt captions, e.g. "
                   "clip1.mp4 + clip1.txt; or toy:N for N generated toy-world clips) is fitted to a bucket, encoded "
                   "with the VAE, and its caption with the text encoders, into a cache folder. An interrupted run "
                   "continues where it stopped.")
    CATEGORY = f"{CATEGORY}/training"
    RETURN_TYPES = (f"{PREFIX}_DATASET_CACHE",)
    RETURN_NAMES = ("cache",)
    OUTPUT_TOOLTIPS = ("The cached training set, for Train HunyuanVideo LoRA.",)
    FUNCTION = "cache"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "dataset_folder": ("STRING", tooltip(
                "Folder of training videos, each with a same-name .txt caption, inside ComfyUI's input (or output) "
                "folder; a relative path starts in input/. toy:N uses N generated toy-world clips.", default="toy:8")),
            "vae": (f"{PREFIX}_VAE", tooltip("The VAE of the model to fine-tune (encodes the clips).")),
            "text_encoders": (f"{PREFIX}_TEXT_ENCODERS", tooltip("The text encoders of that model (encode captions).")),
            "buckets": ("STRING", tooltip(
                "FRAMESxHEIGHTxWIDTH, several separated by spaces or commas (e.g. 33x544x960 65x544x960): each clip "
                "goes to the bucket of its aspect ratio it can fill longest, then is resized and centre-cropped. "
                "Frames 4n+1, sizes multiples of 16.", default="17x64x64")),
            "cache_folder": ("STRING", tooltip(
                "Where the cache goes, inside ComfyUI's output folder; empty = output/hvs_lora_cache/<dataset>-<hash>, "
                "a relative path is under output/. Use a new folder after changing the VAE or text encoders.",
                default="")),
            "skip_short_clips": ("BOOLEAN", tooltip(
                "Skip clips shorter than every bucket instead of stopping with an error.", default=False)),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, buckets=None):
        from ..hyvideo_core.errors import InputError

        if buckets is None:
            return True
        try:
            _bucket_list(buckets)
        except InputError as exc:
            return str(exc)
        return True

    def cache(self, dataset_folder, vae, text_encoders, buckets, cache_folder, skip_short_clips):
        from ..hyvideo_core.finetune.data import cache_dataset, dataset_videos, encoders_text_fn
        from ..hyvideo_core.toy.clip_source import open_clip_source, parse_toy_source

        bucket_list = _bucket_list(buckets)
        source = _dataset_source(dataset_folder)
        folder = _cache_folder(cache_folder, source, bucket_list)     # refused before any work if outside output/
        toy = parse_toy_source(source)
        total = toy.count if toy is not None else len(dataset_videos(source))
        manifest = cache_dataset(folder, open_clip_source(source, bucket_list), vae, encoders_text_fn(text_encoders),
                                 bucket_list, skip_short=skip_short_clips, callback=step_progress(total))
        log.info("HVS: cached %d clips into %s (skipped %d)", len(manifest["entries"]), folder, manifest["skipped"])
        return (DatasetCache(folder, len(manifest["entries"]), tuple(bucket_list), int(manifest["skipped"])),)


def _lora_destination(lora_name: str, overwrite: bool) -> str:
    from ..hyvideo_core.errors import InputError

    root = os.path.realpath(lora_output_folder())
    name = lora_name.strip().replace("\\", "/")
    if name.lower().endswith(".safetensors"):
        name = name[: -len(".safetensors")]
    if not name or os.path.isabs(name):
        raise InputError(f"LoRA name {lora_name!r} must be a file name (optionally with a subfolder) inside "
                         f"{root}; found an empty or absolute path")
    path = confined_path(name + ".safetensors", [root], "lora_name")     # no escape by .. or a symlink
    if not overwrite and os.path.exists(path):
        stem, n = path[: -len(".safetensors")], 2
        while os.path.exists(f"{stem}_{n}.safetensors"):
            n += 1
        path = f"{stem}_{n}.safetensors"
    return path


class TrainLoRA:
    DESCRIPTION = ("Trains a LoRA on a cached dataset (flow matching, AdamW, the official I2V LoRA layer list) and "
                   "writes it to models/loras in the ComfyUI LoRA format, ready for Load HunyuanVideo LoRA and other "
                   "LoRA loaders. Progress per step; Cancel stops the run (no file is written). Returns the file "
                   "path and a loss plot.")
    CATEGORY = f"{CATEGORY}/training"
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("lora_path", "loss_plot")
    OUTPUT_TOOLTIPS = ("Full path of the written .safetensors LoRA (connect to Load HunyuanVideo LoRA's lora_path).",
                       "Loss per step (light) and its moving average (dark).")
    OUTPUT_NODE = True
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "cache": (f"{PREFIX}_DATASET_CACHE", tooltip("From Cache HunyuanVideo Training Set.")),
            "base_model": (list_models("transformer"), tooltip(
                "The transformer to adapt (models/diffusion_models); the cache must come from its VAE and text "
                "encoders.")),
            "steps": ("INT", tooltip("Optimizer steps.", default=500, min=1, max=1000000)),
            "rank": ("INT", tooltip("LoRA rank r (size of the low-rank update; 16-64 typical).",
                                    default=16, min=1, max=1024)),
            "alpha": ("FLOAT", tooltip("LoRA alpha; the update is scaled by alpha / rank. 0 = rank (scale 1).",
                                       default=16.0, min=0.0, max=4096.0, step=1.0)),
            "learning_rate": ("FLOAT", tooltip("AdamW learning rate (1e-4 is the official LoRA recipe).",
                                               default=0.0001, min=0.0000001, max=1.0, step=0.00001, round=False)),
            "batch_size": ("INT", tooltip("Clips per step (all from one bucket); at most the clips of a bucket.",
                                          default=1, min=1, max=256)),
            "seed": ("INT", tooltip("Seed of the LoRA init, noise, timesteps and data order; same seed, same LoRA.",
                                    default=0, min=0, max=2**63 - 1)),
            "lora_name": ("STRING", tooltip(
                "File name in models/loras (.safetensors added; a subfolder may be included).", default="hvs_lora")),
            "overwrite": ("BOOLEAN", tooltip("Replace an existing file of that name; off = add _2, _3, ...",
                                             default=False)),
        }, "optional": {
            "prior_cache": (f"{PREFIX}_DATASET_CACHE", tooltip(
                "Optional prior preservation: a cache of clips of what the model already does well (captions "
                "without the new concept). On these the LoRA is trained to keep the base model's own output, so "
                "old prompts stay as they were. Costs about one extra forward per prior clip.")),
            "prior_weight": ("FLOAT", tooltip("Weight of the prior-preservation loss against the data loss "
                                              "(used only with prior_cache).",
                                              default=1.0, min=0.0, max=100.0, step=0.1)),
        }}

    def train(self, cache, base_model, steps, rank, alpha, learning_rate, batch_size, seed, lora_name, overwrite,
              prior_cache=None, prior_weight=1.0):
        import shutil
        import tempfile

        import folder_paths
        import torch

        from ..hyvideo_core.atomic_files import atomic_copy
        from ..hyvideo_core.checkpoints.detect import detect_variant
        from ..hyvideo_core.checkpoints.load import open_native
        from ..hyvideo_core.finetune.loss_plot import render_loss_plot
        from ..hyvideo_core.finetune.trainer import TrainConfig, train

        destination = _lora_destination(lora_name, overwrite)
        base = resolve_model("transformer", base_model)
        variant = detect_variant(open_native(base)[0]).name
        temp = folder_paths.get_temp_directory()
        os.makedirs(temp, exist_ok=True)
        run = tempfile.mkdtemp(prefix="hvs_lora_run_", dir=temp)
        cuda = torch_device().type == "cuda"
        cfg = TrainConfig(cache_dir=cache.folder, output_dir=run, variant=variant, init=base, mode="lora",
                          lora_rank=rank, lora_alpha=alpha or None, lora_format="comfyui", steps=steps,
                          global_batch=batch_size, lr=learning_rate, seed=seed, resume=None, keep_checkpoints=1,
                          log_every=max(1, steps // 20), mixed_precision="bf16" if cuda else "no",
                          prior_cache_dir=prior_cache.folder if prior_cache is not None else None,
                          prior_weight=prior_weight)
        import comfy.model_management

        comfy.model_management.unload_all_models()     # give ComfyUI's own models' memory to the training run
        try:
            # ComfyUI runs nodes under torch.inference_mode(); training needs autograd back.
            with torch.inference_mode(False), torch.enable_grad():
                result = train(cfg, callback=step_progress(steps))
            atomic_copy(os.path.join(result.checkpoint, "lora.safetensors"), destination)
        finally:
            shutil.rmtree(run, ignore_errors=True)
            comfy.model_management.soft_empty_cache()
        log.info("HVS: LoRA (%s, rank %d, %d steps, loss %.4g -> %.4g) written to %s", variant, rank, steps,
                 result.losses[0], result.losses[-1], destination)
        return (destination, image_from_array(render_loss_plot(result.losses)))


class LoadLoRA:
    DESCRIPTION = ("Adds a LoRA (ComfyUI, kohya/musubi, official HunyuanVideo-I2V or diffusers format) to a "
                   "HunyuanVideo transformer as live adapters. Returns a new model; the input model is not changed "
                   "and shares its weights with it (no extra memory beyond the LoRA). Chain several to stack LoRAs.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (f"{PREFIX}_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The transformer with the LoRA, for the sampler.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (f"{PREFIX}_MODEL", tooltip("From Load HunyuanVideo Transformer (or another LoRA loader).")),
            "lora_name": (list_loras(), tooltip("A LoRA file from models/loras.")),
            "strength": ("FLOAT", tooltip("Scale of the LoRA's update; 0 = the base model exactly, negative "
                                          "inverts it.", default=1.0, min=-2.0, max=2.0, step=0.05)),
        }, "optional": {
            "lora_path": ("STRING", tooltip("Optional: the path of a .safetensors LoRA inside models/loras (e.g. Train "
                                            "HunyuanVideo LoRA's lora_path); used instead of lora_name.",
                                            forceInput=True)),
        }}

    @classmethod
    def IS_CHANGED(cls, lora_name=None, lora_path=None, **_):
        """The file's modification time, so a LoRA retrained under the same name is read again."""
        try:
            return os.path.getmtime(_lora_file(lora_name, lora_path))
        except Exception:  # noqa: BLE001 - a missing file is reported by VALIDATE_INPUTS / load
            return ""

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name=None, lora_path=""):
        # Only the list is consulted here: answering "does not exist" for any path typed in would
        # tell whoever can queue a prompt which files exist on the server. lora_path (linked: None)
        # is confined to the LoRA folders and checked when the node runs.
        if lora_path is None or lora_path:
            return True
        if lora_name in list_loras():
            return True
        return (f"LoRA {str(lora_name)[:200]!r} is not in models/loras; put the .safetensors file there (then refresh), "
                f"or connect its path to lora_path")

    def load(self, model, lora_name, strength, lora_path=None):
        from ..hyvideo_core.finetune.lora import read_lora, with_lora

        path = _lora_file(lora_name, lora_path)
        return (with_lora(model, read_lora(path, model), strength=strength, path=path),)


def _lora_file(name: str, lora_path: str = None) -> str:
    """``lora_path`` (confined to the LoRA folders) if given, else ``name`` from the models/loras list."""
    import folder_paths

    from ..hyvideo_core.errors import InputError

    if lora_path:
        path = confined_path(lora_path, lora_roots(), "lora_path")
        if not os.path.isfile(path):
            raise InputError(f"LoRA file {lora_path!r} does not exist in {', '.join(lora_roots())}")
        return path
    path = folder_paths.get_full_path("loras", name) if name else None
    if not path:
        raise InputError(f"LoRA {name!r} not found in models/loras; put the .safetensors file there")
    return path


NODES = {f"{PREFIX}_CacheDataset": (CacheDataset, "Cache HunyuanVideo Training Set (HVS)"),
         f"{PREFIX}_TrainLoRA": (TrainLoRA, "Train HunyuanVideo LoRA (HVS)"),
         f"{PREFIX}_LoadLoRA": (LoadLoRA, "Load HunyuanVideo LoRA (HVS)")}
