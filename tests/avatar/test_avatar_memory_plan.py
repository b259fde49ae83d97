"""The block-swap planner on the full-size avatar model (meta device, fp8 block weights): 704×768×129
with its reference frame and 831 LLaVA tokens fits a 24 GiB card with 1.5 GiB kept for the CUDA context."""
from __future__ import annotations

import torch
from torch import nn

from hyvideo_core.apps.avatar import AvatarExtension
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.model.block_lists import all_blocks
from hyvideo_core.model.extension import install_extension
from hyvideo_core.runtime.offload import estimate_activation_bytes, plan_block_swap, plan_for
from hyvideo_core.variants import VARIANTS

GiB = 2 ** 30
LATENT = (33 + 1, 704 // 8, 768 // 8)   # 129 frames -> 33 latent frames, plus the prepended reference frame
TEXT_TOKENS = 831                         # the avatar's LLaVA conditioning (prompt + 575 image tokens)


def avatar_fp8_on_meta():
    """bf16 model whose block Linear layers are stored as the fp8 pass stores them (e4m3fn weight +
    a float32 scale): the planner only reads sizes, so the meta device is enough."""
    spec = VARIANTS["avatar"]
    with torch.device("meta"):
        model = HunyuanVideoTransformer(spec.transformer)
        install_extension(model, AvatarExtension(spec.transformer, spec.app.config))
        model.to(torch.bfloat16)
        for block in all_blocks(model):
            for layer in [m for m in block.modules() if isinstance(m, nn.Linear)]:
                layer.weight = nn.Parameter(torch.empty(layer.weight.shape, dtype=torch.float8_e4m3fn),
                                            requires_grad=False)
                layer.register_buffer("scale_weight", torch.empty((), dtype=torch.float32))
    return spec, model


def test_avatar_704x768x129_with_fp8_and_block_swap_fits_24_gib():
    spec, model = avatar_fp8_on_meta()
    act = estimate_activation_bytes(spec.transformer, LATENT, text_tokens=TEXT_TOKENS)
    whole = plan_for(model, 0, 0, act)
    assert whole.predicted_peak_bytes > 22.5 * GiB            # without swapping it does not fit
    plan = plan_block_swap(model, int(22.5 * GiB), act)
    assert plan.fits and plan.predicted_peak_bytes <= 22.5 * GiB, plan.describe()
    assert (plan.double_swap, plan.single_swap) == (7, 0), plan.describe()
