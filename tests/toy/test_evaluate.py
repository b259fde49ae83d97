"""The yardstick scores ground-truth clips ~100% and shuffled prompts ~chance."""
import random

import numpy as np
import torch

from hyvideo_core.toy.evaluate import chance_adherence, score_clip, summarise
from hyvideo_core.toy.world import clip_for_prompt, heldout_prompts, to_tensor


def _prompts(n):
    held = heldout_prompts()
    return [held[i] for i in np.linspace(0, len(held) - 1, n).astype(int)]


def test_ground_truth_clips_score_100_percent():
    scores = []
    for i, p in enumerate(_prompts(40)):
        clip = clip_for_prompt(p, seed=i)
        video = clip.frames if i % 2 else clip.tensor()[None]    # uint8 and [-1, 1] tensor inputs
        scores.append(score_clip(video, p))
    s = summarise(scores)
    assert s.adherence >= 0.99, [x.predicted for x in scores if not x.all_correct]
    assert s.all_correct >= 0.97


def test_other_geometries_score_100_percent():
    for i, (p, geo) in enumerate(zip(_prompts(6), [(33, 128, 96), (21, 64, 128), (33, 128, 128)] * 2)):
        clip = clip_for_prompt(p, seed=100 + i, frames=geo[0], height=geo[1], width=geo[2])
        assert score_clip(clip.frames, p).all_correct, (p, geo)


def test_shuffled_prompts_score_near_chance():
    prompts = _prompts(60)
    rng = random.Random(0)
    scores = [score_clip(clip_for_prompt(p, seed=i).frames, rng.choice(prompts)) for i, p in enumerate(prompts)]
    s = summarise(scores)
    assert abs(s.adherence - chance_adherence()) < 0.12, s
    assert s.all_correct < 0.1


def test_blank_or_noise_clip_scores_low_without_crashing():
    p = heldout_prompts()[0]
    blank = torch.zeros(3, 17, 64, 64)
    s = score_clip(blank, p)
    assert s.predicted["shape"] is None and s.predicted["direction"] is None
    noise = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    assert score_clip(noise, p).adherence <= 0.6
    still = to_tensor(np.repeat(clip_for_prompt(p).frames[:1], 17, axis=0))
    assert score_clip(still, p).predicted["direction"] is None


def test_new_concept_ground_truth_clips_score_100_percent():
    from hyvideo_core.toy.world import concept_prompts

    prompts = concept_prompts("orange", "heldout")[:12]
    scores = [score_clip(clip_for_prompt(p, seed=i).frames, p) for i, p in enumerate(prompts)]
    assert all(s.predicted["background"] == "orange" for s in scores)
    assert summarise(scores).adherence >= 0.98


def test_shape_survives_a_blur_like_the_vae():
    """The shape vocabulary differs in outline, not in corners: a 2-pixel Gaussian blur (about what
    the toy VAE's round trip does to an edge) keeps every shape recognisable."""
    from scipy import ndimage

    for i, p in enumerate(_prompts(24)):
        frames = clip_for_prompt(p, seed=i).frames.astype(np.float32)
        blurred = np.clip(np.rint(ndimage.gaussian_filter(frames, (0, 2.0, 2.0, 0))), 0, 255).astype(np.uint8)
        assert score_clip(blurred, p).hits["shape"], p
