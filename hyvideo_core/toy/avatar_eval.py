"""The toy avatar yardstick: does the generated shape talk in time with the sound, and stay itself?

For each held-out pair (a talking clip of :data:`~hyvideo_core.toy.talking.HELDOUT_SEED`: its reference
image, its sound, its face box) the avatar model generates a clip three times, from the same noise:

* with the **real** sound,
* with **shuffled** sound (the next pair's), the chance baseline,
* with **silent** sound (16 kHz zeros through Whisper), the mouth-at-rest baseline.

Measured from pixels, per clip (pure image analysis, like :mod:`hyvideo_core.toy.evaluate`):

``openness``   per frame, the shape's area: the soft coverage of the reference's shape colour against the
               frame's background (median of the frame border), summed over the frame. The toy world's mouth
               is the shape's size (:mod:`hyvideo_core.toy.talking`).
``sync``       Pearson correlation of openness with the *real* sound's loudness at the frame times
               (:func:`~hyvideo_core.toy.talking.frame_envelope`); for the shuffled and silent clips too, so
               they measure how much of the real sound's rhythm appears by chance (a constant openness counts 0).
``offset``     the lag in [-4, 4] frames maximising the correlation of openness[t] with loudness[t - lag]
               (positive = the picture is late).
``identity``   the colour and shape class the :func:`~hyvideo_core.toy.evaluate.analyse` classifier finds equal
               the reference's.
``stillness``  mean absolute difference of consecutive frames (0-255 scale) outside the face box, and inside.

Generation (``sampler``): ``"recipe"`` (default) runs the avatar recipe, ``generate_avatar`` with
``released_schedule=False``; ``"plain"`` is the engine's ``sample`` with the extras. Either way one 5-latent window
(the whole 17-frame clip), plain CFG at ``cfg`` between (caption + sound) and (empty caption + zero windows),
16 Euler steps at shift 3, the reference latent from the reference repeated over the clip, the face box as the
face mask.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Sequence

import numpy as np
import torch

from .talking import FRAMES, HELDOUT_SEED, TalkingClip, frame_envelope, talking_clip
from .world import COLOURS, to_uint8

MAX_LAG = 4
CONDITIONS = ("real", "shuffled", "silent")


# -- measurement ---------------------------------------------------------------------------------------


def openness(frames: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    """(F,) area of the shape of ``colour`` in uint8 frames (F, H, W, 3), in pixels (soft coverage)."""
    x = frames.astype(np.float32)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)      # (F, 2W + 2H, 3)
    bg = np.median(border, axis=1)[:, None, None, :]                                    # per frame
    span = np.asarray(colour, np.float32)[None, None, None, :] - bg
    cover = ((x - bg) * span).sum(-1) / np.maximum((span * span).sum(-1), 1e-6)
    return np.clip(cover, 0.0, 1.0).sum(axis=(1, 2))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation; 0 when either side is constant (no rhythm at all counts as no sync)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sa, sb = a.std(), b.std()
    if sa < 1e-6 * max(1.0, abs(a.mean())) or sb < 1e-9:
        return 0.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def lagged(open_: np.ndarray, env: np.ndarray, lag: int) -> float:
    """corr(openness[t], loudness[t - lag]) over the frames both cover."""
    if lag >= 0:
        return pearson(open_[lag:], env[:len(env) - lag])
    return pearson(open_[:lag], env[-lag:])


def best_offset(open_: np.ndarray, env: np.ndarray, max_lag: int = MAX_LAG) -> int:
    scores = [lagged(open_, env, k) for k in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


def stillness(frames: np.ndarray, box) -> Dict[str, float]:
    """Mean |frame difference| (0-255) outside and inside the face box."""
    d = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(-1)                   # (F-1, H, W)
    inside = np.zeros(d.shape[1:], bool)
    x0, y0, x1, y1 = box
    inside[y0:y1, x0:x1] = True
    return {"outside": float(d[:, ~inside].mean()), "inside": float(d[:, inside].mean())}


def identity(frames: np.ndarray, clip: TalkingClip) -> Dict[str, object]:
    from .evaluate import analyse

    pred = analyse(frames)["predicted"]
    return {"colour": pred["colour"], "shape": pred["shape"], "background": pred["background"],
            "kept": pred["colour"] == clip.spec.colour and pred["shape"] == clip.spec.shape}


@dataclass
class ClipMeasure:
    index: int
    condition: str
    sync: float                  # corr(openness, real loudness)
    offset: int                  # best lag in [-4, 4]
    identity_kept: bool
    still_outside: float
    still_inside: float
    openness_mean: float
    openness_std: float
    predicted: Dict[str, object] = field(default_factory=dict)


def measure(frames: np.ndarray, clip: TalkingClip, condition: str, index: int) -> ClipMeasure:
    env = frame_envelope(clip.audio, clip.spec.frames)
    o = openness(frames, COLOURS[clip.spec.colour])
    ident = identity(frames, clip)
    s = stillness(frames, clip.face_box)
    return ClipMeasure(index, condition, pearson(o, env), best_offset(o, env), bool(ident["kept"]), s["outside"],
                       s["inside"], float(o.mean()), float(o.std()), ident)


# -- generation ----------------------------------------------------------------------------------------


@dataclass
class ToyAvatarKit:
    transformer: torch.nn.Module
    vae: object
    encoders: object
    whisper: object


def load_kit(weights=None) -> ToyAvatarKit:
    from ..apps.avatar import load_whisper
    from ..text_encoders import load_text_encoders
    from ..vae import load_vae
    from .avatar import load_toy_avatar, toy_whisper_folder
    from .model import WEIGHTS

    w = WEIGHTS if weights is None else weights
    return ToyAvatarKit(load_toy_avatar(w), load_vae(w / "vae.safetensors"),
                        load_text_encoders(w / "text_encoder", w / "text_encoder_2"),
                        load_whisper(toy_whisper_folder(w)))


def reference_latents(vae, reference: np.ndarray, frames: int = FRAMES) -> torch.Tensor:
    """(1, C, T, h, w) scaled latent of the reference image repeated over the clip (the causal VAE's mean)."""
    from .world import to_tensor

    video = to_tensor(np.repeat(reference[None], frames, axis=0))[None]
    with torch.no_grad():
        return vae.encode(video, tile=False).float() * vae.scaling_factor


def face_mask_latent(clip: TalkingClip) -> torch.Tensor:
    """(1, H/8, W/8) face box at latent resolution, as the training clips carry it."""
    import torch.nn.functional as F

    m = F.max_pool2d(torch.from_numpy(clip.face_mask())[None, None], 8)
    return F.max_pool2d(m, 3, stride=1, padding=1)[0]


def sound_windows(whisper, audio: np.ndarray, frames: int = FRAMES) -> torch.Tensor:
    from ..apps.avatar import audio_windows, encode_whisper

    return audio_windows(encode_whisper(whisper, audio), frames)


@torch.no_grad()
def generate(kit: ToyAvatarKit, clip: TalkingClip, audio: np.ndarray, seed: int, steps: int = 16,
             shift: float = 3.0, cfg: float = 4.0) -> np.ndarray:
    """uint8 (F, H, W, 3): the avatar model's clip for ``clip``'s reference and caption, driven by ``audio``."""
    from ..sampling.conditions import Branch, TextCondition
    from ..sampling.loop import sample
    from ..sampling.noise import latent_shape, make_noise
    from ..text_encoders import encode_prompt

    spec = clip.spec
    pos = encode_prompt(kit.encoders, clip.caption, template="video", max_length=32)
    neg = encode_prompt(kit.encoders, "", template="video", max_length=32)
    windows = sound_windows(kit.whisper, audio, spec.frames)
    extras = {"ref_latents": reference_latents(kit.vae, clip.reference, spec.frames), "audio_windows": windows,
              "face_mask": face_mask_latent(clip)}
    negative = Branch(TextCondition.of(neg),
                      {**extras, "audio_windows": torch.zeros_like(windows)})
    noise = make_noise(latent_shape(spec.frames, spec.height, spec.width,
                                    channels=kit.transformer.config.in_channels), seed, device="cpu")
    z = sample(kit.transformer, noise, pos.text_states, pos.text_mask, pos.text_states_2, steps=steps, shift=shift,
               cfg_scale=cfg, negative=negative, extras=extras)
    return to_uint8(kit.vae.decode(z / kit.vae.scaling_factor, tile=False).float())


@torch.no_grad()
def generate_with_recipe(kit: ToyAvatarKit, clip: TalkingClip, audio: np.ndarray, seed: int, steps: int = 16,
                         shift: float = 3.0, cfg: float = 4.0) -> np.ndarray:
    """The same clip through the avatar recipe (``hyvideo_core.apps.avatar.generate_avatar``): plain CFG against
    the empty caption with zero audio, no released prompt prefix, 32 text tokens, the face box as a MASK; the
    recipe draws the reference latent from the VAE posterior (seeded) where :func:`generate` takes its mean."""
    from ..apps.avatar import AvatarOptions, generate_avatar

    sound = {"waveform": torch.from_numpy(np.asarray(audio, np.float32))[None, None], "sample_rate": 16000}
    options = AvatarOptions(steps=steps, shift=shift, cfg_scale=cfg, seed=seed, released_schedule=False)
    video = generate_avatar(kit.transformer, kit.vae, kit.encoders, kit.whisper, clip.reference, sound, clip.caption,
                            options, negative_prompt="", add_prompt_prefix=False, max_text_tokens=32,
                            face_mask=torch.from_numpy(clip.face_mask())[None], tile=False)
    return to_uint8(video)


SAMPLERS = {"recipe": generate_with_recipe, "plain": generate}


# -- the yardstick -------------------------------------------------------------------------------------


@dataclass
class ConditionSummary:
    condition: str
    n: int
    sync_mean: float
    sync_median: float
    offset_within_1: float       # share of clips whose best lag is in [-1, 1]
    identity: float
    still_outside: float
    still_inside: float
    openness_std: float          # mean over clips of the per-clip openness std (pixels): how much the mouth moves


def summarise(measures: Sequence[ClipMeasure], condition: str) -> ConditionSummary:
    ms = [m for m in measures if m.condition == condition]
    return ConditionSummary(
        condition, len(ms), float(np.mean([m.sync for m in ms])), float(np.median([m.sync for m in ms])),
        float(np.mean([abs(m.offset) <= 1 for m in ms])), float(np.mean([m.identity_kept for m in ms])),
        float(np.mean([m.still_outside for m in ms])), float(np.mean([m.still_inside for m in ms])),
        float(np.mean([m.openness_std for m in ms])))


MIN_PEAK = 0.3    # a pair needs a syllable in view: a clip that is all pause has no rhythm to follow


def heldout_pairs(pairs: int, seed: int = HELDOUT_SEED) -> List[TalkingClip]:
    """The first ``pairs`` held-out talking clips with at least one syllable (loudness peak >= 0.3) in view;
    about 1 clip in 20 falls entirely in a pause."""
    out, i = [], 0
    while len(out) < pairs:
        clip = talking_clip(seed, i)
        if clip.envelope.max() >= MIN_PEAK:
            out.append(clip)
        i += 1
    return out


def ground_truth_summary(clips: Sequence[TalkingClip]) -> ConditionSummary:
    """The same measures on the held-out clips themselves (the ceiling; checks the measurement)."""
    return summarise([measure(c.frames, c, "data", i) for i, c in enumerate(clips)], "data")


def evaluate_avatar(kit: ToyAvatarKit, pairs: int = 50, seed: int = HELDOUT_SEED, steps: int = 16,
                    cfg: float = 4.0, conditions: Sequence[str] = CONDITIONS, progress=None,
                    sampler: str = "recipe", shard: tuple = (0, 1)) -> dict:
    """Measure ``pairs`` held-out pairs under each condition; returns per-clip measures and summaries.
    ``shard`` (k, n): only pairs i with i % n == k (several processes share the work; :func:`merge` joins them)."""
    clips = heldout_pairs(pairs, seed)
    silence = np.zeros_like(clips[0].audio)
    measures: List[ClipMeasure] = []
    t0 = time.perf_counter()
    for i, clip in enumerate(clips):
        if i % shard[1] != shard[0]:
            continue
        for cond in conditions:
            audio = {"real": clip.audio, "shuffled": clips[(i + 1) % pairs].audio, "silent": silence}[cond]
            frames = SAMPLERS[sampler](kit, clip, audio, seed=i, steps=steps, cfg=cfg)
            measures.append(measure(frames, clip, cond, i))
        if progress is not None:
            progress(i + 1, pairs)
    seconds = (time.perf_counter() - t0) / max(1, len(measures))
    summaries = {c: summarise(measures, c) for c in conditions}
    return {"summaries": summaries, "measures": measures, "seconds_per_clip": seconds, "sampler": sampler,
            "ground_truth": ground_truth_summary([c for i, c in enumerate(clips) if i % shard[1] == shard[0]])}


def merge(parts: Sequence[dict]) -> dict:
    """One result from the shards' :func:`as_json` records (of the same run settings)."""
    measures = [ClipMeasure(**m) for p in parts for m in p["measures"]]
    conditions = list(parts[0]["summaries"])
    data = [ConditionSummary(**p["ground_truth"]) for p in parts]
    weights = [d.n for d in data]
    ground = ConditionSummary("data", sum(weights), *[
        float(np.average([getattr(d, f) for d in data], weights=weights)) for f in
        ("sync_mean", "sync_median", "offset_within_1", "identity", "still_outside", "still_inside", "openness_std")])
    return {"summaries": {c: summarise(measures, c) for c in conditions}, "measures": measures,
            "seconds_per_clip": float(np.mean([p["seconds_per_clip"] for p in parts])),
            "sampler": parts[0]["sampler"], "ground_truth": ground}


TARGETS = {"sync": 0.6, "sync_above_shuffled": 0.4, "offset_within_1": 0.8, "identity": 0.9}


def verdicts(summaries: Dict[str, ConditionSummary]) -> Dict[str, dict]:
    real = summaries["real"]
    rows = {"sync": real.sync_mean, "offset_within_1": real.offset_within_1, "identity": real.identity}
    if "shuffled" in summaries:
        rows["sync_above_shuffled"] = real.sync_mean - summaries["shuffled"].sync_mean
    return {k: {"value": round(v, 3), "target": TARGETS[k], "met": bool(v >= TARGETS[k])} for k, v in rows.items()}


def as_json(result: dict) -> dict:
    return {"summaries": {k: asdict(v) for k, v in result["summaries"].items()},
            "ground_truth": asdict(result["ground_truth"]),
            "verdicts": verdicts(result["summaries"]),
            "seconds_per_clip": round(result["seconds_per_clip"], 3), "sampler": result.get("sampler"),
            "measures": [asdict(m) for m in result["measures"]]}


def markdown(result: dict, command: str, minutes: float, threads: int) -> str:
    s, gt = result["summaries"], result["ground_truth"]
    v = verdicts(s)
    lines = [
        "# Toy avatar yardstick (lip-sync proxy on the toy world)",
        "",
        f"Written by `{command}` ({minutes:.1f} min on {threads} CPU thread(s)); shipped weights in "
        f"`hyvideo_core/toy/weights` (toy teacher backbone + `avatar.safetensors`, toy Whisper `whisper/`).",
        f"{s['real'].n} held-out pairs (the first talking clips of seed {HELDOUT_SEED} with a syllable in view; "
        f"never trained on: training uses seed 1401); per pair three clips from the same noise: the real sound, the next pair's sound "
        f"(shuffled), silence. 16 steps, shift 3, plain CFG 4 (caption + sound vs empty caption + zero windows), one "
        f"5-latent window; sampler: "
        f"{'the avatar recipe (generate_avatar)' if result.get('sampler') == 'recipe' else 'plain CFG (sample)'}.",
        "Sync = Pearson r of the shape's area per frame with the *real* sound's loudness at the frame times; offset = "
        "best lag in [-4, 4] frames; identity = colour and shape class found equal the reference's; stillness = "
        "mean |frame difference| (0-255) outside / inside the face box. See hyvideo_core/toy/avatar_eval.py.",
        "",
        "| sound | sync r (mean) | sync r (median) | best offset within ±1 | identity kept | stillness outside | "
        "inside | area std (px) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in [*s.values(), gt]:
        name = "ground-truth clips (ceiling)" if row.condition == "data" else row.condition
        lines.append(f"| {name} | {row.sync_mean:.3f} | {row.sync_median:.3f} | {100 * row.offset_within_1:.0f} % | "
                     f"{100 * row.identity:.0f} % | {row.still_outside:.2f} | {row.still_inside:.2f} | "
                     f"{row.openness_std:.1f} |")
    lines += ["", "## Targets (issue 14)", "", "| measure | value | target | met |", "|---|---|---|---|"]
    for k, r in v.items():
        lines.append(f"| {k} | {r['value']} | ≥ {r['target']} | {'yes' if r['met'] else 'no'} |")
    lines.append("")
    lines.append(f"Time per generated clip: {result['seconds_per_clip']:.2f} s.")
    return "\n".join(lines) + "\n"
