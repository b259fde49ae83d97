"""The toy world: determinism, captions, held-out split, geometry checks."""
import numpy as np
import pytest

from hyvideo_core.errors import InputError
from hyvideo_core.toy.world import (ATTRIBUTES, ToyWorld, all_captions, caption_of, clip_for_prompt,
                                    heldout_prompts, is_heldout, parse_caption, to_tensor, to_uint8,
                                    train_prompts)


def test_same_seed_same_clips_bit_for_bit():
    a, b = ToyWorld(3), ToyWorld(3)
    for i in (0, 1, 17):
        assert a[i].caption == b[i].caption
        assert np.array_equal(a[i].frames, b[i].frames)
    assert not np.array_equal(ToyWorld(4)[0].frames, a[0].frames)


def test_clip_format_and_caption_template():
    clip = ToyWorld(0)[5]
    assert clip.frames.shape == (17, 64, 64, 3) and clip.frames.dtype == np.uint8
    attrs = parse_caption(clip.caption)
    assert attrs == clip.spec.attributes
    assert clip.caption == caption_of(*(attrs[k] for k in ("colour", "shape", "direction", "speed", "background")))
    assert clip.caption.startswith("a ") and clip.caption.endswith(" background")
    t = clip.tensor()
    assert t.shape == (3, 17, 64, 64) and float(t.min()) >= -1 and float(t.max()) <= 1
    assert np.array_equal(to_uint8(t), clip.frames)


def test_heldout_split_is_fixed_disjoint_and_large():
    held, train = heldout_prompts(), train_prompts()
    assert len(held) >= 100 and len(train) > len(held)
    assert set(held).isdisjoint(train) and set(held) | set(train) == set(all_captions())
    assert held == heldout_prompts()  # no seed involved
    world = ToyWorld(11)
    assert not any(is_heldout(world.spec(i).caption) for i in range(300))
    assert all(is_heldout(ToyWorld(11, split="heldout").spec(i).caption) for i in range(50))


def test_geometries_bucketed_and_shape_stays_in_frame():
    world = ToyWorld(1, geometries=[(17, 64, 64), (33, 128, 96), (21, 64, 128)])
    seen = set()
    for i in range(30):
        spec = world.spec(i)
        seen.add((spec.frames, spec.height, spec.width))
        for f in (0, spec.frames - 1):
            x, y = spec.centre(f)
            assert spec.size / 2 <= x <= spec.width - spec.size / 2
            assert spec.size / 2 <= y <= spec.height - spec.size / 2
    assert len(seen) == 3


def test_every_attribute_value_occurs():
    specs = [ToyWorld(2, split="all").spec(i) for i in range(400)]
    from hyvideo_core.toy import world as w
    for attr, values in (("colour", w.COLOURS), ("shape", w.SHAPES), ("direction", w.DIRECTIONS),
                         ("speed", w.SPEEDS), ("background", w.BACKGROUNDS)):
        assert {getattr(s, attr) for s in specs} == set(values)


@pytest.mark.parametrize("frames,h,w", [(16, 64, 64), (17, 60, 64), (17, 64, 16), (1, 64, 64)])
def test_bad_geometry_is_a_clear_error(frames, h, w):
    with pytest.raises(InputError, match="toy clip"):
        ToyWorld(0, frames=frames, height=h, width=w)


def test_bad_caption_is_a_clear_error():
    with pytest.raises(InputError, match="not a toy-world caption"):
        parse_caption("a cat walks on the grass")
    with pytest.raises(InputError):
        clip_for_prompt("a pink circle moving left slowly on a dark background")
    assert set(ATTRIBUTES) == set(parse_caption(heldout_prompts()[0]))


def test_new_concept_captions_stay_out_of_the_base_splits():
    from hyvideo_core.toy.world import NEW_BACKGROUNDS, concept_prompts

    base = set(all_captions())
    for word in NEW_BACKGROUNDS:
        train, held = concept_prompts(word, "train"), concept_prompts(word, "heldout")
        assert train and held and not set(train) & set(held)
        assert not (set(train) | set(held)) & base
        assert all(parse_caption(c)["background"] == word for c in train + held)
    world = ToyWorld(1, prompts=concept_prompts("orange", "train"))
    clip = world[0]
    assert parse_caption(clip.caption)["background"] == "orange"
    assert tuple(int(v) for v in clip.frames[0, 0, 0]) == NEW_BACKGROUNDS["orange"]
    with pytest.raises(InputError, match="new-concept"):
        concept_prompts("gray", "train")
    with pytest.raises(InputError, match="at least one caption"):
        ToyWorld(0, prompts=[])
    with pytest.raises(InputError, match="not a toy-world caption"):
        ToyWorld(0, prompts=["a cat"])
