"""Test-size transformer configs whose Linear widths are multiples of the GGML block sizes
(32 for Q8_0-style, 256 for K-quants), registered as variants for the duration of a test."""
from __future__ import annotations

import numpy as np
import torch

from hyvideo_core.config import TransformerConfig, VariantSpec
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.variants import VARIANTS

Q32 = TransformerConfig(in_channels=4, out_channels=4, hidden_size=64, heads_num=2, double_depth=1,
                        single_depth=2, refiner_depth=1, mlp_width_ratio=4.0, patch_size=(1, 2, 2),
                        rope_axes=(8, 12, 12), rope_theta=256.0, text_states_dim=64, text_states_dim_2=32,
                        guidance_embed=True)
Q256 = TransformerConfig(in_channels=4, out_channels=4, hidden_size=256, heads_num=2, double_depth=1,
                         single_depth=1, refiner_depth=1, mlp_width_ratio=4.0, patch_size=(1, 2, 2),
                         rope_axes=(16, 56, 56), rope_theta=256.0, text_states_dim=256, text_states_dim_2=256,
                         guidance_embed=True)


def register(monkeypatch, name: str, cfg: TransformerConfig) -> str:
    """Register ``cfg`` as a variant for the duration of one test."""
    monkeypatch.setitem(VARIANTS, name, VariantSpec(name=name, description="test", transformer=cfg,
                                                    is_test_variant=True))
    return name


def random_state(cfg: TransformerConfig, seed: int = 0, scale: float = 1.0):
    torch.manual_seed(seed)
    model = HunyuanVideoTransformer(cfg)
    state = {}
    for k, v in model.state_dict().items():
        # non-trivial norms and biases so that every tensor matters
        std = 0.05 if v.dim() == 1 else scale * v[0].numel() ** -0.5
        state[k] = torch.randn_like(v) * std + (1.0 if k.endswith("norm.weight") else 0.0)
    return state


def random_kquant_blocks(qtype: str, n_blocks: int, seed: int = 0) -> np.ndarray:
    """Random valid blocks of a K-quant type (the gguf package has no K-quantiser): random bits
    with finite, small fp16 super-block scales."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    _, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    d_fields = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}[qtype]
    for off in d_fields:
        blocks[:, off:off + 2] = (rng.uniform(1e-4, 2e-3, n_blocks).astype(np.float16)
                                  .view(np.uint8).reshape(n_blocks, 2))
    return blocks
