"""The Foley feature extractors against transformers' own calls, and the release's frame sampling."""
import tracemalloc

import numpy as np
import pytest
import torch

from hyvideo_core.video_io import read_video
from hyvideo_core.v2a.features import (encode_frames, encode_text, load_clap_text, load_siglip_vision,
                                       pick_indices, sample_image_batch, sample_video_file)
from tests.v2a.tiny_feature_models import IMAGE_SIZE, save_tiny_clap, save_tiny_siglip, write_test_video


@pytest.fixture(scope="module")
def siglip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siglip2")
    return folder, save_tiny_siglip(folder)


@pytest.fixture(scope="module")
def clap_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clap")
    return folder, save_tiny_clap(folder)


def test_siglip_features_equal_transformers_own(siglip_folder):
    from transformers import SiglipImageProcessorPil

    folder, reference = siglip_folder
    model = load_siglip_vision(folder)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 5, 24, 40, 3), dtype=np.uint8)     # not square: resized without crop
    ours = encode_frames(model, frames, batch_size=3)                     # batches straddle the two videos
    processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=2,
                                        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    pixels = processor(images=list(frames.reshape(10, 24, 40, 3)), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        theirs = reference.get_image_features(pixel_values=pixels).pooler_output.view(2, 5, -1)
    assert ours.shape == (2, 5, 48)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_siglip_accepts_comfy_float_images(siglip_folder):
    folder, _ = siglip_folder
    model = load_siglip_vision(folder)
    frames = torch.rand(4, 20, 20, 3)
    as_uint8 = (frames * 255).round().to(torch.uint8).numpy()
    torch.testing.assert_close(encode_frames(model, frames), encode_frames(model, as_uint8))


def test_clap_states_equal_transformers_own(clap_folder):
    from transformers import AutoTokenizer

    folder, reference = clap_folder
    encoder = load_clap_text(folder)
    prompts = ["noisy, harsh", " ".join(["a dog barks on the wood floor"] * 2)]     # 44 tokens vs 12
    ours = encode_text(encoder, prompts, text_length=12)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    inputs = tok(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        full = reference.text_model(**inputs).last_hidden_state
    assert inputs["input_ids"].shape[1] > 12
    assert ours.shape == (2, 12, 32)
    torch.testing.assert_close(ours, full[:, :12])
    # the release cuts after encoding: truncating the tokens first would give other states
    cut_first = tok(prompts, padding=True, truncation=True, max_length=12, return_tensors="pt")
    with torch.no_grad():
        early = reference.text_model(**cut_first).last_hidden_state
    assert not torch.allclose(ours[1], early[1], atol=1e-4)


def test_clap_short_prompts_keep_their_length(clap_folder):
    encoder = load_clap_text(clap_folder[0])
    states = encode_text(encoder, ["rain falls", "a car passes by"])
    tokens = encoder.tokenizer(["rain falls", "a car passes by"], padding=True)["input_ids"]
    assert states.shape[:2] == (2, len(tokens[0]))


def test_clap_overlong_prompt_is_cut_to_the_positions(clap_folder):
    encoder = load_clap_text(clap_folder[0])
    states = encode_text(encoder, ["rain " * 200], text_length=100)
    assert states.shape == (1, 78, 32)     # 80 positions less RoBERTa's padding offset (2)
    assert torch.isfinite(states).all()


@pytest.mark.parametrize("source, target, expected", [
    (24, 8, [0, 3, 6, 9, 12, 15, 18, 21, 24]),
    (30, 8, [0, 4, 8, 12, 15, 19, 23, 27, 30]),
    (24, 25, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 24]),
    (30, 25, [0, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24, 26, 27, 28, 29, 30]),
], ids=["24to8", "30to8", "24to25", "30to25"])
def test_pick_indices_follow_the_release(source, target, expected):
    # output frame k is the first source frame at or after k / target seconds (ceil(k·source/target))
    assert pick_indices(source + 1, source, target) == expected


def test_pick_indices_stop_at_max_seconds():
    assert len(pick_indices(24 * 60, 24, 8)) == 15 * 8 + 1          # ticks 0 … 15 s inclusive
    assert len(pick_indices(24 * 60, 24, 25, max_seconds=2.0)) == 2 * 25 + 1


def test_image_batch_sampling_keeps_type():
    images = torch.arange(48, dtype=torch.float32).view(48, 1, 1, 1).expand(48, 2, 2, 3)
    out = sample_image_batch(images, 24, 8)
    assert out.dtype == torch.float32 and out[:, 0, 0, 0].tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33,
                                                                      36, 39, 42, 45]
    array = np.arange(30, dtype=np.uint8).reshape(30, 1, 1, 1).repeat(3, axis=-1)
    assert sample_image_batch(array, 30, 25)[:5, 0, 0, 0].tolist() == [0, 2, 3, 4, 5]


def test_video_file_is_sampled_once_at_both_rates(tmp_path):
    path = write_test_video(tmp_path / "clip.mp4", seconds=2, fps=24)
    frames, fps = sample_video_file(path, (8, 25))
    assert fps == pytest.approx(24)
    assert frames[8.0].shape == (16, 16, 16, 3) and frames[25.0].shape == (49, 16, 16, 3)
    decoded, _ = read_video(path)
    np.testing.assert_array_equal(frames[8.0], decoded[pick_indices(48, 24, 8)])
    np.testing.assert_array_equal(frames[25.0], decoded[pick_indices(48, 24, 25)])


def test_long_video_is_sampled_with_bounded_memory(tmp_path):
    # 11 minutes at 25 fps, 32×32: 16,500 frames, 50 MB decoded; only the first 15 s may be held
    path = write_test_video(tmp_path / "long.mp4", seconds=660, fps=25, size=32)
    tracemalloc.start()
    try:
        frames, _ = sample_video_file(path, (8, 25))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames[8.0].shape[0] == 121 and frames[25.0].shape[0] == 376
    frame_bytes = 32 * 32 * 3
    assert peak < (121 + 376 + 400) * 2 * frame_bytes, f"peak {peak / 1e6:.1f} MB: the file was not streamed"
