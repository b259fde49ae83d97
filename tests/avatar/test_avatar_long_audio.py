"""Long sound through the trained toy avatar (issue 14 acceptance): a toy clip 2.5 windows long shows no seam at the
window boundaries and is exactly as long as its sound.

The toy avatar samples windows of 5 latent frames (17 video frames) moving by 2 every step, so 42 frames of sound
(2.5 windows) take three windows per step over a 13-latent circular buffer. The sound is the toy world's talking
sound (syllable loudness envelope on a voiced buzz) made longer than the training clips; the reference is that
clip's shape at rest. A seam is a jump between two consecutive frames where two windows of the last step meet:
per clip, the frame difference there is compared with the median frame difference inside the windows (the talking
moves the picture every frame, so that median is not zero), and the worst boundary's ratio must stay within 1.5,
for each of six held-out clips.

Not met yet, so marked as an expected failure (strict: it reports when it starts to pass). With the trained toy
weights of 2026-12-08 (point-posterior toy VAE), 16 steps, the face box as the mask, the six clips' boundary ratios
are [2.48 0.48], [1.15 0.54], [0.96 1.52], [1.38 0.95], [0.72 1.97], [0.46 0.82] at frames 16 and 36; at the
released 50 steps the last step's windows meet at frames 4, 24 and 36 and the worst ratios are 0.68, 1.25, 3.16,
3.57, 9.49, 3.03. The toy avatar was trained on single 17-frame clips only, so a window that starts mid-sound (no
first-frame latent there) is out of its training distribution; training on window continuations is the open item.
The length check holds: every clip is exactly as long as its sound.

Six clips of 16 steps x 3 windows x 2 branches: about 15 s on a 2-core CPU."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from hyvideo_core.apps.avatar import (AvatarExtension, AvatarOptions, decode_avatar, prepare_avatar,
                                      sample_avatar_latents, video_frames_for)
from hyvideo_core.apps.avatar.schedule import window_plan
from hyvideo_core.errors import InputError
from hyvideo_core.model.extension import find_extension

FRAMES = 42                       # 2.5 windows of 17 frames
CLIPS = range(6)                  # held-out talking specs (reference, voice, rhythm)
SEAM_RATIO = 1.5


@pytest.fixture(scope="module")
def kit():
    from hyvideo_core.toy.avatar_eval import load_kit

    try:
        return load_kit()
    except InputError as exc:      # the toy avatar weights are made by scripts/train_toy.py avatar
        pytest.skip(f"toy avatar weights are missing: {exc}")


def long_talking(index: int, frames: int = FRAMES):
    """(caption, 16 kHz sound of ``frames`` frames, uint8 reference, face box MASK) of held-out talking spec
    ``index``."""
    from hyvideo_core.toy import talking

    spec = replace(talking.talking_spec(talking.HELDOUT_SEED, index), frames=frames)
    rng = np.random.default_rng([talking.HELDOUT_SEED, index, 0x50D])
    envelope = talking.syllable_envelope(rng, spec.syllable_rate, spec.samples / talking.SAMPLE_RATE,
                                         talking.SAMPLE_RATE)
    sound = talking._speech(rng, spec, envelope)
    reference = talking._render(spec, np.asarray([talking.REST_SCALE]))[0]
    # the face box as the talking clips draw it: the shape's full size and one pixel around
    half = spec.size / 2 + 1
    (x, y), mask = spec.centre, torch.zeros(1, spec.height, spec.width)
    top, left = max(0, int(np.floor(y - half))), max(0, int(np.floor(x - half)))
    mask[:, top:int(np.ceil(y + half)), left:int(np.ceil(x + half))] = 1
    return spec.caption, sound, reference, mask


def frame_differences(video: torch.Tensor) -> np.ndarray:
    """Mean absolute difference (0-255) between frame f and f + 1, for every f."""
    frames = (video[0].clamp(-1, 1) + 1) * 127.5                   # (3, F, H, W)
    return (frames[:, 1:] - frames[:, :-1]).abs().mean(dim=(0, 2, 3)).numpy()


def boundary_pairs(plan, step: int, frames: int, frames_per_latent: int = 4):
    """Frame indices f where frames f and f + 1 lie in different windows of denoising step ``step``: a window
    starting at latent k > 0 meets the one before between frame 4k - 4 (latent k - 1's last) and 4k - 3."""
    starts = [w.latents[0] for w in plan.windows(step)]
    return sorted(frames_per_latent * k - frames_per_latent for k in starts
                  if 0 < k < plan.output_latents and frames_per_latent * k - frames_per_latent + 1 < frames)


STEPS = 16                        # the toy's evaluation setting (hyvideo_core/toy/avatar_eval.py)


def generate_long(kit, index: int):
    caption, sound, reference, mask = long_talking(index)
    audio = {"waveform": torch.from_numpy(sound)[None, None], "sample_rate": 16000}
    # the toy avatar's own sampling (hyvideo_core/toy/avatar_eval.py): 16 steps, shift 3, plain CFG 4
    # against the empty caption, 32 text tokens, no released prompt prefix, the face box as the mask
    options = AvatarOptions(steps=STEPS, shift=3.0, cfg_scale=4.0, seed=index, released_schedule=False)
    cond = prepare_avatar(kit.vae, kit.encoders, kit.whisper, reference, audio, caption, options,
                          negative_prompt="", add_prompt_prefix=False, max_text_tokens=32, face_mask=mask)
    latents = sample_avatar_latents(kit.transformer, cond, options)
    return sound, cond, decode_avatar(kit.vae, latents, cond, tile=False), options


def worst_seams(kit):
    """Per held-out clip, the worst ratio of a window boundary's frame difference to the median inside windows."""
    ext = find_extension(kit.transformer, AvatarExtension)
    worst = []
    for index in CLIPS:
        sound, cond, video, options = generate_long(kit, index)
        assert cond.ref_latents.shape[2] == ext.avatar.window_latents == 5
        assert video.shape[2] == cond.video_frames == video_frames_for(sound.size) == FRAMES
        plan = window_plan(cond.audio_windows.shape[1], ext.avatar.window_latents, ext.avatar.window_shift)
        assert len(plan.windows(0)) == 3                            # several windows per step, circular
        seams = boundary_pairs(plan, options.steps - 1, FRAMES)
        assert len(seams) >= 2                                     # where the last step's windows meet
        diffs = frame_differences(video)
        worst.append(float((diffs[seams] / np.median(np.delete(diffs, seams))).max()))
    return worst


@pytest.mark.xfail(strict=True, reason="the toy avatar shows seams at window boundaries (up to 2.5x at 16 steps); "
                                       "issue 14 keeps this acceptance item open")
def test_long_toy_clips_have_no_seam_and_the_sound_length(kit):
    worst = worst_seams(kit)
    assert max(worst) <= SEAM_RATIO, np.round(worst, 2).tolist()


def test_long_toy_clips_are_as_long_as_their_sound(kit):
    sound, cond, video, _ = generate_long(kit, 0)
    assert video.shape[2] == cond.video_frames == video_frames_for(sound.size) == FRAMES
