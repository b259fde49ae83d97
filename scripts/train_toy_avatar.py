"""The toy avatar's stages of scripts/train_toy.py (talking clips, hyvideo_core/toy/talking.py): a tiny Whisper,
the avatar trained with the fine-tuning engine from the shipped CFG teacher, and its export. Run them through
``python scripts/train_toy.py {whisper,avatar,export-avatar}``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from toy_runs import SEED, WEIGHTS, log, train_run


def write_toy_whisper(folder: Path, seed: int = SEED) -> None:
    """A tiny random Whisper (d_model 32, 4 layers -> 5 hidden states, 80 mel bins, 1500 positions so 30 s
    chunks work as with whisper-tiny). The two input convolutions get unit-gain weights: at transformers'
    default std 0.02 the sinusoidal position embedding drowns the sound (a linear probe of the loudness
    from the 10-frame windows reached r = 0.07 on talking clips; with unit gain 0.95)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    config = WhisperConfig(vocab_size=16, num_mel_bins=80, d_model=32, encoder_layers=4, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=8,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(seed + 7)
    model = WhisperModel(config)
    with torch.no_grad():
        for conv in (model.encoder.conv1, model.encoder.conv2):
            torch.nn.init.normal_(conv.weight, std=(conv.weight.shape[1] * conv.weight.shape[2]) ** -0.5)
    model.save_pretrained(folder, safe_serialization=True)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


def stage_whisper(args, work: Path) -> None:
    import shutil

    from hyvideo_core.apps.avatar import load_whisper

    shutil.rmtree(work / "whisper", ignore_errors=True)
    write_toy_whisper(work / "whisper")
    w = load_whisper(work / "whisper")
    log(work, "whisper", {"written": str(work / "whisper"), "layers": w.layers, "dim": w.dim})


def talking_raw_clips(whisper, seed: int, indices, prefix: str = "talk"):
    """Talking clips as fine-tuning :class:`RawClip` s with the avatar extras: Whisper windows of the
    sound, the reference image (cached as ``ref_latents``) and the face box at latent resolution."""
    from hyvideo_core.apps.avatar import audio_windows, encode_whisper
    from hyvideo_core.finetune.data import RawClip
    from hyvideo_core.toy.talking import talking_clip

    for i in indices:
        clip = talking_clip(seed, i)
        windows = audio_windows(encode_whisper(whisper, clip.audio), clip.spec.frames)[0]
        yield RawClip(f"{prefix}{i:05d}", clip.frames, clip.caption, reference=clip.reference,
                      extras={"audio_windows": windows, "face_mask": latent_face_mask(clip)})


def latent_face_mask(clip, cell: int = 8) -> torch.Tensor:
    """(H/8, W/8) face box of a talking clip at latent resolution: every latent cell the box touches, grown
    by one cell (the model samples the mask at every second cell, its 2x2 token patches)."""
    import torch.nn.functional as F

    m = torch.from_numpy(clip.face_mask())[None, None]
    m = F.max_pool2d(m, cell)
    return F.max_pool2d(m, 3, stride=1, padding=1)[0, 0].contiguous()


def stage_avatar(args, work: Path) -> None:
    """Train the toy avatar on talking clips with the fine-tuning engine, starting from the shipped CFG
    teacher: the avatar modules are new (before_proj zero-initialised, like the adapters' output layers, so
    step 0 is the teacher), the backbone trains too at --base-lr (0 = frozen, modules only)."""
    from hyvideo_core.apps.avatar import load_whisper
    from hyvideo_core.finetune.data import cache_dataset, encoders_text_fn
    from hyvideo_core.text_encoders import load_text_encoders
    from hyvideo_core.toy.avatar import toy_whisper_folder
    from hyvideo_core.toy.talking import TRAIN_SEED
    from hyvideo_core.vae import load_vae

    whisper_dir = work / "whisper" if (work / "whisper").is_dir() else toy_whisper_folder(WEIGHTS)
    cache = work / f"avatar_cache_{args.clips}"
    if not (cache / "null.safetensors").is_file():
        t0 = time.time()
        whisper = load_whisper(whisper_dir)
        enc = load_text_encoders(WEIGHTS / "text_encoder", WEIGHTS / "text_encoder_2")
        cache_dataset(str(cache), talking_raw_clips(whisper, TRAIN_SEED, range(args.clips)),
                      load_vae(WEIGHTS / "vae.safetensors"), encoders_text_fn(enc, "video", max_length=32),
                      [(17, 64, 64)])
        log(work, "avatar", {"cache": cache.name, "seconds": round(time.time() - t0, 1)})
    frozen = not args.base_lr
    train_run(work, args.avatar_run, threads=args.threads, cache=cache.name, variant="toy-avatar", extension="avatar",
           init=str(WEIGHTS / "transformer_teacher.safetensors"), trainable="extension" if frozen else "all",
           base_lr=None if frozen else args.base_lr, zero_init=("before_proj.",), steps=args.steps,
           global_batch=args.batch, lr=args.lr or 1e-3, warmup_steps=50, schedule="cosine", caption_dropout=0.1,
           extra_dropout={"audio_windows": 0.1}, save_every=100)


def stage_export_avatar(args, work: Path) -> None:
    """The toy avatar's files -> hyvideo_core/toy/weights: whisper/ and avatar.safetensors (bf16; the avatar
    modules only, or with the backbone when the run trained it)."""
    import shutil

    from hyvideo_core.checkpoints.load import load_transformer, save_transformer
    from hyvideo_core.apps.avatar import avatar_extension
    from hyvideo_core.variants import get_variant

    shutil.rmtree(WEIGHTS / "whisper", ignore_errors=True)
    shutil.copytree(work / "whisper", WEIGHTS / "whisper")
    root = work / args.avatar_run / "checkpoints"
    spec = get_variant("toy-avatar")
    model = load_transformer(root / (root / "latest").read_text() / "model.safetensors", variant="toy-avatar",
                             extensions=[avatar_extension(spec.app.config)])
    config = json.loads((work / args.avatar_run / "config.json").read_text())
    if config["trainable"] == "extension":   # the backbone is the shipped teacher's: keep only the modules
        from hyvideo_core.checkpoints.load import write_safetensors_atomic

        prefixes = tuple(f"{m}." for m in spec.app.modules)
        state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}
        write_safetensors_atomic(state, str(WEIGHTS / "avatar.safetensors"))
    else:
        save_transformer(model, WEIGHTS / "avatar.safetensors", dtype=torch.bfloat16)
    total = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())
    log(work, "export-avatar", {"bytes": total, "run": args.avatar_run})
