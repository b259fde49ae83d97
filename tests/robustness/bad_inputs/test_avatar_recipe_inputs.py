"""Bad input to the avatar recipe (prepare_avatar / sample_avatar_latents / decode_avatar / generate_avatar): a
clear error saying what was expected, what was found and what to do, or the documented fallback."""
import pytest
import torch

from hyvideo_core import sample
from hyvideo_core.apps.avatar import (AvatarOptions, decode_avatar, generate_avatar, prepare_avatar,
                                      sample_avatar_latents)
from hyvideo_core.errors import InputError
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.variants import VARIANTS
from tests.avatar.recipe_fixtures import demo, whisper8  # noqa: F401  (fixtures)
from tests.avatar.recipe_fixtures import SMALL_WINDOW, face_picture, silence, speech_like, tiny_avatar

pytestmark = pytest.mark.robustness

WINDOW = SMALL_WINDOW["window_latents"]      # 5 latent frames: small reference encodes and model calls


@pytest.fixture(scope="module")
def model():
    return tiny_avatar(**SMALL_WINDOW)


@pytest.fixture(scope="module")
def cond(demo, whisper8):
    return prepare(demo, whisper8, speech_like(0.5))


def prepare(demo, whisper, audio, options=AvatarOptions(), image=None, **kw):
    kw.setdefault("window_latents", WINDOW)
    return prepare_avatar(demo["vae"], demo["encoders"], whisper, face_picture() if image is None else image, audio,
                          "a person talks", options, **kw)


def empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return str(path)


@pytest.mark.parametrize("audio, message", [
    (lambda tmp: None, r"audio: the avatar needs a sound .* none was given"),
    (empty_file, r"is empty \(0 bytes\); give an audio file"),
    (lambda tmp: str(tmp / "missing.wav"), r"audio file not found"),
    (lambda tmp: {"waveform": torch.zeros(1, 1, 100), "sample_rate": 16000}, r"at least one video frame of sound"),
    (lambda tmp: {"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}, r"AUDIO: expected sound, found 0 samples"),
    (lambda tmp: [0.0, 0.1], r"expected a file path or a ComfyUI AUDIO"),
], ids=["no_audio", "empty_file", "missing_file", "shorter_than_a_frame", "no_samples", "not_audio"])
def test_bad_sound_is_a_clear_error(demo, whisper8, tmp_path, audio, message):
    with pytest.raises(InputError, match=message):
        prepare(demo, whisper8, audio(tmp_path))


def test_silence_is_valid_and_keeps_its_length(demo, whisper8):
    cond = prepare(demo, whisper8, silence(0.8))
    assert cond.video_frames == 20 and torch.isfinite(cond.audio_windows).all()


@pytest.mark.parametrize("options, message", [
    (AvatarOptions(steps=0), r"steps: expected a whole number >= 1, found 0"),
    (AvatarOptions(fps=30), r"fps: the Avatar model was trained at 25 or 12.5 frames per second, found 30"),
    (AvatarOptions(shift=-1.0), r"shift: expected a positive number"),
    (AvatarOptions(frames=0), r"frames: expected None \(the sound's length\) or a whole number >= 1, found 0"),
    (AvatarOptions(motion_exp=float("nan")), r"motion_exp: expected a finite number"),
], ids=["no_steps", "fps_30", "negative_shift", "zero_frames", "nan_motion"])
def test_bad_options_are_a_clear_error(demo, whisper8, options, message):
    with pytest.raises(InputError, match=message):
        prepare(demo, whisper8, speech_like(0.2), options)


@pytest.mark.parametrize("changes, message", [
    (dict(max_text_tokens=0), r"max_text_tokens: expected a whole number >= 2 \(256 as released\), found 0"),
    (dict(window_latents=1), r"window_latents: expected a whole number >= 2 \(33 as released\), found 1"),
    (dict(image_size=100), r"image_size: expected None \(keep the size\) or a short side >= 256"),
], ids=["no_text_tokens", "window_of_one", "image_size_below_presets"])
def test_bad_settings_are_a_clear_error(demo, whisper8, changes, message):
    big = torch.rand(1, 300, 300, 3)          # above the smallest preset, so image_size applies
    with pytest.raises(InputError, match=message):
        prepare(demo, whisper8, speech_like(0.2), image=big, **changes)


@pytest.mark.parametrize("image, message", [
    (torch.rand(64, 64), r"single-channel mask, not an RGB image"),
    (torch.rand(2, 64, 64, 3), r"batch of 2 images"),
    (torch.rand(1, 64, 64, 3) * 5, r"expected 0..1 floats or uint8"),
], ids=["mask_as_image", "image_batch", "image_out_of_range"])
def test_bad_reference_image_is_a_clear_error(demo, whisper8, image, message):
    with pytest.raises(InputError, match=message):
        prepare(demo, whisper8, speech_like(0.2), image=image)


@pytest.mark.parametrize("mask, message", [
    (torch.ones(1, 1, 64, 64, 1), r"face mask: expected one ComfyUI MASK \(1, H, W\) or \(H, W\), found shape"),
    (torch.ones(2, 64, 64), r"a batch of masks: pick the one for the reference image"),
    ("face.png", r"face mask: expected a ComfyUI MASK tensor .* found str"),
], ids=["mask_5d", "mask_batch", "mask_path"])
def test_bad_face_mask_is_a_clear_error(demo, whisper8, mask, message):
    with pytest.raises(InputError, match=message):
        prepare(demo, whisper8, speech_like(0.2), face_mask=mask)


def test_a_text_to_video_model_names_the_avatar_loader(demo, whisper8, cond):
    t2v = HunyuanVideoTransformer(VARIANTS["tiny-noguide"].transformer).eval()
    with pytest.raises(InputError, match=r"has no avatar modules.*load_avatar_transformer"):
        sample_avatar_latents(t2v, cond, AvatarOptions(steps=1))
    with pytest.raises(InputError, match=r"has no avatar modules.*load_avatar_transformer"):
        generate_avatar(t2v, demo["vae"], demo["encoders"], whisper8, face_picture(), speech_like(0.2), "a person")


def test_an_avatar_model_sampled_without_its_inputs_names_the_recipe(model):
    noise = torch.zeros(1, 4, 2, 8, 8)
    with pytest.raises(InputError, match=r"needs the extras \['ref_latents', 'audio_windows'\].*prepare_avatar"):
        sample(model, noise, torch.zeros(1, 5, 32), torch.ones(1, 5), torch.zeros(1, 16), steps=1, shift=5.0)


def test_conditioning_for_another_window_names_the_window(model, demo, whisper8):
    other = prepare(demo, whisper8, speech_like(0.2), window_latents=9)
    with pytest.raises(InputError, match=r"prepared for windows of 9 latent frames but this model samples windows "
                                         r"of 5; prepare it with window_latents=5"):
        sample_avatar_latents(model, other, AvatarOptions(steps=1))


def test_sound_encoded_by_another_whisper_is_named(model, cond):
    other = type(cond)(**{**cond.__dict__, "audio_windows": torch.zeros(1, 17, 10, 5, 384)})
    with pytest.raises(InputError, match=r"audio_windows: expected \(1, frames, 10, 5, 8\) .* found "
                                         r"\(1, 17, 10, 5, 384\)"):
        sample_avatar_latents(model, other, AvatarOptions(steps=1))


def test_decode_more_frames_than_sampled_is_a_clear_error(demo):
    with pytest.raises(InputError, match=r"the latents hold 9 frames but 20 were asked for"):
        decode_avatar(demo["vae"], torch.zeros(1, 4, 3, 8, 8), 20, scaling_factor=1.0)
    with pytest.raises(InputError, match=r"frames: expected the clip's frame count"):
        decode_avatar(demo["vae"], torch.zeros(1, 4, 3, 8, 8), 0, scaling_factor=1.0)
