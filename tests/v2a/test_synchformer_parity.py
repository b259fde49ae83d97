"""Our Synchformer sync features against the official code, through the committed golden fixture
(tests/v2a/synchformer_golden.safetensors, recorded by tests/v2a/make_synchformer_fixture.py from the
official HunyuanVideo-Foley at the commit named in its metadata). Runs without the official source.

The fixture's visual state dict, with the file's other branches beside it, goes through
``load_synchformer`` as a ``.pth`` file (identity key map); the released preprocessing must give the
same uint8 levels, and the features of a 32-frame clip (3 segments) must match the official
``encode_video_with_sync`` at 1e-4 in float32. Every parameter is random, so each part counts.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.golden_files import read_fixture

from hyvideo_core.v2a.features.synchformer import encode_sync_frames, load_synchformer, preprocess_sync_frames

FIXTURE = Path(__file__).resolve().parent / "synchformer_golden.safetensors"
TOL = 1e-4


def _fixture():
    return read_fixture(FIXTURE)


@pytest.fixture(scope="module")
def golden():
    return _fixture()


def official_file(golden, path: Path) -> Path:
    """The fixture's visual tensors plus the audio branch / classifier keys of the official file
    (the loader reads past those: one-element tensors stand in for their 768-wide values)."""
    tensors, metadata = golden
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    state |= {k: torch.zeros(1) for k in json.loads(metadata["unused_keys"])}
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def model(golden, tmp_path_factory):
    return load_synchformer(official_file(golden, tmp_path_factory.mktemp("synch") / "synchformer_state_dict.pth"))


def test_fixture_is_small_and_names_the_official_commit(golden):
    _, metadata = golden
    v2a_fixtures = sum(p.stat().st_size for p in FIXTURE.parent.glob("*.safetensors"))
    assert v2a_fixtures <= 2 * 1024 * 1024
    assert metadata["official_repo"] == "Tencent-Hunyuan/HunyuanVideo-Foley"
    assert len(metadata["official_commit"]) == 40


def test_official_state_dict_loads_with_identity_map(model, golden):
    tensors, metadata = golden
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    ours = model.state_dict()
    assert model.config.name == "synchformer-tiny"
    # every visual tensor of the file is ours under the same name, except the 2-D patch embedding
    # the release builds only to count patches
    assert sorted(set(state) - set(ours)) == ["vfeat_extractor.patch_embed.proj.bias",
                                              "vfeat_extractor.patch_embed.proj.weight"]
    assert set(ours) <= set(state)
    assert all(torch.equal(ours[k], state[k]) for k in ours)
    assert any(k.startswith("transformer.") for k in json.loads(metadata["unused_keys"]))


@pytest.mark.parametrize("case, frames", [("clip", [0, 13, 31]), ("portrait", [0, 1])], ids=["landscape", "portrait"])
def test_preprocessing_matches_the_release(golden, case, frames):
    tensors, _ = golden
    pixels = preprocess_sync_frames(tensors[f"{case}.frames"])
    assert pixels.shape[1:] == (3, 224, 224) and pixels.dtype == torch.uint8
    expected = tensors[f"{case}.pixels"]
    assert torch.equal(pixels[frames][..., ::2, ::2], expected)


@pytest.mark.parametrize("batch_size", [1, 2, 8], ids=["one_segment_at_a_time", "straddling", "all_at_once"])
def test_features_match_official(model, golden, batch_size):
    tensors, _ = golden
    out = encode_sync_frames(model, tensors["clip.frames"], batch_size=batch_size)
    expected = tensors["clip.out"]
    assert out.shape == expected.shape == (1, 24, 12)      # 3 segments x 8 tokens
    assert expected.abs().mean() > 0.1                     # a real signal
    torch.testing.assert_close(out, expected, rtol=0, atol=TOL)


def test_comfy_float_images_give_the_same_features(model, golden):
    tensors, _ = golden
    frames = tensors["clip.frames"]
    torch.testing.assert_close(encode_sync_frames(model, frames.float() / 255), tensors["clip.out"], rtol=0, atol=TOL)


def test_mixed_precision_autocast_runs_close_to_float32(model, golden):
    """The release runs under float16 autocast on CUDA; CPU bfloat16 autocast takes the same mixed-dtype
    paths here (float32 positions and LayerNorms meeting half-precision matmuls)."""
    tensors, _ = golden
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encode_sync_frames(model, tensors["clip.frames"])
    assert out.dtype == torch.float32
    assert (out - tensors["clip.out"]).abs().max() < 0.05 * tensors["clip.out"].abs().max()


def test_each_segment_sees_its_own_frames(model, golden):
    """Changing the last 8 frames changes only the last segment's tokens (segments: 0-15, 8-23, 16-31)."""
    tensors, _ = golden
    frames = tensors["clip.frames"].clone()
    frames[24:] = 255 - frames[24:]
    out = encode_sync_frames(model, frames)
    expected = tensors["clip.out"]
    torch.testing.assert_close(out[:, :16], expected[:, :16], rtol=0, atol=TOL)
    assert (out[:, 16:] - expected[:, 16:]).abs().max() > 1e-2


OFFICIAL = os.environ.get("HUNYUANVIDEO_FOLEY_SRC")
SCRIPT = Path(__file__).resolve().parent / "make_synchformer_fixture.py"
needs_official = pytest.mark.skipif(not OFFICIAL, reason="set HUNYUANVIDEO_FOLEY_SRC to a checkout/export of "
                                                         "Tencent-Hunyuan/HunyuanVideo-Foley")


def _need_reference_packages():
    probe = subprocess.run([sys.executable, "-c", "import timm, omegaconf, torchvision"], capture_output=True)
    if probe.returncode:
        pytest.skip("the official Synchformer code needs timm, omegaconf and torchvision (not suite requirements); "
                    "install them somewhere and put that on PYTHONPATH")


@pytest.mark.slow
@needs_official
def test_released_size_matches_official():
    """Ours against the official model at the released size (12 x 768, 12 heads), one segment."""
    _need_reference_packages()
    subprocess.run([sys.executable, str(SCRIPT), OFFICIAL, "--commit", "unused", "--check-released-size"], check=True)


@pytest.mark.slow
@needs_official
def test_fixture_rerecords_identically_from_the_official_source(tmp_path, golden):
    """The committed fixture is what the script makes from the official code (its own process: the
    script installs stand-in modules). It needs timm, omegaconf and torchvision importable."""
    tensors, metadata = golden
    _need_reference_packages()
    out = tmp_path / "again.safetensors"
    script = SCRIPT
    subprocess.run([sys.executable, str(script), OFFICIAL, "--commit", metadata["official_commit"], "--out", str(out)],
                   check=True)
    again, _ = read_fixture(out)
    assert sorted(again) == sorted(tensors)
    for k, v in tensors.items():
        torch.testing.assert_close(again[k], v, rtol=0, atol=1e-6, msg=k)
