"""Image-to-video token replacement (the 16-channel I2V release) as an extension: the tokens of
the clean first latent frame are modulated as at t = 0 and without embedded guidance, the
rest of the tokens as usual. Read by the forward when ``extras["token_replace"]`` is true."""
from __future__ import annotations

import torch

from .extension import Extension, ForwardContext
from .layers import Conditioning


class TokenReplace(Extension):
    name = "token_replace"
    consumes = ("token_replace",)

    def condition(self, ctx: ForwardContext, cond: Conditioning) -> Conditioning:
        if not ctx.extras.get("token_replace"):
            return cond
        clean = ctx.model.time_in(torch.zeros_like(ctx.t), ctx.dtype) + ctx.pooled
        return Conditioning(cond.vec, clean, ctx.grid[1] * ctx.grid[2])
