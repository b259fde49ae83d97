"""The worked example of README's "Extending the engine" (kept identical to it by a test)."""
from torch import nn

from hyvideo_core.model.extension import Extension


class StyleAdapter(Extension):
    """A learned offset on every image token, and an adapter after double block 0."""
    name = "style_adapter"
    consumes = ("style_strength",)     # model(..., extras={"style_strength": 0.5})

    def __init__(self, cfg):
        d = cfg.hidden_size
        self.token_offset = nn.Linear(d, d)   # checkpoint keys style_token_offset.weight/.bias
        self.adapter = nn.Linear(d, d)        # checkpoint keys style_adapter.weight/.bias

    def modules(self):
        return {"style_token_offset": self.token_offset, "style_adapter": self.adapter}

    def embed_tokens(self, ctx, img):
        return img + self.token_offset(img)

    def after_double(self, ctx, index, img, txt):
        if index == 0:
            img = img + ctx.extras.get("style_strength", 1.0) * self.adapter(img)
        return img, txt
