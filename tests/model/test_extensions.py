"""Extensions compose with every pass, in both install orders: step caches (threshold 0 is
bit-identical), block swap, LoRA, fp8 and compile; their weights load with an identity map."""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from hyvideo_core import load_transformer, sample
from hyvideo_core.checkpoints.load import load_extension_weights, save_transformer
from hyvideo_core.errors import IncompatibleWeightsError, InputError
from hyvideo_core.finetune.lora import inject_lora, lora_layers, merge_lora
from hyvideo_core.model.extension import Extension, ForwardContext, install_extension, remove_extension
from hyvideo_core.model.rope import grid_positions, rope_for_positions, rope_frequencies
from hyvideo_core.quant.passes import quantize_transformer
from hyvideo_core.runtime.caching import apply_first_block_cache, apply_teacache
from hyvideo_core.runtime.compile import compile_blocks, compile_unavailable
from hyvideo_core.runtime.offload import enable_block_swap
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_transformer, dit_inputs, official_state_dict, save

sys.path.insert(0, str(Path(__file__).parent))
from example_extension import StyleAdapter  # noqa: E402

CFG = VARIANTS["tiny"].transformer
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """base.safetensors (no extension), full.safetensors (model + extension) and ext.safetensors
    (the extension's weights alone), all from the same seeded weights."""
    root = tmp_path_factory.mktemp("ext")
    base = save(official_state_dict(diffusers_transformer(CFG)), str(root / "base.safetensors"))
    model = load_transformer(base)
    ext = install_extension(model, StyleAdapter(CFG))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in (*ext.token_offset.parameters(), *ext.adapter.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    save_transformer(model, root / "full.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("style_")},
              str(root / "ext.safetensors"))
    return {"base": base, "full": str(root / "full.safetensors"), "ext": str(root / "ext.safetensors")}


def _sample(model, extras=True):
    _, _, text, mask, pooled, _ = dit_inputs(CFG, batch=1)
    noise = torch.randn(1, CFG.in_channels, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    return sample(model, noise, text, mask, pooled, steps=3, shift=7.0, embedded_guidance=6.0,
                  extras={"style_strength": 0.5} if extras else None)


def _lora(model):
    inject_lora(model, rank=4, seed=1)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in lora_layers(model).values():
            m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=gen) * 0.05)


def _swap(model):
    enable_block_swap(model, (1, 1), "cpu", store="cpu")   # weights paged through the store and hooks


def _compile(model):
    compile_blocks(model, backend="aot_eager")   # traces the blocks with the forward context


# pass -> (apply, exact: bit-identical to the extension alone without the pass)
PASSES = {
    "teacache": (lambda m: apply_teacache(m, 0.0), True),
    "first_block_cache": (lambda m: apply_first_block_cache(m, 0.0), True),
    "block_swap": (_swap, True),
    "lora": (_lora, False),
    "fp8": (quantize_transformer, False),
    "compile": (_compile, False),
}


def _with(files, pass_name, order):
    apply = PASSES[pass_name][0] if pass_name else (lambda m: None)
    if order == "extension_first":
        model = load_transformer(files["full"], extensions=[StyleAdapter])
        apply(model)
    else:
        model = load_transformer(files["base"])
        apply(model)
        ext = install_extension(model, StyleAdapter(model.config))
        load_extension_weights(model, ext, files["ext"])
    return model


@pytest.fixture(scope="module")
def extension_alone(files):
    return _sample(_with(files, None, "extension_first"))


@pytest.mark.parametrize("order", ["extension_first", "pass_first"])
@pytest.mark.parametrize("pass_name", PASSES)
def test_extension_composes_with_pass(files, extension_alone, pass_name, order):
    out = _sample(_with(files, pass_name, order))
    other = _sample(_with(files, pass_name, "pass_first" if order == "extension_first" else "extension_first"))
    # the extension's hooks ran: the pass alone gives something else
    plain = load_transformer(files["base"])
    PASSES[pass_name][0](plain)
    assert (out - _sample(plain, extras=False)).abs().max() > 0.05
    if pass_name == "compile":
        torch.testing.assert_close(out, other, atol=1e-5, rtol=1e-5)
    else:
        assert torch.equal(out, other), "install order changed the result"
    if PASSES[pass_name][1]:
        assert torch.equal(out, extension_alone)
    elif pass_name == "lora":
        merged = _with(files, None, "extension_first")
        _lora(merged)
        merge_lora(merged)
        torch.testing.assert_close(out, _sample(merged), atol=1e-4, rtol=1e-4)
    elif pass_name == "compile":
        torch.testing.assert_close(out, extension_alone, atol=1e-5, rtol=1e-5)
    else:   # fp8: within the quantisation error of the extension alone
        assert (out - extension_alone).abs().max() < 0.2 * (out - _sample(plain, extras=False)).abs().max()


@pytest.mark.slow  # inductor builds C++ kernels (about a minute on 2 cores)
def test_extension_with_inductor_compile(files, extension_alone):
    if compile_unavailable("cpu"):
        pytest.skip(compile_unavailable("cpu"))
    model = load_transformer(files["full"], extensions=[StyleAdapter])
    compile_blocks(model)
    torch.testing.assert_close(_sample(model), extension_alone, atol=1e-5, rtol=1e-5)


def test_extension_weights_load_with_identity_map(files):
    model = load_transformer(files["full"], extensions=[StyleAdapter])
    from safetensors.torch import load_file
    stored = load_file(files["ext"])
    for key, value in stored.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_file_with_extension_keys_needs_the_extension(files):
    with pytest.raises(IncompatibleWeightsError, match="style_adapter"):
        load_transformer(files["full"])


def test_extension_file_missing_a_key_is_named(files, tmp_path):
    from safetensors.torch import load_file
    partial = {k: v for k, v in load_file(files["ext"]).items() if k != "style_adapter.bias"}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    model = load_transformer(files["base"])
    ext = install_extension(model, StyleAdapter(CFG))
    with pytest.raises(IncompatibleWeightsError, match=r"style_adapter\.bias"):
        load_extension_weights(model, ext, tmp_path / "partial.safetensors")


def test_extras_nobody_reads_are_an_error(files):
    model = load_transformer(files["base"])
    x, t, text, mask, pooled, guidance = dit_inputs(CFG)
    with pytest.raises(InputError, match="audio"):
        model(x, t, text, mask, pooled, guidance, extras={"audio": torch.zeros(1)})


def test_removed_extension_leaves_the_base_model(files):
    base = load_transformer(files["base"])
    model = load_transformer(files["full"], extensions=[StyleAdapter])
    remove_extension(model, model.extensions[0])
    assert list(model.state_dict()) == list(base.state_dict())
    assert torch.equal(_sample_plain(model), _sample_plain(base))


def _sample_plain(model):
    _, _, text, mask, pooled, _ = dit_inputs(CFG, batch=1)
    noise = torch.randn(1, CFG.in_channels, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    return sample(model, noise, text, mask, pooled, steps=2, shift=7.0, embedded_guidance=6.0)


class VaryingInput(Extension):
    """An extension whose input changes every step (like sliding audio windows)."""
    name = "varying"
    cache_policy = "never_skip"

    def after_single(self, ctx, index, joint):
        return joint


@pytest.mark.parametrize("apply", [apply_teacache, apply_first_block_cache])
def test_cache_refuses_to_skip_a_never_skip_extension(files, apply):
    model = load_transformer(files["base"])
    install_extension(model, VaryingInput())
    apply(model, 0.0)
    _sample_plain(model)                           # threshold 0 never skips: allowed
    model.block_passes.clear()
    apply(model, 0.3)
    with pytest.raises(InputError, match="varying"):
        _sample_plain(model)


class ReferenceFrame(Extension):
    """Prepends a reference latent's tokens at RoPE t = -1 (the avatar recipe's reference frame)."""
    name = "reference_frame"
    consumes = ("reference",)

    def embed_tokens(self, ctx: ForwardContext, img):
        ref = ctx.extras["reference"]                       # (B, C, 1, H, W) latent
        tokens = ctx.model.img_in(ref.to(ctx.dtype))
        grid = (1, *ctx.grid[1:])
        rope = rope_for_positions(grid_positions(grid, offset=(-1, 0, 0)), ctx.model.config.rope_axes,
                                  ctx.model.config.rope_theta)
        return ctx.prepend(img, tokens, rope)


def test_prepended_tokens_have_their_own_positions_and_are_dropped(files):
    model = load_transformer(files["base"])
    install_extension(model, ReferenceFrame())
    x, t, text, mask, pooled, guidance = dit_inputs(CFG)
    ref = torch.randn(x.shape[0], x.shape[1], 1, *x.shape[3:])
    out = model(x, t, text, mask, pooled, guidance, extras={"reference": ref})
    assert out.shape == x.shape
    other = model(x, t, text, mask, pooled, guidance, extras={"reference": torch.randn_like(ref)})
    assert (out - other).abs().max() > 1e-4            # the prepended tokens are attended to


def test_rope_positions_with_offset_match_a_shifted_grid():
    axes, theta = CFG.rope_axes, CFG.rope_theta
    shifted = rope_for_positions(grid_positions((3, 2, 2), offset=(-1, 0, 0)), axes, theta)
    plain = rope_frequencies((4, 2, 2), axes, theta)
    t_part = sum(axes[:1]) // 2
    torch.testing.assert_close(shifted[4:, t_part:], plain[4:-4, t_part:])   # h, w unchanged
    assert torch.equal(rope_for_positions(grid_positions((3, 2, 2)), axes, theta), rope_frequencies((3, 2, 2), axes, theta))


def test_readme_example_is_this_extension():
    readme = (REPO / "README.md").read_text()
    assert inspect.getsource(StyleAdapter) in readme, "README's 'Extending the engine' example drifted"


@pytest.mark.parametrize("order", ["extension_first", "pass_first"])
def test_extension_gradients_through_gradient_checkpointing(files, order):
    from hyvideo_core.finetune.passes import enable_gradient_checkpointing

    def grads(checkpointing):
        model = _with(files, None, "extension_first") if order == "extension_first" or not checkpointing else None
        if model is None:
            model = load_transformer(files["base"])
            enable_gradient_checkpointing(model)
            ext = install_extension(model, StyleAdapter(model.config))
            load_extension_weights(model, ext, files["ext"])
        elif checkpointing:
            assert enable_gradient_checkpointing(model) > 0
        ext = model.extensions[0]
        model.train()
        for p in ext.adapter.parameters():
            p.requires_grad_(True)
        x, t, text, mask, pooled, guidance = dit_inputs(CFG)
        model(x, t, text, mask, pooled, guidance, extras={"style_strength": 0.5}).square().mean().backward()
        return [p.grad.clone() for p in ext.adapter.parameters()]

    for a, b in zip(grads(False), grads(True)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
