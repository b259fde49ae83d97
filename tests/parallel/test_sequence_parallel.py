"""Sequence parallel (Ulysses, ring, Ulysses × ring) and CFG-parallel in real gloo process groups
on loopback equal the single-process forward / sample (float32, 1e-5)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.parallel import ParallelConfig
from hyvideo_core.variants import VARIANTS
from tests.parallel.ranks import run_ranks

# 4 heads, so Ulysses 2 and 4 divide them; 3 heads (the tiny variant) for the ring fallback
CFG4 = replace(VARIANTS["tiny"].transformer, hidden_size=64, heads_num=4)
CFG3 = VARIANTS["tiny"].transformer


def _model(cfg):
    from hyvideo_core.model import HunyuanVideoTransformer

    torch.manual_seed(0)
    model = HunyuanVideoTransformer(cfg).eval().requires_grad_(False)
    with torch.no_grad():   # adaLN and final projections start near zero in real checkpoints; make them matter
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.02)
    return model


def _inputs(cfg, latent, batch=2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, cfg.in_channels, *latent, generator=g)
    text = torch.randn(batch, 7, cfg.text_states_dim, generator=g)
    mask = torch.ones(batch, 7, dtype=torch.int64)
    mask[-1, 5:] = 0
    pooled = torch.randn(batch, cfg.text_states_dim_2, generator=g)
    return x, torch.tensor([700.0, 300.0][:batch]), text, mask, pooled, torch.full((batch,), 6000.0)


def _forward(model, cfg, latent, token_replace):
    with torch.no_grad():
        return model(*_inputs(cfg, latent), token_replace=token_replace)


def _sample(model, cfg, latent, guidance=None, step_cache=None, steps=None):
    from hyvideo_core import sample

    x, _, text, mask, pooled, _ = _inputs(cfg, latent, batch=1)
    neg = (torch.zeros_like(text), mask, torch.zeros_like(pooled))
    steps = steps or (8 if step_cache else 3)
    return sample(model, x, text, mask, pooled, steps=steps, shift=7.0, embedded_guidance=6.0,
                  cfg_scale=3.0, negative=neg, guidance=guidance, step_cache=step_cache)


def _cache_options(kind):
    from hyvideo_core.runtime.options import StepCacheOptions

    return StepCacheOptions(kind, {"teacache": 0.2, "first_block_cache": 0.5}[kind])   # both skip some steps


AVATAR_FIXTURE = Path(__file__).resolve().parents[1] / "avatar" / "golden_avatar.safetensors"


def _avatar_golden():
    from safetensors.torch import load_file

    return load_file(str(AVATAR_FIXTURE))


def _avatar_model():
    """The tiny avatar model with the official-code fixture's weights (reference frame, adapters)."""
    from hyvideo_core.apps.avatar import AvatarExtension
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.model.extension import install_extension

    spec = VARIANTS["tiny-avatar"]
    model = HunyuanVideoTransformer(spec.transformer).eval().requires_grad_(False)
    install_extension(model, AvatarExtension(spec.transformer, spec.app.config))
    golden = _avatar_golden()
    model.load_state_dict({k[len("state."):]: v for k, v in golden.items() if k.startswith("state.")})
    return model


def _avatar_forward(model):
    golden = _avatar_golden()
    i = {k.rsplit(".", 1)[1]: v for k, v in golden.items() if k.startswith("cfg_pair.input.")}
    extras = dict(ref_latents=i["ref_latents"], audio_windows=i["audio_prompts"], face_mask=i["face_mask"],
                  motion_exp=i["motion_exp"], motion_pose=i["motion_pose"], fps=i["fps"])
    with torch.no_grad():
        return model(i["x"], i["t"], i["text_states"], i["text_mask"], i["text_states_2"], extras=extras)


def worker(rank, world, jobs):
    """Every job of one world size in one group of processes (process start-up dominates)."""
    from hyvideo_core.parallel import parallelize, resident_parameter_bytes

    out = {}
    for name, (kind, cfg, config, latent, token_replace) in jobs.items():
        if kind == "avatar":
            model = _avatar_model()
            parallelize(model, config)
            out[name] = _avatar_forward(model)
            continue
        model = _model(cfg)
        run = parallelize(model, config)
        if kind == "forward":
            out[name] = _forward(model, cfg, latent, token_replace)
        else:
            cache = _cache_options(kind.split(":")[1]) if ":" in kind else None
            out[name] = _sample(model, cfg, latent, guidance=run.guidance, step_cache=cache)
        out[f"{name}-resident"] = torch.tensor([resident_parameter_bytes(model)])
    return out


LATENT = (3, 6, 10)      # 45 image tokens: divides by neither 2 nor 4, so the padding path runs
CASES = {
    "ulysses2": (CFG4, ParallelConfig(ulysses=2), 2),
    "ulysses4": (CFG4, ParallelConfig(ulysses=4), 4),
    "ring2": (CFG3, ParallelConfig(ring=2), 2),
    "ulysses2_ring2": (CFG4, ParallelConfig(ulysses=2, ring=2), 4),
    "ulysses2_sharded": (CFG4, ParallelConfig(ulysses=2, shard_weights=True), 2),
}
MODES = {"t2v": False, "i2v_token_replace": True}
CFG_SAMPLE = ("sample", CFG4, ParallelConfig(ulysses=2, cfg=2), (3, 8, 8), False)
CACHES = ("teacache", "first_block_cache")
AVATAR_CASES = {"avatar-ulysses2": ParallelConfig(ulysses=2), "avatar-ring2": ParallelConfig(ring=2)}


@pytest.fixture(scope="module")
def parallel_results(tmp_path_factory):
    results = {}
    for world in (2, 4):
        jobs = {f"{case}-{mode}": ("forward", cfg, config, LATENT, tr)
                for case, (cfg, config, w) in CASES.items() if w == world for mode, tr in MODES.items()}
        if world == 4:
            jobs["ulysses2_cfg2-sample"] = CFG_SAMPLE
        if world == 2:
            for name, config in AVATAR_CASES.items():
                jobs[name] = ("avatar", None, config, None, False)
            for kind in CACHES:
                jobs[f"ulysses2-{kind}"] = (f"sample:{kind}", CFG4, ParallelConfig(ulysses=2), LATENT, False)
        results[world] = run_ranks(worker, world, tmp_path_factory.mktemp(f"world{world}"), jobs)
    return results


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_sequence_parallel_forward_equals_one_process(parallel_results, case, mode):
    cfg, _, world = CASES[case]
    expected = _forward(_model(cfg), cfg, LATENT, MODES[mode])
    for rank, got in enumerate(parallel_results[world]):
        torch.testing.assert_close(got[f"{case}-{mode}"], expected, atol=1e-5, rtol=1e-5, msg=f"rank {rank}")


def test_ulysses_with_cfg_parallel_sample_equals_one_process(parallel_results):
    _, cfg, _, latent, _ = CFG_SAMPLE
    expected = _sample(_model(cfg), cfg, latent)
    outs = [r["ulysses2_cfg2-sample"] for r in parallel_results[4]]
    for got in outs:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(o, outs[0]) for o in outs)   # every rank holds the same latents


@pytest.mark.parametrize("case", AVATAR_CASES)
def test_avatar_model_under_sequence_parallel_equals_one_process(parallel_results, case):
    """Reference frame, adapters over sharded frames, face mask, motion/fps (the official-code fixture's inputs)."""
    expected = _avatar_forward(_avatar_model())
    for rank, got in enumerate(parallel_results[2]):
        torch.testing.assert_close(got[case], expected, atol=1e-5, rtol=1e-5, msg=f"rank {rank}")


@pytest.mark.parametrize("kind", CACHES)
def test_step_caches_take_one_decision_on_every_rank(parallel_results, kind):
    """Each rank sees a shard of the tokens; the caches add their change measure up across ranks, so
    the ranks skip the same steps as one process (a different decision would deadlock them)."""
    from hyvideo_core.runtime.options import step_caching

    model = _model(CFG4)
    expected = _sample(model, CFG4, LATENT, step_cache=_cache_options(kind))
    for got in parallel_results[2]:
        torch.testing.assert_close(got[f"ulysses2-{kind}"], expected, atol=1e-5, rtol=1e-5)
    with step_caching(model, _cache_options(kind), 8) as handle:
        _sample(model, CFG4, LATENT, steps=8)
    assert 0 < handle.stats.cached < handle.stats.total   # the threshold really skips some steps


def test_sharded_weights_keep_about_half_the_parameters_per_rank(parallel_results):
    from hyvideo_core.parallel import parameter_bytes

    whole = parameter_bytes(_model(CFG4))
    for rank, got in enumerate(parallel_results[2]):
        resident = int(got["ulysses2_sharded-t2v-resident"])
        assert resident <= 0.55 * whole, f"rank {rank}: {resident} of {whole} bytes resident"
        assert int(got["ulysses2-t2v-resident"]) == whole        # unsharded runs keep everything


def test_ulysses_degree_that_does_not_divide_heads_names_the_sizes_that_work():
    with pytest.raises(InputError, match=r"Ulysses degrees that work: \[1, 3\]"):
        ParallelConfig(ulysses=2).check(heads=3)
    assert ParallelConfig.auto(4, heads=3) == ParallelConfig(ulysses=1, ring=4)
    assert ParallelConfig.auto(8, heads=24, cfg=True) == ParallelConfig(ulysses=4, ring=1, cfg=2)
