"""Memory options applied by prepare_transformer, and step caching as a sample() option."""
import pytest
import torch

from hyvideo_core import sample
from hyvideo_core.errors import InputError
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.runtime.options import MemoryOptions, StepCacheOptions, prepare_transformer
from hyvideo_core.variants import VARIANTS
from tests.reference_models import dit_inputs, save


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    torch.manual_seed(0)
    return save(HunyuanVideoTransformer(VARIANTS["tiny"].transformer).state_dict(),
                str(tmp_path_factory.mktemp("opts") / "tiny.safetensors"))


def _run(model, step_cache=None, steps=6):
    _, _, text, mask, pooled, _ = dit_inputs(model.config)
    noise = torch.randn(2, model.config.in_channels, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = sample(model, noise, text, mask, pooled, steps=steps, shift=7.0, embedded_guidance=6.0,
                     step_cache=step_cache)
    finally:
        handle.remove()
    return out, len(calls)


def test_step_cache_is_installed_for_one_run_only(tiny_file):
    model = prepare_transformer(tiny_file)
    plain, n = _run(model)
    exact, _ = _run(model, StepCacheOptions("teacache", 0.0))
    assert torch.equal(plain, exact)                     # threshold 0: bit-identical
    cached, _ = _run(model, StepCacheOptions("first_block_cache", 10.0))
    assert model.block_passes == []                    # removed after the run
    assert not torch.equal(plain, cached) and cached.shape == plain.shape
    again, _ = _run(model)
    assert torch.equal(plain, again)


def test_fp8_and_disk_block_swap_keep_the_output(tiny_file):
    reference = prepare_transformer(tiny_file)
    inputs = dit_inputs(reference.config)
    swapped = prepare_transformer(tiny_file, memory=MemoryOptions(block_swap="manual", swap_double=1, swap_single=2,
                                                                   store="disk"))
    assert swapped.block_swap.plan.double_swap == 1 and swapped.block_swap.plan.single_swap == 2
    quantized = prepare_transformer(tiny_file, memory=MemoryOptions(quantize="fp8_e4m3fn"))
    assert quantized.double_blocks[0].img_attn_qkv.weight.dtype == torch.float8_e4m3fn
    with torch.no_grad():
        expected = reference(*inputs)
        torch.testing.assert_close(swapped(*inputs), expected, atol=0, rtol=0)
        err = (quantized(*inputs) - expected).abs().max() / expected.abs().max()
    assert 0 < err < 0.05


def test_cpu_block_swap_to_ram_is_skipped_and_bad_options_are_clear(tiny_file, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="hyvideo_core.runtime.options"):
        model = prepare_transformer(tiny_file, memory=MemoryOptions(block_swap="auto"))
    assert not hasattr(model, "block_swap") and "block swap off" in caplog.text
    with pytest.raises(InputError, match="block_swap must be one of"):
        MemoryOptions(block_swap="sometimes")
    with pytest.raises(InputError, match="teacache"):
        StepCacheOptions("magic")
