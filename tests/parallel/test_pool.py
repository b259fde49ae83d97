"""The warm worker pool (hyvideo_core/parallel/pool.py) without ComfyUI: real worker processes
(2, gloo on loopback), started once per test session and shared by these tests, as in a server."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from hyvideo_core.apps.latent_stages import SamplerOptions, sample_latents
from hyvideo_core.errors import InputError, Interrupted
from hyvideo_core.parallel import wire
from hyvideo_core.parallel.pool import PoolSettings, parallel_sample_latents, shared_pool
from hyvideo_core.runtime.options import StepCacheOptions, prepare_transformer
from hyvideo_core.text_encoders.api import PromptEmbeds

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "hyvideo_core" / "toy" / "weights" / "transformer.safetensors"   # 4 heads: Ulysses 2
TWO = PoolSettings(workers=2)


def tiny_demo() -> str:                                                          # 3 heads: ring 2
    from hyvideo_core.demo_models import ensure_demo_models

    return ensure_demo_models().transformer


def prompt(model, seed=0) -> PromptEmbeds:
    c = model.config
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(1, 9, dtype=torch.int64)
    mask[:, 6:] = 0
    return PromptEmbeds(torch.randn(1, 9, c.text_states_dim, generator=g), mask,
                        torch.randn(1, c.text_states_dim_2, generator=g))


def empty_latent(model, frames=3, size=8) -> torch.Tensor:
    return torch.zeros(1, model.config.in_channels, frames, size, size)


def both(model, options, settings=TWO, negative=None, callback=None):
    """(one process, the pool) for the same job."""
    kw = dict(scaling_factor=0.5, negative=negative)
    pos, lat = prompt(model), empty_latent(model)
    return (sample_latents(model, pos, lat, options, **kw),
            parallel_sample_latents(model, pos, lat, options, settings=settings, callback=callback, **kw))


CASES = {
    "ulysses2": (TOY, SamplerOptions(steps=3, shift=3.0, embedded_guidance=4.0, seed=5), TWO),
    "ring2": (None, SamplerOptions(steps=3, shift=7.0, embedded_guidance=6.0, seed=1), TWO),
    "cfg_parallel": (TOY, SamplerOptions(steps=3, shift=3.0, embedded_guidance=4.0, cfg_scale=3.0, seed=2),
                     PoolSettings(workers=2, cfg_parallel="on")),
    # threshold chosen so that some of the 3 steps are skipped: the workers must skip the same ones
    "ulysses2_teacache": (TOY, SamplerOptions(steps=3, shift=3.0, embedded_guidance=4.0, seed=5,
                                              step_cache=StepCacheOptions("teacache", 0.5)), TWO),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pool_sample_equals_one_process(case, caplog):
    path, options, settings = CASES[case]
    caplog.set_level("INFO", logger="hyvideo_core.runtime.options")
    model = prepare_transformer(path or tiny_demo())
    negative = prompt(model, seed=9) if options.cfg_scale > 1 else None
    events = []
    ref, out = both(model, options, settings, negative=negative, callback=events.append)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max() <= 1e-4
    assert [e.step for e in events] == [1, 2, 3] and {e.total for e in events} == {3}
    # previews: rank 0's current latents and x0 estimate in the model's (scaled) latent space
    assert events[-1].latents.shape == ref.shape and torch.allclose(events[-1].latents / 0.5, ref, atol=1e-4)
    assert events[-1].denoised is not None
    if options.step_cache is not None:     # the one-process run skipped a pass (so the workers had to agree)
        assert re.search(r"step cache \(teacache 0.5\): \d+ full / [1-9]\d* cached", caplog.text), caplog.text


def test_pool_stays_warm_and_reloads_only_when_the_model_file_changes(tmp_path):
    path = tmp_path / "model.safetensors"
    shutil.copy(TOY, path)
    model = prepare_transformer(path)
    options = SamplerOptions(steps=2, shift=3.0, embedded_guidance=4.0)
    ref, out = both(model, options)
    pool = shared_pool(2, "cpu")
    pids = pool.pids
    assert pool.last_run.reloaded == [True, True]
    both(model, options)
    assert shared_pool(2, "cpu") is pool and pool.pids == pids      # the same processes
    assert pool.last_run.reloaded == [False, False]                 # and the model they built
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))   # the file changed
    both(model, options)
    assert pool.last_run.reloaded == [True, True]
    assert (out - ref).abs().max() <= 1e-4


def test_lora_added_by_with_lora_is_rebuilt_in_the_workers(tmp_path):
    from hyvideo_core.finetune.lora import LoRAWeights, read_lora, save_lora, with_lora

    base = prepare_transformer(TOY)
    g = torch.Generator().manual_seed(4)
    layer = base.double_blocks[0].img_attn_qkv
    weights = {"double_blocks.0.img_attn_qkv": LoRAWeights(torch.randn(4, layer.in_features, generator=g) * 0.3,
                                                           torch.randn(layer.out_features, 4, generator=g) * 0.3, 4.0)}
    save_lora(weights, tmp_path / "lora.safetensors", model=base)
    model = with_lora(base, read_lora(tmp_path / "lora.safetensors", base), strength=0.8,
                      path=str(tmp_path / "lora.safetensors"))
    assert model.source.loras == ((str(tmp_path / "lora.safetensors"), 0.8),)
    options = SamplerOptions(steps=2, shift=3.0, embedded_guidance=4.0)
    ref, out = both(model, options)
    plain, _ = both(base, options)
    assert (out - ref).abs().max() <= 1e-4 and (ref - plain).abs().max() > 1e-3


def test_a_model_changed_in_memory_is_refused_not_replaced_by_the_file():
    model = prepare_transformer(TOY)
    with torch.no_grad():
        model.final_layer.linear.bias.add_(0.5)
    with pytest.raises(InputError, match="changed in memory after loading") as exc:
        both(model, SamplerOptions(steps=1, shift=3.0))
    assert "final_layer.linear.bias differs" in str(exc.value)


def test_cancel_stops_every_worker_after_the_same_step():
    model = prepare_transformer(TOY)
    seen = []

    def cancel_at_2(event):
        seen.append(event.step)
        if event.step == 2:
            raise Interrupted("cancelled by the user")

    with pytest.raises(Interrupted, match="cancelled by the user"):
        parallel_sample_latents(model, prompt(model), empty_latent(model), SamplerOptions(steps=40, shift=3.0),
                                settings=TWO, scaling_factor=0.5, callback=cancel_at_2)
    assert seen == [1, 2]
    report = shared_pool(2, "cpu").last_run
    assert report.outcome == ["interrupted", "interrupted"] and report.steps == [2, 2]
    ref, out = both(model, SamplerOptions(steps=2, shift=3.0))        # the pool still works
    assert (out - ref).abs().max() <= 1e-4


def test_messages_carry_tensors_of_every_dtype_and_shape():
    import socket
    from multiprocessing.connection import Connection

    a, b = socket.socketpair()
    left, right = Connection(a.detach()), Connection(b.detach())
    tensors = {"f": torch.randn(2, 3), "bf": torch.randn(4).bfloat16(), "mask": torch.tensor([True, False]),
               "i": torch.arange(6).reshape(2, 3)[:, 1:], "empty": torch.zeros(0, 5), "scalar": torch.tensor(3.5)}
    wire.send(left, "job", {"steps": 3, "name": "x"}, dict(tensors, missing=None))
    msg = wire.recv(right)
    assert msg.kind == "job" and msg.fields == {"steps": 3, "name": "x"} and set(msg.tensors) == set(tensors)
    for name, t in tensors.items():
        assert msg.tensors[name].dtype == t.dtype and torch.equal(msg.tensors[name], t), name


def test_models_without_a_source_are_refused_before_any_worker_starts():
    model = prepare_transformer(TOY)
    del model.source
    with pytest.raises(InputError, match="not loaded by the transformer loader"):
        parallel_sample_latents(model, prompt(model), empty_latent(model), SamplerOptions(steps=2), settings=TWO,
                                scaling_factor=0.5)
