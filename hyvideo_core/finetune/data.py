"""Training data: buckets, the on-disk cache of latents and text embeddings, and the sampler.

Cache layout (one folder)::

    cache.json                    manifest: entries, buckets, scaling factor, text dims
    clips/<id>.safetensors        latents (C, T, h, w) raw (unscaled) VAE latents of the bucketed clip,
                                  text_states (L, D) real tokens only, text_states_2 (D2,),
                                  optional extension extras (see below)
    null.safetensors              embeddings of the empty prompt (caption dropout / CFG)

Clip sources: any iterable of :class:`RawClip` (:data:`ClipSource`): :func:`folder_source` reads a
folder of videos (``.mp4`` / ``.webm`` / ``.gif``…) each with a ``.txt`` caption of the same stem;
the toy world's generated clips come from :mod:`hyvideo_core.toy.clip_source`.

Extension extras: a clip may carry inputs of a model extension (the avatar's ``audio_windows``,
``face_mask``...) in :attr:`RawClip.extras`, stored as given under ``extra.<name>``, and a reference image in
:attr:`RawClip.reference`, encoded by the cache as ``ref_latents``: the image repeated over the clip's frames
through the (causal) VAE, as the avatar release makes its reference latent. ``ref_latents`` is stored raw and
scaled on reading like the latents. :class:`CachedDataset` items then hold ``extras`` (name -> tensor without
a batch axis); :func:`collate` stacks them, and the trainer passes them to the model as ``extras=``.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from ..atomic_files import atomic_write_text
from ..video_io import VIDEO_EXTENSIONS, read_video

log = logging.getLogger(__name__)

Bucket = Tuple[int, int, int]          # (frames, height, width) in pixels


# ------------------------------------------------------------------------------------------
# buckets


def parse_buckets(spec: Sequence) -> List[Bucket]:
    """Buckets from ``[(17, 64, 64), "33x128x96", ...]``; frames must be 4n+1, sizes multiples of 16."""
    out = []
    for b in spec:
        try:
            f, h, w = (int(v) for v in (b.lower().split("x") if isinstance(b, str) else b))
        except (TypeError, ValueError):
            raise InputError(f"bucket {b!r} is not FRAMESxHEIGHTxWIDTH; write it like 17x64x64 or 33x544x960") from None
        if (f - 1) % 4 or f < 1:
            raise InputError(f"bucket {b}: frames must be 4n+1 (1, 5, ..., 17, 33, ...); found {f}")
        if h % 16 or w % 16 or h < 16 or w < 16:
            raise InputError(f"bucket {b}: height and width must be multiples of 16; found {h}x{w}")
        out.append((f, h, w))
    if not out:
        raise InputError("at least one bucket (frames, height, width) is needed")
    return out


def assign_bucket(frames: int, height: int, width: int, buckets: Sequence[Bucket], name: str = "clip") -> Bucket:
    """The bucket for a clip: nearest aspect ratio, then the longest duration the clip can fill,
    then the largest area. A clip shorter than every bucket of its aspect ratio is an error."""
    aspect = math.log(width / height)
    by_ar = sorted({(round(abs(math.log(w / h) - aspect), 6), h, w) for _, h, w in buckets})
    best = by_ar[0][0]
    candidates = [b for b in buckets if round(abs(math.log(b[2] / b[1]) - aspect), 6) == best]
    fitting = [b for b in candidates if b[0] <= frames]
    if not fitting:
        shortest = min(b[0] for b in candidates)
        raise InputError(f"{name} has {frames} frames, fewer than the shortest bucket for its {width}x{height} "
                         f"aspect ratio ({shortest} frames); drop the clip or add a shorter bucket "
                         f"(buckets: {list(buckets)})")
    return max(fitting, key=lambda b: (b[0], b[1] * b[2]))


def fit_to_bucket(frames: np.ndarray, bucket: Bucket) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> (3, f, h, w) in [-1, 1]: the first f frames, resized to cover the
    bucket (area filter) and centre-cropped."""
    f, h, w = bucket
    video = torch.from_numpy(np.ascontiguousarray(frames[:f])).permute(3, 0, 1, 2).float() / 127.5 - 1
    H, W = video.shape[-2:]
    if (H, W) != (h, w):
        s = max(h / H, w / W)
        nh, nw = max(h, round(H * s)), max(w, round(W * s))
        video = torch.nn.functional.interpolate(video, size=(nh, nw), mode="area" if s < 1 else "bilinear",
                                                **({} if s < 1 else {"align_corners": False}))
        top, left = (nh - h) // 2, (nw - w) // 2
        video = video[..., top:top + h, left:left + w]
    return video.clamp(-1, 1).contiguous()


# ------------------------------------------------------------------------------------------
# clip sources


EXTRA_PREFIX = "extra."
REFERENCE_EXTRA = "ref_latents"       # the extra the cache makes from RawClip.reference
SCALED_EXTRAS = (REFERENCE_EXTRA,)    # extras that are VAE latents: scaled on reading like the latents


@dataclass
class RawClip:
    id: str
    frames: np.ndarray     # (F, H, W, 3) uint8
    caption: str
    # extension inputs stored as given (no batch axis), e.g. {"audio_windows": (F, 10, 5, 32)}
    extras: Optional[Dict[str, torch.Tensor]] = None
    reference: Optional[np.ndarray] = None   # (H, W, 3) uint8 -> cached as "ref_latents"


ClipSource = Iterable[RawClip]   # what cache_dataset reads; ``id`` names the clip's cache entry (kept on resume)


def dataset_videos(folder: str) -> List[Path]:
    """The video files of a dataset folder, sorted. Clear errors for a missing or empty folder."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"dataset folder {folder!r} does not exist or is not a folder; give the folder that holds "
                         f"the training videos, each with a same-name .txt caption (clip1.mp4 + clip1.txt)")
    videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise InputError(f"dataset folder {folder!r} holds no videos ({', '.join(VIDEO_EXTENSIONS)}) with "
                         f"same-name .txt captions; found {len(list(root.iterdir()))} other file(s). Put the clips "
                         f"there as e.g. clip1.mp4 + clip1.txt")
    return videos


def folder_source(folder: str) -> Iterator[RawClip]:
    """Videos with same-stem ``.txt`` captions. Clear errors for a missing, empty or unreadable folder."""
    for p in dataset_videos(folder):
        cap = p.with_suffix(".txt")
        if not cap.is_file():
            raise InputError(f"{p.name} has no caption file {cap.name} next to it; write the clip's caption "
                             f"into {cap.name} or remove the clip")
        try:
            frames, _ = read_video(p)
        except Exception as e:  # noqa: BLE001 - any decoder failure becomes one clear message
            raise InputError(f"could not read video {str(p)!r} ({type(e).__name__}: {e}); re-encode it as H.264 .mp4 "
                             f"or remove it from the dataset") from None
        if not len(frames):
            raise InputError(f"video {str(p)!r} has no frames; re-encode it as H.264 .mp4 or remove it from the "
                             f"dataset")
        yield RawClip(p.stem, frames, cap.read_text().strip())


# ------------------------------------------------------------------------------------------
# caching


TextEncodeFn = Callable[[List[str]], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def encoders_text_fn(encoders, template: str = "video", max_length: int = 256) -> TextEncodeFn:
    from ..text_encoders import encode_prompt

    def encode(prompts: List[str]):
        e = encode_prompt(encoders, prompts, template=template, max_length=max_length)
        return e.text_states.float().cpu(), e.text_mask.cpu(), e.text_states_2.float().cpu()
    return encode


def cache_dataset(out_dir: str, clips: ClipSource, vae, encode_text: TextEncodeFn,
                  buckets: Sequence[Bucket], skip_short: bool = False, batch: int = 1,
                  callback: Optional[Callable[[int], None]] = None) -> dict:
    """Encode every clip into ``out_dir`` (latents with the VAE, captions with ``encode_text``).
    Each clip file is written atomically and existing ones are kept, so an interrupted cache run
    continues where it stopped, losing at most the clip in progress; a finished cache made with
    other buckets is an error (pick another folder). ``callback(n)`` is called after each clip with
    the number of clips handled so far; it may raise to stop."""
    from ..checkpoints.load import write_safetensors_atomic

    out = Path(out_dir)
    manifest_path = out / "cache.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"entries": []}
    wanted = [list(b) for b in buckets]
    if "buckets" in manifest and manifest["buckets"] != wanted:
        raise InputError(f"cache folder {str(out)!r} already holds a cache made with buckets {manifest['buckets']}, "
                         f"this run asks for {wanted}; choose another (empty) cache folder or delete that one")
    (out / "clips").mkdir(parents=True, exist_ok=True)
    done = {e["id"] for e in manifest["entries"]}
    text_cache: Dict[str, Tuple[torch.Tensor, ...]] = {}

    def text(prompt: str):
        if prompt not in text_cache:
            states, mask, pooled = encode_text([prompt])
            n = max(1, int(mask[0].sum()))
            text_cache[prompt] = (states[0, :n].contiguous(), pooled[0].contiguous())
        return text_cache[prompt]

    count = skipped = 0
    for clip in clips:
        count += 1
        if clip.id in done:
            if callback is not None:
                callback(count)
            continue
        finished = _finished_clip_entry(out, clip, wanted)
        if finished is not None:          # written by an interrupted run after its last manifest update
            manifest["entries"].append(finished)
            done.add(clip.id)
            if callback is not None:
                callback(count)
            continue
        f, h, w, _ = clip.frames.shape
        try:
            bucket = assign_bucket(f, h, w, buckets, name=f"clip {clip.id!r}")
        except InputError:
            if skip_short:
                skipped += 1
                log.warning("skipping %s: %d frames is shorter than every bucket", clip.id, f)
                if callback is not None:
                    callback(count)
                continue
            raise
        video = fit_to_bucket(clip.frames, bucket)
        with torch.no_grad():
            latents = vae.encode(video[None].to(vae.device, vae.dtype), tile=False)[0].float().cpu()
        states, pooled = text(clip.caption)
        name = f"clips/{clip.id}.safetensors"
        tensors = {"latents": latents.contiguous(), "text_states": states, "text_states_2": pooled}
        tensors.update(_clip_extras(clip, bucket, vae))
        write_safetensors_atomic(tensors, str(out / name), metadata={"caption": clip.caption,
                                                                     "bucket": "x".join(map(str, bucket))})
        manifest["entries"].append({"id": clip.id, "file": name, "caption": clip.caption, "bucket": list(bucket),
                                    "latent_shape": list(latents.shape)})
        if len(manifest["entries"]) % 50 == 0:
            atomic_write_text(manifest_path, json.dumps(manifest))
        if callback is not None:
            callback(count)
    if count == 0:
        raise InputError("the clip source yielded no clips; nothing to cache")
    if not manifest["entries"]:
        raise InputError(f"no clip could be cached: all {skipped} clips are shorter than every bucket {list(buckets)}")
    null_states, null_mask, null_pooled = encode_text([""])
    n = max(1, int(null_mask[0].sum()))
    write_safetensors_atomic({"text_states": null_states[0, :n].contiguous(),
                              "text_states_2": null_pooled[0].contiguous()}, str(out / "null.safetensors"))
    manifest.update(scaling_factor=float(vae.scaling_factor), buckets=[list(b) for b in buckets],
                    text_states_dim=int(null_states.shape[-1]), text_states_dim_2=int(null_pooled.shape[-1]),
                    skipped=skipped)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=0))
    return manifest


def _clip_extras(clip: RawClip, bucket: Bucket, vae) -> Dict[str, torch.Tensor]:
    """The clip's extension extras as cache tensors (``extra.<name>``); the reference image encoded."""
    out = {}
    for k, v in (clip.extras or {}).items():
        if k == REFERENCE_EXTRA:
            raise InputError(f"clip {clip.id!r}: the extra {REFERENCE_EXTRA!r} is made by the cache from "
                             f"RawClip.reference; give the reference image there instead")
        if not isinstance(v, (torch.Tensor, np.ndarray)):
            raise InputError(f"clip {clip.id!r}: extra {k!r} must be a tensor or array, found {type(v).__name__}")
        out[EXTRA_PREFIX + k] = torch.as_tensor(v).float().contiguous()
    if clip.reference is not None:
        image = np.asarray(clip.reference)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise InputError(f"clip {clip.id!r}: the reference must be a uint8 (H, W, 3) image, found "
                             f"{image.dtype} {image.shape}")
        repeated = fit_to_bucket(np.repeat(image[None], bucket[0], axis=0), bucket)
        with torch.no_grad():
            ref = vae.encode(repeated[None].to(vae.device, vae.dtype), tile=False)[0].float().cpu()
        out[EXTRA_PREFIX + REFERENCE_EXTRA] = ref.contiguous()
    return out


def _finished_clip_entry(out: Path, clip: RawClip, buckets: List[List[int]]) -> Optional[dict]:
    """The manifest entry of a clip file already on disk (complete: clip files are written atomically),
    or None when there is none or it was made with another caption or bucket list."""
    from safetensors import safe_open

    name = f"clips/{clip.id}.safetensors"
    if not (out / name).is_file():
        return None
    try:
        with safe_open(str(out / name), framework="pt") as f:
            meta = f.metadata() or {}
            shape = list(f.get_slice("latents").get_shape())
        bucket = [int(v) for v in meta["bucket"].split("x")]
    except Exception:  # noqa: BLE001 - a damaged file is simply encoded again
        return None
    if meta.get("caption") != clip.caption or bucket not in buckets:
        return None
    return {"id": clip.id, "file": name, "caption": clip.caption, "bucket": bucket, "latent_shape": shape}


# ------------------------------------------------------------------------------------------
# reading the cache


class CachedDataset:
    """The cached clips; ``ds[i]`` -> dict of tensors (latents already multiplied by the scaling factor)."""

    def __init__(self, cache_dir: str, preload: bool = True):
        root = Path(cache_dir)
        manifest = root / "cache.json"
        if not root.is_dir():
            raise InputError(f"cache folder {cache_dir!r} does not exist; run `python -m hyvideo_core.finetune cache` first")
        if not manifest.is_file():
            raise InputError(f"{cache_dir!r} is not a training cache (no cache.json); run "
                             f"`python -m hyvideo_core.finetune cache` to build it")
        try:
            self.manifest = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{manifest} is unreadable ({e}); delete the cache folder and rebuild it") from None
        self.entries = self.manifest.get("entries", [])
        if not self.entries:
            raise InputError(f"training cache {cache_dir!r} holds no clips; rebuild it from a non-empty dataset")
        self.root = root
        self.scaling = float(self.manifest["scaling_factor"])
        self.null = self._read(root / "null.safetensors")
        self._items: Dict[int, dict] = {}
        if preload:
            for i in range(len(self.entries)):
                self[i]

    def _read(self, path: Path) -> Dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"cached file {str(path)!r} is missing or unreadable ({e}); delete it and re-run "
                                  f"the cache command (finished entries are kept)") from None

    def __len__(self) -> int:
        return len(self.entries)

    def bucket(self, i: int) -> Tuple[int, ...]:
        return tuple(self.entries[i]["latent_shape"])

    def __getitem__(self, i: int) -> dict:
        if i not in self._items:
            t = self._read(self.root / self.entries[i]["file"])
            extras = {k[len(EXTRA_PREFIX):]: v for k, v in t.items() if k.startswith(EXTRA_PREFIX)}
            for k in SCALED_EXTRAS:
                if k in extras:
                    extras[k] = extras[k] * self.scaling
            self._items[i] = {"latents": t["latents"] * self.scaling, "text_states": t["text_states"],
                              "text_states_2": t["text_states_2"], "caption": self.entries[i]["caption"],
                              "extras": extras}
        return self._items[i]


def collate_extras(items: Sequence[dict]) -> Dict[str, torch.Tensor]:
    """Stack the items' extension extras; every item must carry the same names with the same shapes."""
    names = [sorted(it.get("extras") or {}) for it in items]
    if any(n != names[0] for n in names):
        raise InputError(f"clips of one batch carry different extension extras ({names[0]} vs "
                         f"{next(n for n in names if n != names[0])}); cache every clip with the same extras")
    out = {}
    for k in names[0]:
        shapes = {tuple(it["extras"][k].shape) for it in items}
        if len(shapes) > 1:
            raise InputError(f"extra {k!r} has different shapes in one batch ({sorted(shapes)}); clips of a bucket "
                             f"need equal-size extras")
        out[k] = torch.stack([it["extras"][k] for it in items])
    return out


def collate(items: Sequence[dict]) -> dict:
    """Stack latents (same bucket) and right-pad text states to the longest prompt; extension extras
    (when the items carry any) are stacked under ``extras``."""
    length = max(it["text_states"].shape[0] for it in items)
    dim = items[0]["text_states"].shape[1]
    states = torch.zeros(len(items), length, dim)
    mask = torch.zeros(len(items), length, dtype=torch.long)
    for j, it in enumerate(items):
        n = it["text_states"].shape[0]
        states[j, :n] = it["text_states"]
        mask[j, :n] = 1
    batch = {"latents": torch.stack([it["latents"] for it in items]), "text_states": states, "text_mask": mask,
             "text_states_2": torch.stack([it["text_states_2"] for it in items])}
    extras = collate_extras(items)
    if extras:
        batch["extras"] = extras
    return batch


class BucketBatchSampler:
    """Deterministic global batches, each from one bucket: epoch ``e`` is a permutation seeded by
    ``(seed, e)``; the position (epoch, batch index) is the whole data-order state."""

    def __init__(self, dataset: CachedDataset, global_batch: int, seed: int = 0, drop_last: bool = True):
        self.global_batch, self.seed = int(global_batch), int(seed)
        self.groups: Dict[Tuple[int, ...], List[int]] = {}
        for i in range(len(dataset)):
            self.groups.setdefault(dataset.bucket(i), []).append(i)
        self.drop_last = drop_last
        if all(len(v) < self.global_batch for v in self.groups.values()) and drop_last:
            raise InputError(f"global batch {global_batch} is larger than every bucket "
                             f"({ {k: len(v) for k, v in self.groups.items()} } clips); lower the batch size or cache more clips")
        self.epoch, self.position = 0, 0
        self._batches = self._epoch_batches(0)

    def _epoch_batches(self, epoch: int) -> List[List[int]]:
        rng = np.random.default_rng([self.seed, epoch, 0xDA7A])
        batches = []
        for key in sorted(self.groups):
            idx = list(rng.permutation(self.groups[key]))
            for s in range(0, len(idx), self.global_batch):
                b = idx[s:s + self.global_batch]
                if len(b) == self.global_batch or not self.drop_last:
                    batches.append([int(i) for i in b])
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def next(self) -> List[int]:
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._epoch_batches(self.epoch)
        batch = self._batches[self.position]
        self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "global_batch": self.global_batch}

    def load_state_dict(self, state: dict) -> None:
        if state["global_batch"] != self.global_batch or state["seed"] != self.seed:
            raise InputError(f"resuming with global batch {self.global_batch} / seed {self.seed}, but the checkpoint "
                             f"was made with {state['global_batch']} / {state['seed']}; keep them equal for an exact resume")
        self.epoch, self.position = state["epoch"], state["position"]
        self._batches = self._epoch_batches(self.epoch)
