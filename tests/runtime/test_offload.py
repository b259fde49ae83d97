"""Block swap: identical outputs, the planner, and the memory it saves (measured on CPU with
the disk store in fresh subprocesses)."""
import os
import sys

import pytest
import torch

from hyvideo_core import load_transformer
from hyvideo_core.runtime.caching import apply_teacache
from hyvideo_core.runtime.offload import (OffloadPlan, enable_block_swap, estimate_activation_bytes, module_bytes,
                                          plan_block_swap, plan_for)
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_transformer, dit_inputs, official_state_dict, save

CFG = VARIANTS["tiny"].transformer
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("swap") / "tiny.safetensors"
    return load_transformer(save(official_state_dict(diffusers_transformer(CFG)), str(path)))


def _forward(model):
    with torch.no_grad():
        return model(*dit_inputs(CFG))


@pytest.mark.parametrize("store", ["cpu", "disk"])
def test_block_swap_output_identical(model, store):
    reference = _forward(model)
    swap = enable_block_swap(model, (1, 2), device="cpu", store=store)
    try:
        assert torch.equal(_forward(model), reference)
        assert torch.equal(_forward(model), reference)
        assert swap.loads == 2 * 3
        if store == "disk":   # swapped blocks hold no weights between uses
            assert all(p.numel() == 0 for p in model.single_blocks[1].parameters())
    finally:
        swap.remove()
    assert torch.equal(_forward(model), reference)


def test_block_swap_with_teacache_and_gguf(tmp_path, model):
    from hyvideo_core.quant.gguf import GGUFLinear, write_gguf

    reference = _forward(model)
    cache = apply_teacache(model, threshold=0.0)
    swap = enable_block_swap(model, (2, 2), device="cpu", store="disk")
    try:
        assert torch.equal(_forward(model), reference)
    finally:
        swap.remove()
        cache.remove()
    state = {k: v.to(torch.bfloat16) for k, v in official_state_dict(diffusers_transformer(CFG)).items()}
    gguf_model = load_transformer(write_gguf(state, tmp_path / "m.gguf", qtype="Q8_0"))
    assert any(isinstance(m, GGUFLinear) for m in gguf_model.double_blocks.modules())
    ref = _forward(gguf_model)
    swap = enable_block_swap(gguf_model, (2, 2), device="cpu", store="disk")
    assert torch.equal(_forward(gguf_model), ref)
    swap.remove()


def test_planner_picks_fewest_blocks_that_fit(model):
    full = plan_for(model, 0, 0)
    assert full.predicted_peak_bytes == module_bytes(model) and full.swapped_bytes == 0
    double = module_bytes(model.double_blocks[0])
    act = 1000
    plan = plan_block_swap(model, budget_bytes=full.predicted_peak_bytes + act - 1, activation_bytes=act,
                           prefetch=False)
    # one swapped block saves nothing (it comes back while in use): two are needed
    assert (plan.double_swap, plan.single_swap) == (2, 0) and plan.fits
    assert plan.predicted_peak_bytes == full.predicted_peak_bytes - 2 * double + double + act
    single = module_bytes(model.single_blocks[0])
    plan = plan_block_swap(model, budget_bytes=full.predicted_peak_bytes - double - single // 2, prefetch=False)
    assert (plan.double_swap, plan.single_swap) == (2, 1) and plan.fits
    hopeless = plan_block_swap(model, budget_bytes=1)
    assert not hopeless.fits and (hopeless.double_swap, hopeless.single_swap) == (2, 2)
    assert "DOES NOT FIT" in hopeless.describe()
    assert plan_for(model, 2, 2, prefetch=True).in_flight_bytes == 2 * double


def test_activation_estimate_scales_with_tokens():
    real = VARIANTS["t2v-720p-cfgdistill"].transformer
    small = estimate_activation_bytes(real, (16, 68, 120))
    big = estimate_activation_bytes(real, (33, 90, 160))
    assert big > 2 * small > 0
    assert 5 * 2 ** 30 < big < 30 * 2 ** 30


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS via /proc (Linux)")
def test_block_swap_lowers_peak_rss_by_the_planned_amount():
    from memprobe import run_probe

    full = run_probe("blockswap", "--hidden", "384", "--double", "3", "--single", "6", "--swap", "0", "0")
    swap = run_probe("blockswap", "--hidden", "384", "--double", "3", "--single", "6", "--swap", "2", "5")
    predicted = full["predicted_peak"] - swap["predicted_peak"]
    measured = full["peak"] - swap["peak"]
    assert predicted > 40 * 2 ** 20
    assert abs(measured - predicted) <= 0.15 * predicted, (measured / 2 ** 20, predicted / 2 ** 20)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefetch_on_cuda_identical(model):
    model.to("cuda")
    reference = _forward(model)
    swap = enable_block_swap(model, (2, 2), device="cuda", store="cpu", prefetch=True)
    assert torch.equal(_forward(model), reference)
    swap.remove()
    model.to("cpu")
