"""Our avatar model against the official HunyuanVideo-Avatar code, through a committed golden fixture.

``golden_avatar.safetensors`` was recorded by ``make_golden_fixture.py`` from the official
``HYVideoDiffusionTransformer`` (audio) at the ``tiny-avatar`` sizes, with seeded weights, on CPU in float32.
Here its state dict is loaded into our model + ``AvatarExtension`` with an identity key map (every key used,
none missing) and our forward — reference latent (added and prepended at RoPE t = -1), audio projection and
face-masked adapters after double blocks 1 and 3, motion/fps embeddings, a padded prompt — must give the
recorded velocity within 1e-4. The official source is not needed; when it is at hand
(``HUNYUAN_AVATAR_SOURCE`` = an exported tree at the recorded commit), the fixture is also re-made from it and
compared.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.golden_files import read_fixture

from hyvideo_core.apps.avatar import load_avatar_transformer
from tests.reference_models import save

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "golden_avatar.safetensors"
OFFICIAL_COMMIT = "fd59436af88e747c7e48055fd65df8233c4ff2eb"   # Tencent-Hunyuan/HunyuanVideo-Avatar, 2025-06-16
CASES = ("cfg_pair", "per_frame_mask")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def golden():
    tensors, _ = read_fixture(FIXTURE)
    return tensors


@pytest.fixture(scope="module")
def model(golden, tmp_path_factory):
    state = {k[len("state."):]: v for k, v in golden.items() if k.startswith("state.")}
    path = save(state, str(tmp_path_factory.mktemp("golden") / "mp_rank_00_model_states.pt"))
    return load_avatar_transformer(path)


def case_inputs(golden, case):
    return {k.rsplit(".", 1)[1]: v for k, v in golden.items() if k.startswith(f"{case}.input.")}


def run(model, i, **changes):
    extras = dict(ref_latents=i["ref_latents"], audio_windows=i["audio_prompts"], face_mask=i["face_mask"],
                  motion_exp=i["motion_exp"], motion_pose=i["motion_pose"], fps=i["fps"])
    extras.update(changes)
    extras = {k: v for k, v in extras.items() if v is not None}
    with torch.no_grad():
        return model(i["x"], i["t"], i["text_states"], i["text_mask"], i["text_states_2"], extras=extras)


def test_fixture_is_small_and_names_its_official_commit():
    _, metadata = read_fixture(FIXTURE)
    assert FIXTURE.stat().st_size <= 2_000_000
    assert metadata["official_commit"] == OFFICIAL_COMMIT
    assert metadata["official_repo"] == "Tencent-Hunyuan/HunyuanVideo-Avatar"
    assert metadata["variant"] == "tiny-avatar"
    readme = (HERE.parents[1] / "README.md").read_text()
    assert OFFICIAL_COMMIT in readme, "README must say which official commit produced the avatar fixture"


def test_official_state_dict_loads_with_identity_map(golden, model):
    official = {k[len("state."):]: tuple(v.shape) for k, v in golden.items() if k.startswith("state.")}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official
    assert model.variant == "tiny-avatar"


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_official(golden, model, case):
    expected = golden[f"{case}.output"]
    got = run(model, case_inputs(golden, case))
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_audio_projection_matches_official(golden, model):
    with torch.no_grad():
        got = model.audio_proj(golden["audio_proj.input"])
    assert got.shape == golden["audio_proj.output"].shape
    assert (got - golden["audio_proj.output"]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("change", [
    dict(face_mask=None), dict(motion_exp=None), dict(motion_pose=None), dict(fps=None), dict(audio_prompts=0.0),
    dict(ref_latents=0.5), dict(first_ref_frame=True),
], ids=lambda c: next(iter(c)))
def test_every_avatar_input_moves_the_output(golden, model, change):
    """The comparison above can fail: each avatar input, changed, moves the output far beyond the tolerance."""
    i = case_inputs(golden, "cfg_pair")
    key, value = next(iter(change.items()))
    if key == "audio_prompts":
        changes = {"audio_windows": torch.zeros_like(i["audio_prompts"])}
    elif key == "ref_latents":
        changes = {"ref_latents": i["ref_latents"] * value}
    elif key == "first_ref_frame":   # only the prepended frame differs: the RoPE t = -1 tokens matter
        ref = i["ref_latents"].clone()
        ref[:, :, :1] += 1.0
        changes = {"ref_latents": ref}
    else:
        changes = {key: value}
    moved = (run(model, i, **changes) - golden["cfg_pair.output"]).abs().max().item()
    assert moved > 100 * TOLERANCE


@pytest.mark.skipif(not os.environ.get("HUNYUAN_AVATAR_SOURCE"),
                    reason="set HUNYUAN_AVATAR_SOURCE to an exported HunyuanVideo-Avatar tree to re-make the fixture")
def test_fixture_is_reproduced_by_the_official_code(tmp_path):
    out = tmp_path / "golden.safetensors"
    subprocess.run([sys.executable, str(HERE / "make_golden_fixture.py"), "--source",
                    os.environ["HUNYUAN_AVATAR_SOURCE"], "--commit", OFFICIAL_COMMIT, "--out", str(out)],
                   check=True, cwd=HERE.parents[1], timeout=600)
    remade, _ = read_fixture(out)
    committed, _ = read_fixture(FIXTURE)
    assert sorted(remade) == sorted(committed)
    for key, tensor in committed.items():
        torch.testing.assert_close(remade[key], tensor, rtol=0, atol=1e-5, msg=key)
