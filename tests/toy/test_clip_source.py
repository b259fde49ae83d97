"""Toy-world clips as a training source: the one reader of ``toy:N[:SEED]`` (command line and node)."""
import json

import numpy as np
import pytest

from hyvideo_core.errors import InputError
from hyvideo_core.finetune.__main__ import main as finetune_main
from hyvideo_core.toy.clip_source import ToyClipSource, open_clip_source, parse_toy_source, toy_clips
from hyvideo_core.toy.model import toy_model_paths
from hyvideo_core.toy.world import ToyWorld


@pytest.mark.parametrize("spec, parsed", [("toy:8", ToyClipSource(8, 0)), ("toy:3:7", ToyClipSource(3, 7)),
                                          (" toy:12 ", ToyClipSource(12, 0)), ("clips/toy", None),
                                          ("/data/my videos", None)])
def test_spellings(spec, parsed):
    assert parse_toy_source(spec) == parsed


@pytest.mark.parametrize("spec", ["toy:", "toy:0", "toy:many", "toy:2:x", "toy:-1", "toy:2:3:4"])
def test_misspelt_toy_source_says_how_to_write_it(spec):
    with pytest.raises(InputError, match=r"toy:N or toy:N:SEED .*toy:8"):
        parse_toy_source(spec)


def test_toy_clips_are_the_worlds_clips_at_the_asked_size():
    clips = list(open_clip_source("toy:3:5", [(5, 32, 48)]))
    world = ToyWorld(5, geometries=[(5, 32, 48)])
    assert [c.id for c in clips] == ["toy5_000000", "toy5_000001", "toy5_000002"]
    assert [c.caption for c in clips] == [world[i].caption for i in range(3)]
    assert all(c.frames.shape == (5, 32, 48, 3) for c in clips)
    assert np.array_equal(clips[2].frames, list(toy_clips(3, seed=5, geometries=[(5, 32, 48)]))[2].frames)


def test_anything_else_is_read_as_a_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist or is not a folder"):
        list(open_clip_source(str(tmp_path / "missing")))


def test_cache_command_with_toy_clips(tmp_path, capsys):
    paths = toy_model_paths()
    common = ["--vae", paths.vae, "--text-encoder", paths.text_encoder, "--clip", paths.clip,
              "--buckets", "5x32x32", "--out", str(tmp_path / "cache")]
    assert finetune_main(["cache", "--source", "toy:2:4", *common]) == 0
    entries = json.loads((tmp_path / "cache" / "cache.json").read_text())["entries"]
    assert [e["id"] for e in entries] == ["toy4_000000", "toy4_000001"]
    assert [e["caption"] for e in entries] == [ToyWorld(4)[i].caption for i in range(2)]
    # a misspelt source is refused with the same message as the node's, not a traceback
    assert finetune_main(["cache", "--source", "toy:two", *common]) == 2
    assert "toy:N or toy:N:SEED" in capsys.readouterr().err
