"""Memory passes for the Foley DiT: fp8 block weights and block swap, through the model's declared
block lists (``triple_blocks``, ``single_blocks``), plus the working-set estimate the block-swap
planner needs to predict the peak.

    model = prepare_foley("hunyuanvideo_foley.pth", "cuda",
                          memory=MemoryOptions(quantize="fp8_e4m3fn", block_swap="auto", weights_budget_gb=6))

Most of XXL's weights are the single blocks' kernel-3 convolutions (``linear1``, ``linear2.w1..3``:
~64 M of their ~85 M parameters each), so the fp8 pass stores Conv1d block weights too.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import torch

from ..runtime.offload import OffloadPlan, plan_block_swap, plan_for
from ..runtime.options import MemoryOptions, load_with_memory_passes
from .config import FoleyConfig
from .features.clap import TEXT_LENGTH
from .features.siglip import SIGLIP_FPS
from .load import load_foley

log = logging.getLogger(__name__)



def estimate_foley_activation_bytes(config: FoleyConfig, seconds: float, *, text_tokens: int = TEXT_LENGTH,
                                    batch: int = 1, dtype: torch.dtype = torch.bfloat16,
                                    materialised_scores: bool = False) -> int:
    """A working-set estimate of one Foley forward for a clip of ``seconds`` (La = 50/s audio tokens,
    Lv = 8/s visual tokens), the larger of a triple and a single block plus what lives through the
    whole forward. Units of tokens × hidden × dtype bytes:

    * whole forward: the per-frame sync features and the single blocks' token conditioning (2 La),
      the visual and text tokens;
    * single block (La tokens): residual in/out (2), its six per-token modulation chunks (6), qkv (3),
      attention output (1), ``linear1`` output (1), the conv FFN's w1, w3, gated product (3·c,
      c = conv hidden / H) and w2 output (1); q, k after norm + RoPE and the LayerNorm temporary in
      float32 (4 float32 units);
    * triple block (La + Lv tokens): residuals (2), qkv (3), attention and projection (2), GELU MLP
      fc1 and activation (2·r, r = mlp_ratio), fc2 (1); float32 q, k and LayerNorm (4 float32 units).

    ``materialised_scores`` adds the float32 score matrix of a non-fused attention (CPU math path)."""
    la, lv = int(round(seconds * config.audio_frame_rate)), int(round(seconds * SIGLIP_FPS))
    h, size = config.hidden_size, torch.empty(0, dtype=dtype).element_size()
    c, r = config.conv_mlp_hidden / h, config.mlp_ratio
    unit = lambda tokens: batch * tokens * h * size  # noqa: E731
    fp32 = lambda tokens: batch * tokens * h * 4      # noqa: E731
    single = unit(la) * (2 + 6 + 3 + 1 + 1 + 3 * c + 1) + fp32(la) * 4
    triple = unit(la + lv) * (2 + 3 + 2 + 2 * r + 1) + fp32(la + lv) * 4
    persistent = unit(2 * la + lv + text_tokens)
    total = persistent + max(single, triple)
    if materialised_scores:
        total += batch * config.heads_num * (la + lv) ** 2 * 4
    return int(total)


def plan_foley_memory(model, seconds: float, budget_bytes: Optional[int] = None, **estimate) -> OffloadPlan:
    """The block-swap plan for a clip of ``seconds``: the fewest swapped blocks within
    ``budget_bytes`` (None: nothing swapped, just the predicted peak)."""
    act = estimate_foley_activation_bytes(model.config, seconds, **estimate)
    if budget_bytes is None:
        return plan_for(model, 0, 0, act)
    return plan_block_swap(model, int(budget_bytes), act)


def prepare_foley(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None,
                  attention_backend: Optional[str] = None, memory: Optional[MemoryOptions] = None):
    """``load_foley`` followed by the memory passes in ``memory`` (fp8 block weights, block swap;
    ``compile`` is not offered for Foley). With block swap the model is loaded on the CPU and only
    the resident part moves to ``device``."""
    memory = memory or MemoryOptions()
    device = torch.device(device)
    model = load_with_memory_passes(
        lambda on: load_foley(path, device=on, dtype=dtype, attention_backend=attention_backend),
        device, dtype, attention_backend, memory, what="the Foley model")
    return model
