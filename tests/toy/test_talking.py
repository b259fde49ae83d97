"""Talking clips of the toy world and the avatar yardstick's measurements (pure, no model)."""
import json

import numpy as np
import pytest

from hyvideo_core.errors import InputError
from hyvideo_core.toy import avatar_eval
from hyvideo_core.toy.model import WEIGHTS
from hyvideo_core.toy.talking import (FRAMES, HELDOUT_SEED, OPEN_SCALE, REST_SCALE, SAMPLES_PER_FRAME, TRAIN_SEED,
                                      frame_envelope, talking_clip)
from hyvideo_core.toy.world import COLOURS


def test_clips_are_pure_functions_of_seed_and_index():
    a, b = talking_clip(TRAIN_SEED, 3), talking_clip(TRAIN_SEED, 3)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio) and a.spec == b.spec
    c = talking_clip(HELDOUT_SEED, 3)
    assert not np.array_equal(a.audio, c.audio)
    with pytest.raises(InputError, match=">= 0"):
        talking_clip(TRAIN_SEED, -1)


def test_sound_and_picture_agree():
    clip = talking_clip(TRAIN_SEED, 0)
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (FRAMES * SAMPLES_PER_FRAME,)
    assert float(np.abs(clip.audio).max()) <= 1.0
    assert clip.frames.shape == (FRAMES, 64, 64, 3) and clip.reference.shape == (64, 64, 3)
    assert 0.0 <= clip.envelope.min() and clip.envelope.max() <= 1.0
    # the loudness measured from the sound follows the envelope the picture was drawn from
    assert np.corrcoef(frame_envelope(clip.audio), clip.envelope)[0, 1] > 0.95
    # the shape's area follows the envelope; the reference is the shape at rest
    area = avatar_eval.openness(clip.frames, COLOURS[clip.spec.colour])
    assert np.corrcoef(area, clip.envelope)[0, 1] > 0.98
    rest = avatar_eval.openness(clip.reference[None], COLOURS[clip.spec.colour])[0]
    loudest = area[int(np.argmax(clip.envelope))]
    expected = ((REST_SCALE + OPEN_SCALE * clip.envelope.max()) / REST_SCALE) ** 2
    assert loudest / rest == pytest.approx(expected, rel=0.1)


def test_shape_stays_inside_its_face_box_and_in_place():
    for i in range(10):
        clip = talking_clip(TRAIN_SEED, i)
        mask = clip.face_mask().astype(bool)
        changed = (clip.frames != clip.frames[:1]).any(axis=(0, 3)) | (clip.frames[0] != clip.reference).any(-1)
        assert not (changed & ~mask).any(), i
        s = avatar_eval.stillness(clip.frames, clip.face_box)
        assert s["outside"] == 0.0


def test_caption_words_are_in_the_toy_vocabulary():
    vocab = json.loads((WEIGHTS / "text_encoder" / "tokenizer.json").read_text())["model"]["vocab"]
    words = {w for i in range(40) for w in talking_clip(TRAIN_SEED, i).caption.split()}
    assert words <= set(vocab), words - set(vocab)


def test_the_yardstick_on_the_clips_themselves():
    """On the ground-truth clips the measures find the sync, zero lag, the identity and the stillness."""
    clips = avatar_eval.heldout_pairs(12)
    assert all(c.envelope.max() >= avatar_eval.MIN_PEAK for c in clips)
    gt = avatar_eval.ground_truth_summary(clips)
    assert gt.sync_mean > 0.95 and gt.offset_within_1 == 1.0 and gt.identity >= 0.9 and gt.still_outside == 0.0
    # a frozen picture has no sync; a picture shown 2 frames late has its best lag at +2
    clip = clips[0]
    frozen = avatar_eval.measure(np.repeat(clip.frames[:1], FRAMES, axis=0), clip, "frozen", 0)
    assert frozen.sync == 0.0
    late = np.concatenate([np.repeat(clip.frames[:1], 2, axis=0), clip.frames[:-2]])
    area = avatar_eval.openness(late, COLOURS[clip.spec.colour])
    env = frame_envelope(clip.audio)
    assert avatar_eval.best_offset(area, env) == 2


def test_pearson_of_a_constant_is_zero():
    assert avatar_eval.pearson(np.ones(5), np.arange(5)) == 0.0
    assert avatar_eval.pearson(np.arange(5), np.arange(5) * 2.0) == pytest.approx(1.0)
