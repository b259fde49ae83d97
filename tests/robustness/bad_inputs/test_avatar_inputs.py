"""Avatar model inputs that do not fit: a clear error saying what was expected, or a documented fallback
(a face mask of another size is resized, no mask is the whole frame, a batch of 1 is broadcast)."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from hyvideo_core.apps.avatar import load_avatar_transformer
from hyvideo_core.errors import InputError
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.variants import VARIANTS
from tests.reference_models import save

pytestmark = pytest.mark.robustness

FIXTURE = Path(__file__).resolve().parents[2] / "avatar" / "golden_avatar.safetensors"


@pytest.fixture(scope="module")
def golden():
    with safe_open(str(FIXTURE), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module")
def model(golden, tmp_path_factory):
    state = {k[len("state."):]: v for k, v in golden.items() if k.startswith("state.")}
    return load_avatar_transformer(save(state, str(tmp_path_factory.mktemp("avatar") / "avatar.safetensors")))


@pytest.fixture(scope="module")
def case(golden):
    i = {k.rsplit(".", 1)[1]: v for k, v in golden.items() if k.startswith("cfg_pair.input.")}
    args = (i["x"], i["t"], i["text_states"], i["text_mask"], i["text_states_2"])
    extras = dict(ref_latents=i["ref_latents"], audio_windows=i["audio_prompts"], face_mask=i["face_mask"],
                  motion_exp=i["motion_exp"], motion_pose=i["motion_pose"], fps=i["fps"])
    return args, extras


def run(model, case, **changes):
    args, extras = case
    extras = {k: v for k, v in dict(extras, **changes).items() if v is not None}
    with torch.no_grad():
        return model(*args, extras=extras)


@pytest.mark.parametrize("changes, message", [
    (dict(ref_latents=None), r"needs the extras \['ref_latents'\]"),
    (dict(audio_windows=None), r"needs the extras \['audio_windows'\]: .*\(B, 4T-3, 10, 5, 8\)"),
    (dict(ref_latents=torch.zeros(2, 4, 2, 8, 12)), r"ref_latents: expected the reference latent \(2, 4, 3, 8, 12\)"),
    (dict(ref_latents=torch.zeros(3, 4, 3, 8, 12)), r"ref_latents: expected .* found \(3, 4, 3, 8, 12\)"),
    (dict(audio_windows=torch.zeros(2, 12, 10, 5, 8)), r"audio_windows: expected \(2, 9, 10, 5, 8\) Whisper windows, "
                                                       r"9 video frames for 3 latent frames; found \(2, 12, 10, 5, 8\)"),
    (dict(audio_windows=torch.zeros(2, 9, 10, 5, 384)), r"audio_windows: expected \(2, 9, 10, 5, 8\)"),
    (dict(audio_windows=[[0.0]]), r"audio_windows: expected .* found list"),
    (dict(face_mask=torch.ones(2, 8, 12, 1)), r"face_mask: expected \(B, H, W\) or \(B, 1, frames, H, W\)"),
    (dict(face_mask=torch.ones(2, 3, 1, 8, 12)), r"face_mask: expected .* found \(2, 3, 1, 8, 12\)"),
    (dict(motion_exp=torch.ones(2, 3)), r"motion_exp: expected a number, \(2,\) or \(2, 4\) values, found shape \(2, 3\)"),
    (dict(fps=torch.ones(3)), r"fps: expected a number, \(2,\) or \(2, 1\) values, found shape \(3,\)"),
], ids=["no_reference", "no_audio", "reference_of_another_length", "reference_of_another_batch",
        "audio_of_another_length", "audio_of_another_encoder", "audio_not_a_tensor", "mask_channels_last",
        "mask_with_channels", "three_motion_values", "fps_of_another_batch"])
def test_bad_avatar_input_is_a_clear_error(model, case, changes, message):
    with pytest.raises(InputError, match=message):
        run(model, case, **changes)


def test_t2v_model_given_avatar_inputs_names_them(case):
    model = HunyuanVideoTransformer(VARIANTS["tiny-noguide"].transformer).eval()
    args, extras = case
    args = (torch.zeros(2, 4, 3, 8, 12), *args[1:3], torch.zeros(2, 16))
    with pytest.raises(InputError, match=r"extra model inputs \['audio_windows', 'face_mask', 'fps', 'motion_exp', "
                                         r"'motion_pose', 'ref_latents'\] are not read by any installed extension"):
        with torch.no_grad():
            model(*args[:3], None, args[3], extras=extras)


def test_face_mask_of_another_size_is_resized_as_released(model, case):
    """A pixel-size mask gives the same output as the latent-size mask it resizes to (nearest)."""
    _, extras = case
    big = torch.rand(2, 1, 1, 64, 96, generator=torch.Generator().manual_seed(4))
    as_tokens = F.interpolate(big, size=(3, 4, 6), mode="nearest")
    assert torch.equal(run(model, case, face_mask=big), run(model, case, face_mask=as_tokens))
    assert torch.equal(run(model, case, face_mask=big[:, 0, 0]), run(model, case, face_mask=big))


def test_no_face_mask_is_the_whole_frame(model, case):
    assert torch.equal(run(model, case, face_mask=None), run(model, case, face_mask=torch.ones(2, 1, 1, 8, 12)))


def test_batch_of_one_is_broadcast(model, case):
    _, extras = case
    one = {k: extras[k][:1] for k in ("ref_latents", "audio_windows", "face_mask")}
    repeated = {k: v.expand(2, *v.shape[1:]) for k, v in one.items()}
    assert torch.equal(run(model, case, **one), run(model, case, **repeated))
    assert torch.equal(run(model, case, motion_exp=30, motion_pose=25.0, fps=torch.tensor(25.0)),
                       run(model, case, motion_exp=None, motion_pose=None, fps=None))
