"""Memory passes on the Foley DiT: fp8 covers the block Conv1d weights (most of XXL), block swap
runs through the declared block lists, and the planner's predicted peak for XXL on a 10 s clip with
fp8 + block swap fits an 8 GB card (meta device: only shapes and dtypes are read)."""
import copy

import pytest
import torch
from torch import nn

from hyvideo_core.quant.cast import cast_weights_on_the_fly
from hyvideo_core.quant.fp8 import dequantize_fp8, quantize_fp8
from hyvideo_core.quant.passes import quantize_transformer
from hyvideo_core.runtime.offload import GiB
from hyvideo_core.runtime.options import MemoryOptions
from hyvideo_core.model.block_lists import all_blocks
from hyvideo_core.v2a.audio_vae.model import DacConfig, DacVae
from hyvideo_core.v2a.config import get_foley_variant
from hyvideo_core.v2a.layers import TokenConv1d
from hyvideo_core.v2a.memory import estimate_foley_activation_bytes, plan_foley_memory, prepare_foley
from hyvideo_core.v2a.model import HunyuanVideoFoley
from hyvideo_core.runtime.offload import module_bytes

GB = 10 ** 9
CARD_BYTES = 8 * GB
CUDA_CONTEXT = int(1.5 * GiB)     # context + allocator slack kept free on the card
RECIPE_BUDGET_GIB = 4.0           # README "Foley XXL in 8 GB": weights_budget_gb
TINY = get_foley_variant("foley-tiny").model


def xxl_on_meta():
    with torch.device("meta"):
        return HunyuanVideoFoley(get_foley_variant("foley-xxl").model).to(torch.bfloat16)


def test_xxl_ten_seconds_with_fp8_and_block_swap_is_planned_within_8_gb():
    model = xxl_on_meta()
    bf16_whole = plan_foley_memory(model, 10.0)
    assert bf16_whole.predicted_peak_bytes + CUDA_CONTEXT > CARD_BYTES        # as released it needs more
    quantize_transformer(model)
    block_weights = [m.weight for b in all_blocks(model) for m in b.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    assert block_weights and all(w.dtype == torch.float8_e4m3fn for w in block_weights)
    plan = plan_foley_memory(model, 10.0, int(RECIPE_BUDGET_GIB * GiB))
    assert plan.fits and plan.double_swap + plan.single_swap > 0, plan.describe()
    # the feature encoders ran before and are unloaded; the DAC decoder comes after the DiT is offloaded,
    # so the sampling peak is the DiT's plan, and the decoder weights alone would fit beside it anyway
    with torch.device("meta"):
        dac = DacVae(DacConfig(encoder_dim=128, encoder_rates=(2, 3, 4, 5, 8), latent_dim=128, decoder_dim=2048,
                               decoder_rates=(8, 5, 4, 3, 2), sample_rate=48000))
    assert plan.predicted_peak_bytes + module_bytes(dac.decoder) + CUDA_CONTEXT <= CARD_BYTES, plan.describe()


def test_fp8_without_the_convolutions_would_leave_most_of_xxl_in_bf16():
    model = xxl_on_meta()
    conv = sum(m.weight.numel() for b in all_blocks(model) for m in b.modules() if isinstance(m, nn.Conv1d))
    linear = sum(m.weight.numel() for b in all_blocks(model) for m in b.modules() if isinstance(m, nn.Linear))
    assert conv > 0.4 * (conv + linear)


def test_activation_estimate_grows_with_the_clip_and_counts_the_score_matrix():
    short, long = (estimate_foley_activation_bytes(TINY, s) for s in (5.0, 10.0))
    assert long > 1.9 * short
    assert estimate_foley_activation_bytes(TINY, 10.0, materialised_scores=True) > long


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = HunyuanVideoFoley(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def inputs(frames=40):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, TINY.audio_latent_dim, frames, generator=g), torch.tensor([500.0]),
            torch.randn(1, 6, TINY.visual_dim, generator=g), torch.randn(1, 5, TINY.text_dim, generator=g),
            torch.randn(1, 16, TINY.sync_dim, generator=g))


def dequantised_copy(model):
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for block in all_blocks(ref):
            for m in block.modules():
                if isinstance(m, (nn.Linear, nn.Conv1d)):
                    m.weight.copy_(dequantize_fp8(*quantize_fp8(m.weight)))
    return ref


def test_fp8_convolutions_compute_with_their_dequantised_weights(tiny):
    q = copy.deepcopy(tiny)
    counts = quantize_transformer(q)
    convs = [m for b in all_blocks(q) for m in b.modules() if isinstance(m, nn.Conv1d)]
    assert convs and all(m.weight.dtype == torch.float8_e4m3fn for m in convs)
    assert all(isinstance(m, TokenConv1d) for m in convs)          # their channels-last forward is kept
    assert counts["quantized"] == len(convs) + sum(isinstance(m, nn.Linear) for b in all_blocks(q) for m in b.modules())
    with torch.no_grad():
        out, expected, full = q(*inputs()), dequantised_copy(tiny)(*inputs()), tiny(*inputs())
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, full, atol=1e-5)                 # the weights really are fp8


def test_casting_pass_after_fp8_keeps_the_fp8_convolutions(tiny):
    """Regression: the compute-dtype pass used to turn every non-Linear weight into the compute dtype,
    so an fp8 conv weight became float32 fp8 values and was then scaled a second time."""
    q = copy.deepcopy(tiny)
    quantize_transformer(q)
    with torch.no_grad():
        before = q(*inputs())
        cast_weights_on_the_fly(q, torch.float32)
        after = q(*inputs())
    assert q.single_blocks[0].linear1.weight.dtype == torch.float8_e4m3fn
    torch.testing.assert_close(after, before)


def test_prepare_foley_with_fp8_and_disk_block_swap_gives_the_same_velocity(tiny, tmp_path):
    path = tmp_path / "hunyuanvideo_foley_tiny.pth"
    torch.save(tiny.state_dict(), path)
    fp8 = prepare_foley(path, memory=MemoryOptions(quantize="fp8_e4m3fn"))
    swapped = prepare_foley(path, memory=MemoryOptions(quantize="fp8_e4m3fn", block_swap="manual", swap_double=1,
                                                       swap_single=2, store="disk"))
    try:
        assert swapped.block_swap.plan.double_swap == 1 and swapped.block_swap.plan.single_swap == 2
        with torch.no_grad():
            torch.testing.assert_close(swapped(*inputs()), fp8(*inputs()), atol=0, rtol=0)
        assert swapped.block_swap.loads >= 3                       # the swapped blocks were read back from disk
    finally:
        swapped.block_swap.remove()
