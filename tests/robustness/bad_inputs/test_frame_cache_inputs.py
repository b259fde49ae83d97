"""Frame-cache calls that do not fit: each a clear InputError, and the model is left without the cache."""
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hyvideo_core.apps.avatar import load_avatar_transformer
from hyvideo_core.apps.avatar.frame_cache import FrameCache
from hyvideo_core.errors import InputError
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.model.extension import install_extension
from hyvideo_core.model.token_replace import TokenReplace
from hyvideo_core.variants import VARIANTS
from tests.reference_models import save

pytestmark = pytest.mark.robustness

FIXTURE = Path(__file__).resolve().parents[2] / "avatar" / "golden_avatar.safetensors"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    with safe_open(str(FIXTURE), "pt") as f:
        state = {k[len("state."):]: f.get_tensor(k) for k in f.keys() if k.startswith("state.")}
    return load_avatar_transformer(save(state, str(tmp_path_factory.mktemp("avatar") / "avatar.safetensors")))


def forward(model):
    with torch.no_grad():
        return model(torch.zeros(1, 4, 3, 8, 12), torch.tensor([900.0]), torch.zeros(1, 12, 32), None,
                     torch.zeros(1, 16), extras=dict(ref_latents=torch.zeros(1, 4, 3, 8, 12),
                                                     audio_windows=torch.zeros(1, 9, 10, 5, 8)))


@pytest.mark.parametrize("step, indices, branch, message", [
    (0, (0, 1), "cond", r"the window has 3 latent frames but 2 latent indices were given \(\(0, 1\)\)"),
    (0, (0, 1, 2, 3), "cond", r"the window has 3 latent frames but 4 latent indices"),
    (-1, (0, 1, 2), "cond", r"expected a step >= 0, .* found step -1"),
    (0, (0, -1, 2), "cond", r"latent frame indices \(>= 0\) .* indices \(0, -1, 2\)"),
    (0, (), "cond", r"expected a step >= 0, the window's latent frame indices"),
    (0, ("a", 1, 2), "cond", r"latent_indices must be whole numbers, found \('a', 1, 2\)"),
    (0, (0, 1, 2), None, r"and a branch name; found .* branch None"),
], ids=["too-few-indices", "too-many-indices", "negative-step", "negative-index", "no-indices", "not-numbers",
        "no-branch"])
def test_bad_call_is_a_clear_error_and_removes_the_cache(model, step, indices, branch, message):
    cache = FrameCache(model)
    try:
        with pytest.raises(InputError, match=message):
            with cache.at(step, indices, branch):
                forward(model)
    finally:
        cache.close()
    assert model.block_passes == []


def test_closed_cache_is_a_clear_error(model):
    cache = FrameCache(model)
    cache.close()
    with pytest.raises(InputError, match="this frame cache was closed; make a new FrameCache"):
        with cache.at(0, (0, 1, 2), "cond"):
            forward(model)


def _with_token_replace():
    model = HunyuanVideoTransformer(VARIANTS["tiny"].transformer)
    install_extension(model, TokenReplace())
    return model


@pytest.mark.parametrize("make", [lambda: HunyuanVideoTransformer(VARIANTS["tiny"].transformer), _with_token_replace],
                         ids=["text-to-video", "image-to-video-token-replace"])
def test_model_without_the_avatar_extension_is_refused(make):
    model = make()
    with pytest.raises(InputError, match=r"no avatar extension\. For text- or image-to-video use the step cache "
                                         r"methods teacache or first_block_cache"):
        FrameCache(model)
    assert model.block_passes == []
