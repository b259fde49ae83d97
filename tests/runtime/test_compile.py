"""Regional torch.compile of the blocks on the tiny model (CPU inductor)."""
import pytest
import torch

from hyvideo_core import load_transformer
from hyvideo_core.runtime.compile import compile_blocks, compile_unavailable
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_transformer, dit_inputs, official_state_dict, save

CFG = VARIANTS["tiny"].transformer


@pytest.mark.slow  # ~75 s on 2 cores (inductor C++ build)
def test_compile_blocks_keeps_keys_and_matches_eager(tmp_path):
    reason = compile_unavailable("cpu")
    if reason:
        pytest.skip(reason)
    model = load_transformer(save(official_state_dict(diffusers_transformer(CFG)), str(tmp_path / "m.safetensors")))
    keys = list(model.state_dict())
    with torch.no_grad():
        eager = model(*dit_inputs(CFG))
    assert compile_blocks(model) == CFG.double_depth + CFG.single_depth
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        compiled = model(*dit_inputs(CFG))
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
