"""The avatar recipe on the tiny-avatar variant (random weights, embedded tiny VAE and encoders, a tiny random
Whisper): shapes, the clip as long as the sound for one window and for several, seeds, the LLaVA prompt path,
silence, masks and sizes. Most tests sample windows of 5 latent frames (the toy avatar's) so that the reference
encode and the model calls stay small; one runs the released 33-frame window."""
from dataclasses import replace

import pytest
import torch

from hyvideo_core.apps.avatar import (RELEASED_PROMPT_PREFIX, AvatarOptions, avatar_size, decode_avatar,
                                      generate_avatar, prepare_avatar, sample_avatar_latents)
from hyvideo_core.apps.avatar.prompt import encode_avatar_prompt
from tests.avatar.recipe_fixtures import demo, whisper8  # noqa: F401  (fixtures)
from tests.avatar.recipe_fixtures import SMALL_WINDOW, face_picture, silence, speech_like, tiny_avatar

WINDOW = SMALL_WINDOW["window_latents"]


@pytest.fixture(scope="module")
def model():
    return tiny_avatar(**SMALL_WINDOW)


@pytest.fixture(scope="module")
def short(demo, whisper8):
    """Half a second of speech-like sound (12 frames, under one window), seed 1."""
    return prepare(demo, whisper8, speech_like(0.5))


def prepare(demo, whisper, audio, options=AvatarOptions(steps=2, seed=1), image=None, **kw):
    kw.setdefault("window_latents", WINDOW)
    return prepare_avatar(demo["vae"], demo["encoders"], whisper, face_picture() if image is None else image, audio,
                          "a person talks to the camera", options, **kw)


def test_short_sound_gives_a_clip_of_its_length(demo, short, model):
    options, cond = AvatarOptions(steps=2, seed=1), short
    assert cond.video_frames == 12 and (cond.height, cond.width) == (64, 64)
    assert cond.ref_latents.shape == (1, 4, 5, 8, 8)             # one window of the reference, scaled
    assert cond.audio_windows.shape == (1, 17, 10, 5, 8)         # padded to one window, as released
    assert not cond.audio_windows[:, 12:].any() and cond.audio_windows[:, :12].any()
    latents = sample_avatar_latents(model, cond, options)
    assert latents.shape == (1, 4, 5, 8, 8) and torch.isfinite(latents).all()
    video = decode_avatar(demo["vae"], latents, cond, scaling_factor=demo["vae"].scaling_factor, tile=False)
    assert video.shape == (1, 3, 12, 64, 64) and torch.isfinite(video).all()


def test_sound_longer_than_one_window_gives_every_frame(demo, whisper8, model):
    options = AvatarOptions(steps=3, seed=1)
    cond = prepare(demo, whisper8, speech_like(2.0), options)      # 50 frames, about 3 windows of 17
    assert cond.video_frames == 50 and cond.audio_windows.shape[1] == 55        # 5 zero frames, as released
    events = []
    latents = sample_avatar_latents(model, cond, options, callback=events.append)
    assert latents.shape[2] == 55 // 4 + 1 and len(events) == 3
    video = decode_avatar(demo["vae"], latents, 50, scaling_factor=demo["vae"].scaling_factor, tile=False)
    assert video.shape == (1, 3, 50, 64, 64) and torch.isfinite(video).all()


def test_released_window_over_a_sound_longer_than_129_frames(demo, whisper8):
    """The released sizes: 33-latent windows, a 6 s sound (150 frames > 129) padded by 5 zero frames."""
    model = tiny_avatar()
    options = AvatarOptions(steps=1, seed=1)
    video = generate_avatar(model, demo["vae"], demo["encoders"], whisper8, face_picture(), speech_like(6.0),
                            "a person talks", options, tile=False)
    assert video.shape == (1, 3, 150, 64, 64) and torch.isfinite(video).all()


def test_frames_option_cuts_or_pads_the_sound(demo, whisper8):
    cut = prepare(demo, whisper8, speech_like(1.0), AvatarOptions(frames=10))
    assert cut.video_frames == 10 and cut.audio_windows.shape[1] == 17         # padded to the window
    long = prepare(demo, whisper8, speech_like(1.0), AvatarOptions(frames=40))
    assert long.video_frames == 40 and long.audio_windows.shape[1] == 45        # 5 zero frames past a window


def test_same_seed_same_clip_other_seed_other_clip(demo, whisper8, model, short):
    sound = speech_like(0.5)
    a, b, c = (prepare(demo, whisper8, sound, AvatarOptions(seed=seed)) for seed in (1, 1, 2))
    assert a.ref_latents.shape[2] == 5 and torch.equal(a.ref_latents, b.ref_latents)
    assert not torch.equal(a.ref_latents, c.ref_latents)          # a sample of the latent distribution, seeded
    run = lambda seed: sample_avatar_latents(model, short, AvatarOptions(steps=2, seed=seed))
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_the_sound_changes_the_clip_and_silence_is_valid(demo, whisper8, model, short):
    options = AvatarOptions(steps=2, seed=1)
    speech = sample_avatar_latents(model, short, options)
    quiet_cond = prepare(demo, whisper8, silence(0.5), options)
    quiet = sample_avatar_latents(model, quiet_cond, options)
    assert quiet_cond.video_frames == 12 and torch.isfinite(quiet).all()
    assert (speech - quiet).abs().max() > 1e-4


def test_prompt_prefix_and_plain_text_encoders(demo, whisper8, short):
    cond = short
    plain = encode_avatar_prompt(demo["encoders"], RELEASED_PROMPT_PREFIX + "a person talks to the camera")
    assert torch.equal(cond.positive.states, plain.text_states)   # no vision tower: text only, prefix added
    bare = prepare(demo, whisper8, speech_like(0.5), add_prompt_prefix=False)
    assert not torch.equal(bare.positive.states, cond.positive.states)


def test_llava_encoder_appends_the_reference_image_tokens(demo):
    encoders = demo["llava"]()
    image = face_picture()[0]
    embeds = encode_avatar_prompt(encoders, "a person talks", image)
    text_only = encode_avatar_prompt(encoders, "a person talks")
    # 256 - 1 text slots + the tower's 16 image tokens (576 for CLIP-L/336: 831 as released)
    assert embeds.text_states.shape[1] == 255 + 16 and text_only.text_states.shape[1] == 256
    n = embeds.num_tokens[0]
    assert embeds.text_mask[0, :n].all() and not embeds.text_mask[0, n:].any()     # real tokens first
    other = encode_avatar_prompt(encoders, "a person talks", 1 - image)
    assert not torch.allclose(other.text_states[:, :n], embeds.text_states[:, :n])
    # the padding comes after the image tokens: the states of the text before them do not see the image
    k = n - 16 - 1
    torch.testing.assert_close(other.text_states[:, :k], embeds.text_states[:, :k])
    torch.testing.assert_close(embeds.text_states_2, text_only.text_states_2)         # CLIP-L: the prompt alone


def test_face_mask_of_any_size_is_resized_to_the_latent_grid(demo, whisper8):
    mask = torch.zeros(1, 100, 80)
    mask[:, 20:60, 20:60] = 1
    cond = prepare(demo, whisper8, speech_like(0.5), face_mask=mask)
    assert cond.face_mask.shape == (1, 8, 8) and 0 <= cond.face_mask.min() < cond.face_mask.max() <= 1


def test_no_mask_is_the_whole_frame(short):
    assert torch.equal(short.face_mask, torch.ones(1, 8, 8))


def test_frame_cache_runs_cached_steps_and_leaves_the_model_clean(model, short):
    options = AvatarOptions(steps=16, seed=1)     # the scaled rule caches some of 16 steps (below 15: none)
    full = sample_avatar_latents(model, short, options)
    cached = sample_avatar_latents(model, short, replace(options, frame_cache=True))
    assert torch.isfinite(cached).all() and not torch.equal(cached, full)     # some steps ran one block only
    assert model.block_passes == []                                           # the cache removed itself
    assert torch.equal(sample_avatar_latents(model, short, options), full)


def test_image_sizes():
    assert avatar_size(720, 1280) == (704, 1216)          # spec B.6 examples
    assert avatar_size(1024, 1024) == (704, 704)
    assert avatar_size(64, 64) == (64, 64)                # the toy world keeps its size
    assert avatar_size(70, 50) == (64, 48)
    assert avatar_size(1024, 1024, None) == (1024, 1024)


def test_small_odd_image_is_rounded_to_multiples_of_16(demo, whisper8):
    cond = prepare(demo, whisper8, speech_like(0.5), image=face_picture(70, 50))
    assert (cond.height, cond.width) == (64, 48) and cond.ref_latents.shape[-2:] == (8, 6)
    assert cond.face_mask.shape == (1, 8, 6)


def test_generate_avatar_reports_progress(demo, whisper8, model):
    events = []
    video = generate_avatar(model, demo["vae"], demo["encoders"], whisper8, face_picture(), speech_like(0.6),
                            "a person talks", AvatarOptions(steps=3, seed=4), callback=events.append, tile=False)
    assert video.shape == (1, 3, 15, 64, 64)
    assert [e.step for e in events if e.stage == "sample"] == [1, 2, 3]


def test_vae_moments_mean_is_the_encode_mode(demo):
    vae = demo["vae"]
    clip = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    mean, logvar = vae.encode_moments(clip, tile=False)
    assert mean.shape == logvar.shape == (1, 4, 3, 4, 4)
    torch.testing.assert_close(mean, vae.encode(clip, tile=False))
