"""Record the golden fixture of the Synchformer sync features from the official HunyuanVideo-Foley code.

    PYTHONPATH=/path/to/timm+omegaconf+torchvision python tests/v2a/make_synchformer_fixture.py \
        /path/to/HunyuanVideo-Foley [--commit HASH] [--out FILE] [--check-released-size]

The official repository (github.com/Tencent-Hunyuan/HunyuanVideo-Foley) is read from a local
checkout or export; nothing of it is copied into this project. It needs packages the suite does not
(``timm``, ``omegaconf``, ``torchvision``): install them somewhere for this script only, they are not
product requirements. The script builds, on CPU in float32:

* the official ``Synchformer`` (``models/synchformer/synchformer.py``) whose visual branch, the
  official ``MotionFormer`` (``motionformer.py``, ``video_model_builder.py``, ``vit_helper.py``), is
  made at our ``synchformer-tiny`` size by overriding three entries of the released
  ``divided_224_16x4.yaml`` as it is read (``VIT.EMBED_DIM`` 12, ``VIT.DEPTH`` 2, ``VIT.NUM_HEADS`` 2;
  everything else, the 224 crop, 16×16×2 patches and 8 time steps included, as released), every
  visual parameter seeded at random (the release zero-initialises the patch embedding and the
  attentions, which would make a zero test);
* the release's Synchformer preprocessing, the ``v2.Compose`` of ``utils/model_utils.py``
  ``_load_syncformer_model`` (Resize(224, bicubic), CenterCrop(224), ToImage, ToDtype(float32,
  scale), Normalize(0.5, 0.5)), rebuilt here with the same arguments from torchvision (the class
  that holds it also loads every other model);
* the official ``encode_video_with_sync`` (``utils/feature_utils.py``: 16-frame segments, stride 8,
  the model, the (B, 8·S, D) layout) on the preprocessed clip.

It records into ``synchformer_golden.safetensors``:

* ``state.<key>``: the visual branch's state dict under the file's key names (``vfeat_extractor.*``,
  the unused 2-D ``patch_embed`` included); the names and shapes of the other branches' tensors go
  into the metadata (``unused_keys``);
* ``clip.frames`` (T, H, W, 3) uint8 video frames at 25 fps (landscape); ``clip.pixels``: the
  preprocessed frames 0, 13 and T-1 as uint8 levels ((y·0.5 + 0.5)·255, exact), every 2nd row and
  column; ``clip.out``: ``encode_video_with_sync``'s output;
* ``portrait.frames`` / ``portrait.pixels``: the same preprocessing on two portrait frames.

Stand-ins (each only satisfies an import on a path the recorded code never runs):

* ``torchaudio``: imported at the top of ``synchformer.py`` for reading audio files (and named in
  one type annotation, ``torchaudio.transforms.MelSpectrogram``);
* ``hunyuanvideo_foley.models.synchformer.ast_model``: a module whose ``AST`` is an empty
  ``nn.Module``. The audio branch cannot be built with the installed transformers (5.x):
  ``modeling_ast.py`` imports ``find_pruneable_heads_and_indices`` from ``transformers.pytorch_utils``,
  which transformers 5 removed; Foley never calls the audio branch;
* ``loguru`` (``feature_utils`` only logs); the packages ``hunyuanvideo_foley``, ``.models``,
  ``.models.synchformer`` and ``.utils`` are registered as bare packages over the real folders so
  their ``__init__`` files (which import the whole pipeline) do not run; the real submodules load;
* ``torch.Tensor.cuda`` is the identity while ``encode_video_with_sync`` runs (it moves the
  segments to CUDA unconditionally); its ``torch.autocast("cuda", float16)`` disables itself on a
  CPU-only torch, so the record is float32.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import json
import re
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_golden_fixture import official_commit  # noqa: E402  (the Foley fixture's maker, same folder)

DEFAULT_OUT = HERE / "synchformer_golden.safetensors"
SEED = 20261217
TINY_VIT = {"EMBED_DIM": 12, "DEPTH": 2, "NUM_HEADS": 2}     # = hyvideo_core's "synchformer-tiny"
CLIP_SHAPE = (32, 30, 44)            # frames, height, width: 3 segments, short side 30 -> 224
PORTRAIT_SHAPE = (2, 46, 31)
PIXEL_FRAMES = (0, 13, CLIP_SHAPE[0] - 1)


def _module(name, path=None, **attrs):
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=path is not None)
    if path is not None:
        mod.__path__ = [str(path)]
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def install_stand_ins(official: Path) -> None:
    root = official / "hunyuanvideo_foley"
    _module("hunyuanvideo_foley", root)
    _module("hunyuanvideo_foley.models", root / "models")
    _module("hunyuanvideo_foley.models.synchformer", root / "models" / "synchformer")
    _module("hunyuanvideo_foley.utils", root / "utils")

    class AST(torch.nn.Module):          # the audio branch; never called by the visual path
        def __init__(self, *args, **kwargs):
            super().__init__()

    _module("hunyuanvideo_foley.models.synchformer.ast_model", AST=AST)
    torchaudio = _module("torchaudio")
    torchaudio.transforms = _module("torchaudio.transforms", MelSpectrogram=object)   # a type annotation only

    class _Logger:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    _module("loguru", logger=_Logger())


def tiny_yaml_reader(motionformer_module) -> None:
    """Read the released MotionFormer YAML as the official code does, then apply TINY_VIT."""
    real = motionformer_module.OmegaConf

    class TinyOmegaConf:
        @staticmethod
        def load(path):
            cfg = real.load(path)
            for key, value in TINY_VIT.items():
                cfg.VIT[key] = value
            return cfg

    motionformer_module.OmegaConf = TinyOmegaConf


def seeded_parameters(model: torch.nn.Module, seed: int) -> None:
    """Weights ~ N(0, 1/fan_in), biases N(0, 0.1²), LayerNorm scales 1 + N(0, 0.1²), CLS tokens and
    position tables N(0, 0.5²)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if re.search(r"norm\d?\.weight$", name):
                p.copy_(1 + 0.1 * noise)
            elif name.endswith(("cls_token", "pos_embed", "temp_embed")):
                p.copy_(0.5 * noise)
            elif p.dim() >= 2:
                p.copy_(noise / (p[0].numel() ** 0.5))
            else:
                p.copy_(0.1 * noise)


def as_levels(pixels: torch.Tensor) -> torch.Tensor:
    """Normalised pixels back to their uint8 levels (exact: y = (u/255 - 0.5)/0.5), every 2nd row/column."""
    return ((pixels * 0.5 + 0.5) * 255).round().to(torch.uint8)[..., ::2, ::2].contiguous()


def build_official(official: Path) -> torch.nn.Module:
    """The official ``Synchformer`` (visual branch at the TINY_VIT size, seeded), in eval mode."""
    missing = [m for m in ("timm", "omegaconf", "torchvision", "einops") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"the official Synchformer code needs {', '.join(missing)}: install them (for this script "
                         f"only, e.g. pip install --target DIR ...; PYTHONPATH=DIR)")
    sys.path.insert(0, str(official))
    install_stand_ins(official)
    motionformer = importlib.import_module("hunyuanvideo_foley.models.synchformer.motionformer")
    tiny_yaml_reader(motionformer)
    from hunyuanvideo_foley.models.synchformer.synchformer import Synchformer

    model = Synchformer().eval()
    seeded_parameters(model.vfeat_extractor, SEED)
    return model


def build_records(official: Path) -> tuple[dict, dict]:
    torch.set_num_threads(1)
    model = build_official(official)
    from torchvision.transforms import v2

    from hunyuanvideo_foley.utils.config_utils import AttributeDict
    from hunyuanvideo_foley.utils.feature_utils import encode_video_with_sync

    full = model.state_dict()
    record = {f"state.{k}": v.detach().clone() for k, v in full.items() if k.startswith("vfeat_extractor.")}
    unused = {k: list(v.shape) for k, v in full.items() if not k.startswith("vfeat_extractor.")}

    preprocess = v2.Compose([
        v2.Resize(224, interpolation=v2.InterpolationMode.BICUBIC),
        v2.CenterCrop(224),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    ])
    rng = np.random.default_rng(SEED)

    def video(shape):
        # smooth moving blobs plus noise: real-looking structure for the bicubic resize, not flat noise
        t, h, w = shape
        yy, xx = np.mgrid[0:h, 0:w]
        frames = np.empty((t, h, w, 3), np.float32)
        for i in range(t):
            for c in range(3):
                frames[i, :, :, c] = 128 + 90 * np.sin(xx / (3 + c) + i / 4) * np.cos(yy / (4 + c) - i / 5)
        return np.clip(frames + rng.normal(0, 20, frames.shape), 0, 255).astype(np.uint8)

    clip, portrait = video(CLIP_SHAPE), video(PORTRAIT_SHAPE)
    sync_frames = preprocess(torch.from_numpy(clip).permute(0, 3, 1, 2)).unsqueeze(0)    # (1, T, 3, 224, 224)
    portrait_pixels = preprocess(torch.from_numpy(portrait).permute(0, 3, 1, 2))

    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # "CUDA is not available ... Disabling autocast"
            out = encode_video_with_sync(sync_frames, AttributeDict({"syncformer_model": model}))
    finally:
        torch.Tensor.cuda = cuda
    assert out.dtype == torch.float32 and out.shape == (1, 8 * ((CLIP_SHAPE[0] - 16) // 8 + 1), TINY_VIT["EMBED_DIM"])
    record |= {"clip.frames": torch.from_numpy(clip), "clip.pixels": as_levels(sync_frames[0, list(PIXEL_FRAMES)]),
               "clip.out": out, "portrait.frames": torch.from_numpy(portrait),
               "portrait.pixels": as_levels(portrait_pixels)}
    return record, unused


def check_released_size(official: Path, tol: float = 1e-4) -> float:
    """No fixture: the official Synchformer at the released size (12 blocks of 768, 12 heads) with
    seeded visual weights, saved as a .pth with all its keys, loaded by ``load_synchformer`` and run
    on one random segment by both; returns the largest difference (SystemExit above ``tol``)."""
    import tempfile

    TINY_VIT.clear()                      # the released YAML as it is
    official_model = build_official(official)
    sys.path.insert(0, str(HERE.parent.parent))
    from hyvideo_core.v2a.features.synchformer import load_synchformer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synchformer_state_dict.pth"
        torch.save(official_model.state_dict(), path)
        ours = load_synchformer(path)
    segment = torch.randn(1, 1, 16, 3, 224, 224, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        expected, got = official_model(segment), ours(segment)
    diff = (expected - got).abs().max().item()
    print(f"released size ({ours.config.name}): output {tuple(got.shape)}, mean |x| "
          f"{expected.abs().mean().item():.3f}, max difference {diff:.2e}")
    if not diff <= tol:
        raise SystemExit(f"released-size Synchformer differs from the official one by {diff:.2e} > {tol:g}")
    return diff


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("official", type=Path, help="checkout or export of Tencent-Hunyuan/HunyuanVideo-Foley")
    parser.add_argument("--commit", help="the official commit (read with git when the folder is a checkout)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check-released-size", action="store_true",
                        help="write nothing: compare ours with the official model at the released size")
    args = parser.parse_args(argv)
    if args.check_released_size:
        check_released_size(args.official)
        return
    commit = official_commit(args.official, args.commit)
    record, unused = build_records(args.official)
    from safetensors.torch import save_file

    metadata = {"official_repo": "Tencent-Hunyuan/HunyuanVideo-Foley", "official_commit": commit,
                "torch": torch.__version__, "seed": str(SEED), "tiny_vit": json.dumps(TINY_VIT),
                "pixel_frames": json.dumps(list(PIXEL_FRAMES)), "unused_keys": json.dumps(unused),
                "made_by": "tests/v2a/make_synchformer_fixture.py"}
    save_file({k: v.contiguous() for k, v in record.items()}, str(args.out), metadata=metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) from official commit {commit}")


if __name__ == "__main__":
    main()
