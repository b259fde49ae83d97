"""The extension seam of the transformer: a forward context and named hook points.

Applications (image-to-video's clean first frame, avatar adapters, pose/expression control) and
passes (sequence parallel) change what happens inside the forward without branches in model
code: they are :class:`Extension` objects installed on a model with :func:`install_extension`.
The forward builds one :class:`ForwardContext` and calls each installed extension's hooks, in
install order, at these points (tech report §4.2, Fig. 8):

=================  ===========================================================================
``condition``      the conditioning vector (timestep + pooled text + guidance) -> a
                   :class:`~hyvideo_core.model.layers.Conditioning` (may add to it, or give some
                   tokens their own modulation)
``embed_tokens``   the patchified image tokens: add to them, or prepend tokens with their own
                   RoPE positions (:meth:`ForwardContext.prepend`)
``after_double``   after double-stream block *i*: (img, txt) -> (img, txt)
``after_single``   after single-stream block *i*: joint [image | text] tokens -> joint
``before_final``   the image tokens before the final layer (prepended tokens are dropped
                   by the model right after this hook)
=================  ===========================================================================

An extension registers its modules on the model under the names its checkpoint uses
(:meth:`Extension.modules`), so its weights load with an identity map and move with the model.
Named extra inputs reach it through ``model(..., extras={...})`` (:attr:`ForwardContext.extras`);
an extra that no installed extension consumes is an error, never silently ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..attention import attention
from ..errors import InputError
from .layers import Conditioning

HOOKS = ("condition", "embed_tokens", "after_double", "after_single", "before_final")

# How a step cache may treat an extension whose block hooks it would skip along with the blocks:
# "with_blocks": the hook's effect is part of the blocks' residual and is reused with it (true
#   when the extension's inputs are the same at every step, like a fixed reference or audio);
# "never_skip": the inputs change between steps (e.g. sliding windows), so a cache refuses to run.
CACHE_POLICIES = ("with_blocks", "never_skip")


@dataclass
class ForwardContext:
    """Everything one transformer forward threads through its blocks, caches and extensions."""
    model: nn.Module
    grid: Tuple[int, int, int]          # latent token grid (t, h, w), without prepended tokens
    t: torch.Tensor                     # (B,) timesteps, 0..1000
    pooled: torch.Tensor                # (B, D) the pooled-text part of the conditioning vector
    dtype: torch.dtype
    backend: Optional[str]
    extras: Mapping[str, Any] = field(default_factory=dict)
    cond: Optional[Conditioning] = None  # set after the ``condition`` hooks
    rope: Optional[torch.Tensor] = None  # (img_len, head_dim/2) complex, prepended tokens first
    mask: Optional[torch.Tensor] = None  # joint [image | text] key mask, None = all real
    prefix_tokens: int = 0              # tokens prepended before the latent tokens
    img_len: int = 0                    # image tokens in the block sequence (prefix included)
    block_start: int = 0                # first double block the block loop runs (First-Block-Cache)
    attention_fn: Optional[Callable[..., torch.Tensor]] = None  # replaces the joint attention (sequence parallel)
    state: Dict[str, Any] = field(default_factory=dict)       # extensions' per-forward scratch

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: Optional[torch.Tensor] = None, *, joint: bool = True) -> torch.Tensor:
        """Attention over (B, L, H, D) tensors with this forward's backend. ``joint``: the blocks'
        attention over [image | text] with the joint key mask (sequence parallel may replace it);
        otherwise a local attention (cross-attention adapters) with its own mask or None."""
        if not joint:
            return attention(q, k, v, mask=mask, backend=self.backend)
        fn = self.attention_fn or attention
        return fn(q, k, v, mask=self.mask if mask is None else mask, backend=self.backend)

    def prepend(self, img: torch.Tensor, tokens: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """Put ``tokens`` (B, N, D) before the image tokens, rotated by their own ``rope``
        (N, head_dim/2) complex, e.g. from :func:`~hyvideo_core.model.rope.rope_for_positions`."""
        if tokens.shape[0] != img.shape[0] or tokens.shape[2] != img.shape[2] or rope.shape[0] != tokens.shape[1]:
            raise InputError(f"prepended tokens must be (B={img.shape[0]}, N, {img.shape[2]}) with N RoPE rows; "
                             f"found tokens {tuple(tokens.shape)}, rope {tuple(rope.shape)}")
        self.rope = torch.cat([rope.to(self.rope.device), self.rope], dim=0)
        self.prefix_tokens += tokens.shape[1]
        return torch.cat([tokens.to(img.dtype), img], dim=1)


class Extension:
    """Base of the extensions: every hook is a no-op; override the ones you need.

    Attributes a subclass sets:
        name: shown in logs and errors.
        consumes: the ``extras`` keys this extension reads.
        cache_policy: see :data:`CACHE_POLICIES`.
        outermost: wraps the other extensions (sequence parallel): its ``embed_tokens`` runs after
            theirs and its ``before_final`` before theirs, so they all see whole sequences.
    """
    name = "extension"
    consumes: Tuple[str, ...] = ()
    cache_policy = "with_blocks"
    outermost = False

    def modules(self) -> Dict[str, nn.Module]:
        """Modules to register on the model, under their checkpoint key prefixes."""
        return {}

    def condition(self, ctx: ForwardContext, cond: Conditioning) -> Conditioning:
        return cond

    def embed_tokens(self, ctx: ForwardContext, img: torch.Tensor) -> torch.Tensor:
        return img

    def after_double(self, ctx: ForwardContext, index: int, img: torch.Tensor,
                     txt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return img, txt

    def after_single(self, ctx: ForwardContext, index: int, joint: torch.Tensor) -> torch.Tensor:
        return joint

    def before_final(self, ctx: ForwardContext, img: torch.Tensor) -> torch.Tensor:
        return img

    def hooks(self) -> Tuple[str, ...]:
        """The hook points this extension overrides (the model calls only those)."""
        return tuple(h for h in HOOKS if getattr(type(self), h) is not getattr(Extension, h))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} hooks={','.join(self.hooks())}>"


def extensions_of(model: nn.Module) -> List[Extension]:
    return model.__dict__.setdefault("extensions", [])


def install_extension(model: nn.Module, extension: Extension) -> Extension:
    """Install ``extension`` on ``model``: its modules become children of the model under their
    checkpoint names (an existing child of that name is an error), its hooks run from the next
    forward on. Returns the extension (for :func:`remove_extension`)."""
    if extension.cache_policy not in CACHE_POLICIES:
        raise InputError(f"extension {extension.name!r}: cache_policy must be one of {CACHE_POLICIES}, "
                         f"found {extension.cache_policy!r}")
    installed = extensions_of(model)
    if extension in installed:
        return extension
    for name, module in extension.modules().items():
        existing = getattr(model, name, None)
        if existing is not None and existing is not module:
            raise InputError(f"extension {extension.name!r} wants to register modules under {name!r}, "
                             f"but the model already has {type(existing).__name__} there")
        model.add_module(name, module)
    installed.append(extension)
    return extension


def remove_extension(model: nn.Module, extension: Extension) -> None:
    """Uninstall: the hooks stop and the extension's modules leave the model."""
    installed = extensions_of(model)
    if extension not in installed:
        return
    installed.remove(extension)
    for name in extension.modules():
        if name in model._modules:
            del model._modules[name]


def find_extension(model: nn.Module, kind: type) -> Optional[Extension]:
    return next((e for e in extensions_of(model) if isinstance(e, kind)), None)


def hooked(model: nn.Module, hook: str) -> List[Extension]:
    """The installed extensions that override ``hook``, in install order (outermost ones last,
    and first for ``before_final``)."""
    found = [e for e in extensions_of(model) if hook in e.hooks()]
    inner, outer = [e for e in found if not e.outermost], [e for e in found if e.outermost]
    return outer + inner if hook == "before_final" else inner + outer


def check_extras(model: nn.Module, extras: Mapping[str, Any]) -> None:
    known = {k for e in extensions_of(model) for k in e.consumes}
    unknown = sorted(set(extras) - known)
    if unknown:
        names = ", ".join(e.name for e in extensions_of(model)) or "none"
        raise InputError(f"extra model inputs {unknown} are not read by any installed extension (installed: "
                         f"{names}); install the extension that takes them, e.g. through load_transformer("
                         f"..., extensions=[...]), or use a model file that carries it")


def skipped_hook_blockers(model: nn.Module, skipped: Sequence[str] = ("after_double", "after_single")) -> List[str]:
    """Names of the extensions whose block hooks must not be skipped by a step cache."""
    return [e.name for e in extensions_of(model)
            if e.cache_policy == "never_skip" and any(h in e.hooks() for h in skipped)]
