"""The shipped toy model, scored by the yardstick on held-out prompts.

These thresholds guard against regressions of the weights in hyvideo_core/toy/weights. Measured with
`python -m hyvideo_core.toy report --prompts 100`: student 83.2 % adherence over 100 held-out prompts
(teacher 85.4 %), VAE 30.12 dB. The toy-world issue's adherence target (>= 90 %) is not reached: shape is
right in only ~34 % of clips because the VAE rounds the corners of 19-pixel shapes.
"""
import torch

from hyvideo_core.toy.evaluate import chance_adherence, score_clip, summarise
from hyvideo_core.toy.model import WEIGHTS, evaluation_prompts, generate, load_toy, vae_psnr


def test_shipped_toy_model_follows_held_out_prompts():
    transformer, vae, encoders = load_toy(WEIGHTS)
    prompts = evaluation_prompts(20)
    with torch.no_grad():
        scores = [score_clip(generate(transformer, vae, encoders, p, seed=i), p) for i, p in enumerate(prompts)]
    s = summarise(scores)
    print(s.lines())
    assert s.adherence >= 0.75 > chance_adherence() + 0.4, s.lines()
    for attribute in ("colour", "direction", "speed", "background"):
        assert s.per_attribute[attribute] >= 0.8, s.lines()


def test_shipped_toy_vae_reconstructs_held_out_clips_at_30_db():
    _, vae, _ = load_toy(WEIGHTS)
    assert vae_psnr(vae) >= 30.0
