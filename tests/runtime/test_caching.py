"""Step caching passes (TeaCache, First-Block-Cache) on the tiny random model."""
import pytest
import torch

from hyvideo_core import load_transformer, sample
from hyvideo_core.runtime.caching import (TEACACHE_HUNYUAN_COEFFICIENTS, apply_first_block_cache, apply_teacache,
                                          psnr)
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_transformer, dit_inputs, official_state_dict, save

CFG = VARIANTS["tiny"].transformer
STEPS = 12
PASSES = {"teacache": (apply_teacache, 0.3), "fbcache": (apply_first_block_cache, 0.3)}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "tiny.safetensors"
    return load_transformer(save(official_state_dict(diffusers_transformer(CFG)), str(path)))


def _run(model, cfg_scale=1.0):
    _, _, text, mask, pooled, _ = dit_inputs(CFG, batch=1)
    noise = torch.randn(1, CFG.in_channels, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    negative = (torch.zeros_like(text), mask, torch.zeros_like(pooled)) if cfg_scale > 1 else None
    return sample(model, noise, text, mask, pooled, steps=STEPS, shift=7.0, embedded_guidance=6.0,
                  cfg_scale=cfg_scale, negative=negative)


def test_published_teacache_coefficients():
    assert TEACACHE_HUNYUAN_COEFFICIENTS == (7.33226126e+02, -4.01131952e+02, 6.75869174e+01,
                                             -3.14987800e+00, 9.61237896e-02)


@pytest.mark.parametrize("kind", PASSES)
def test_cache_off_is_bit_identical(model, kind):
    reference = _run(model)
    cache = PASSES[kind][0](model, threshold=0.0)
    try:
        assert torch.equal(_run(model), reference)
        assert (cache.stats.full, cache.stats.cached) == (STEPS, 0)
    finally:
        cache.remove()
    assert model.block_passes == []
    assert torch.equal(_run(model), reference)


@pytest.mark.parametrize("kind", PASSES)
def test_cache_skips_steps_resets_per_run_and_stays_close(model, kind):
    reference = _run(model)
    apply, threshold = PASSES[kind]
    cache = apply(model, threshold=threshold, num_steps=STEPS)
    try:
        first = _run(model)
        stats = (cache.stats.full, cache.stats.cached)
        assert cache.stats.total == STEPS and cache.stats.cached > 0
        assert cache.stats.decisions[0] and cache.stats.decisions[-1]  # first and last step compute
        second = _run(model)                                            # new run: state reset
        assert (cache.stats.full, cache.stats.cached) == stats and torch.equal(first, second)
    finally:
        cache.remove()
    assert psnr(first, reference) > 30


def test_true_cfg_keeps_one_state_per_branch(model):
    cache = apply_teacache(model, threshold=0.3, num_steps=STEPS)
    try:
        _run(model, cfg_scale=3.0)
        assert cache.stats.total == 2 * STEPS
        assert cache.stats.decisions[:2] == [True, True]   # both branches compute their first step
    finally:
        cache.remove()
