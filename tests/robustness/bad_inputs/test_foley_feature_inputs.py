"""Inputs the Foley feature extractors cannot use: each a clear error saying what was expected,
what was found and what to do next (frames, video files, feature-model folders, prompts)."""
import shutil
import subprocess

import numpy as np
import pytest
import torch

from hyvideo_core.errors import CheckpointError, InputError
from hyvideo_core.v2a.features import (FeatureModelMissingError, encode_frames, encode_text, load_clap_text,
                                       load_siglip_vision, sample_image_batch, sample_video_file)
from tests.v2a.tiny_feature_models import save_tiny_clap, save_tiny_siglip, write_test_video

pytestmark = pytest.mark.robustness


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature_models")
    save_tiny_siglip(root / "siglip2")
    save_tiny_clap(root / "clap")
    return root


# ---- image batches --------------------------------------------------------------------------------

@pytest.mark.parametrize("images, fps, message", [
    (torch.zeros(0, 8, 8, 3), 24, r"the image batch has no frames; Foley needs a video"),
    (torch.zeros(1, 8, 8, 3), 24, r"single image \(1 frame\); Foley needs a video\. .*repeat the image"),
    (torch.zeros(8, 8, 3), 24, r"expected an image batch \(N, H, W, 3\); found shape \(8, 8, 3\)"),
    (torch.zeros(4, 8, 8, 3), 0, r"source frame rate must be a positive number .* found 0"),
    (torch.zeros(4, 8, 8, 3), float("nan"), r"source frame rate must be a positive number .* found nan"),
    (torch.zeros(4, 8, 8, 3), -24, r"source frame rate must be a positive number .* found -24"),
], ids=["no_frames", "single_image", "no_batch_axis", "zero_fps", "nan_fps", "negative_fps"])
def test_bad_image_batches(images, fps, message):
    with pytest.raises(InputError, match=message):
        sample_image_batch(images, fps, 8)


@pytest.mark.parametrize("max_seconds", [0, -1, 600], ids=["zero", "negative", "ten_minutes"])
def test_max_seconds_is_bounded(max_seconds):
    with pytest.raises(InputError, match=r"max_seconds must be in \(0, 60\] \(the release uses 15\)"):
        sample_image_batch(torch.zeros(4, 8, 8, 3), 24, 8, max_seconds=max_seconds)


# ---- video files ----------------------------------------------------------------------------------

def _empty(path):
    path.write_bytes(b"")


def _garbage(path):
    path.write_bytes(b"not a video at all " * 50)


def _truncated(path):
    write_test_video(path.with_suffix(".full.mp4"), seconds=2, fps=24)
    path.write_bytes(path.with_suffix(".full.mp4").read_bytes()[:300])


def _audio_only(path):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac",
                    str(path)], check=True, timeout=60)


def _still_image(path):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=16x16",
                    "-frames:v", "1", str(path)], check=True, timeout=60)


@pytest.mark.parametrize("make, name, message", [
    (None, "missing.mp4", r"video file not found"),
    (_empty, "empty.mp4", r"is empty \(0 bytes\); give a video file"),
    (_garbage, "garbage.mp4", r"could not read video .*re-encode it as H\.264 \.mp4"),
    (_truncated, "truncated.mp4", r"could not read video .*re-encode it as H\.264 \.mp4"),
    (_audio_only, "sound.m4a", r"could not read video .*re-encode it as H\.264 \.mp4"),
    (_still_image, "still.png", r"is a single image \(1 frame\); Foley needs a video"),
], ids=["missing", "zero_bytes", "not_a_video", "truncated", "audio_only", "single_image_file"])
def test_bad_video_files(tmp_path, make, name, message):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(InputError, match=message):
        sample_video_file(path)


def test_bad_target_rate_on_a_good_file(tmp_path):
    path = write_test_video(tmp_path / "ok.mp4", seconds=1, fps=24)
    with pytest.raises(InputError, match=r"target frame rates must be positive; found 0"):
        sample_video_file(path, (8, 0))


# ---- frames given to SigLIP2 -----------------------------------------------------------------------

@pytest.mark.parametrize("frames, message", [
    (np.zeros((0, 8, 8, 3), np.uint8), r"no frames to encode: the video is empty \(0 frames\)"),
    (np.zeros((4, 8, 8), np.uint8), r"frames must be \(T, H, W, 3\) or \(B, T, H, W, 3\) RGB; found \(4, 8, 8\)"),
    (np.zeros((4, 8, 8, 4), np.uint8), r"RGB; found \(4, 8, 8, 4\)"),
    (np.zeros((4, 8, 8, 3), np.int64), r"frames must be uint8 or floats in \[0, 1\]; found int64"),
], ids=["no_frames", "grey", "rgba", "int64"])
def test_bad_frames_for_siglip(models, frames, message):
    model = load_siglip_vision(models / "siglip2")
    with pytest.raises(InputError, match=message):
        encode_frames(model, frames)


@pytest.mark.parametrize("prompts, message", [
    ([], r"prompts must be a non-empty list of strings"),
    ([None], r"prompts must be a non-empty list of strings"),
], ids=["no_prompts", "not_text"])
def test_bad_prompts(models, prompts, message):
    encoder = load_clap_text(models / "clap")
    with pytest.raises(InputError, match=message):
        encode_text(encoder, prompts)


# ---- feature-model folders -------------------------------------------------------------------------

def _copy_without(models, tmp_path, which, *drop):
    folder = tmp_path / which
    shutil.copytree(models / which, folder)
    for name in drop:
        (folder / name).unlink()
    return folder


def test_missing_siglip_folder_names_where_to_put_it(tmp_path):
    with pytest.raises(FeatureModelMissingError) as err:
        load_siglip_vision(tmp_path / "nowhere")
    text = str(err.value)
    assert "google/siglip2-base-patch16-512" in text and "models/clip_vision/siglip2-base-patch16-512/" in text
    assert "config.json, model.safetensors" in text and "not found" in text


def test_missing_clap_folder_names_where_to_put_it(tmp_path):
    with pytest.raises(FeatureModelMissingError) as err:
        load_clap_text(tmp_path / "nowhere")
    text = str(err.value)
    assert "laion/larger_clap_general" in text and "models/text_encoders/larger_clap_general/" in text


@pytest.mark.parametrize("which, drop, message", [
    ("siglip2", ["model.safetensors"], r"lacks model\.safetensors or model\.safetensors\.index\.json"),
    ("siglip2", ["config.json"], r"lacks config\.json"),
    ("clap", ["tokenizer.json"], r"lacks tokenizer\.json or vocab\.json"),
    ("clap", ["model.safetensors", "config.json"], r"lacks config\.json, model\.safetensors"),
], ids=["siglip_no_weights", "siglip_no_config", "clap_no_tokenizer", "clap_no_config_no_weights"])
def test_incomplete_model_folders(models, tmp_path, which, drop, message):
    folder = _copy_without(models, tmp_path, which, *drop)
    load = load_siglip_vision if which == "siglip2" else load_clap_text
    with pytest.raises(FeatureModelMissingError, match=message):
        load(folder)


def test_pickle_weights_are_not_read(models, tmp_path):
    folder = _copy_without(models, tmp_path, "siglip2", "model.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FeatureModelMissingError, match=r"pytorch_model\.bin is a pickle and is not read"):
        load_siglip_vision(folder)


def test_a_file_instead_of_a_folder(tmp_path):
    path = tmp_path / "siglip2.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(FeatureModelMissingError, match=r"\(a file, not a folder\)"):
        load_siglip_vision(path)


@pytest.mark.parametrize("which, load, message", [
    ("clap", load_siglip_vision, r"expected a fixed-resolution SigLIP model .* found 'clap'"),
    ("siglip2", load_clap_text, r"expected a CLAP model .* found 'siglip'"),
], ids=["clap_as_siglip", "siglip_as_clap"])
def test_wrong_model_in_the_folder(models, tmp_path, which, load, message):
    folder = tmp_path / which
    shutil.copytree(models / which, folder)
    if which == "siglip2":      # past the file check, so that the model type is what is refused
        (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match=message):
        load(folder)


def test_weights_of_another_model_are_refused(models, tmp_path):
    # a SigLIP config over CLAP's weights: transformers would fill the tower with random values
    folder = tmp_path / "mixed"
    shutil.copytree(models / "siglip2", folder)
    shutil.copy(models / "clap" / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"does not hold the weights the model needs \(missing "):
        load_siglip_vision(folder)


def test_naflex_siglip2_is_refused(models, tmp_path):
    import json

    folder = tmp_path / "naflex"
    shutil.copytree(models / "siglip2", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, model_type="siglip2")))
    with pytest.raises(CheckpointError, match=r"found 'siglip2'\. NaFlex SigLIP2 checkpoints are not"):
        load_siglip_vision(folder)
