"""Avatar audio front end: decode (wav/mp3/mp4, ComfyUI AUDIO), Whisper features vs transformers' own, windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hyvideo_core.apps.avatar.audio import (audio_windows, audio_windows_for, encode_whisper, load_whisper,
                                            video_frames_for)
from hyvideo_core.audio_io import load_audio
from tests.avatar.audio_fixtures import dominant_frequency, encode_file, tone, write_wav
from tests.avatar.audio_fixtures import whisper, whisper_dir  # noqa: F401  (fixtures)


def _transformers_features(folder, wave: np.ndarray) -> torch.Tensor:
    """transformers' own: each 30 s chunk through the extractor and WhisperModel.encoder, hidden states stacked."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    model = WhisperModel.from_pretrained(folder).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for start in range(0, wave.size, 480000):
            feats = extractor(wave[start:start + 480000], sampling_rate=16000, return_tensors="pt").input_features
            hidden = model.encoder(feats, output_hidden_states=True).hidden_states
            out.append(torch.stack(hidden, dim=2)[0])
    return torch.cat(out)


def _official_windows(feats: torch.Tensor, frames: int, fps: float) -> torch.Tensor:
    """The released rule written out frame by frame (4 zero frames, window of 10 at (f * step) * 2)."""
    step = {25: 1, 12.5: 2}[fps]
    padded = torch.cat([torch.zeros_like(feats[:4]), feats])
    return torch.stack([padded[f * step * 2: f * step * 2 + 10] for f in range(frames)])[None]


def test_features_equal_transformers_for_audio_over_30_s(whisper_dir, whisper):
    rng = np.random.default_rng(0)
    wave = (tone(300, 41, 16000)[:, 0] + 0.05 * rng.standard_normal(41 * 16000)).astype(np.float32)
    ours = encode_whisper(whisper, wave)
    assert ours.shape == (3000, 5, 16)          # two 30 s chunks, embeddings + 4 layers
    torch.testing.assert_close(ours, _transformers_features(whisper_dir, wave), rtol=1e-5, atol=1e-5)
    # the second chunk is encoded on its own sound, not a copy of the first
    assert not torch.allclose(ours[:1500], ours[1500:])


@pytest.mark.parametrize("fps", [25, 12.5])
def test_windows_follow_the_released_rule(fps):
    feats = torch.randn(60, 5, 3)
    frames = 12
    ours = audio_windows(feats, frames, fps)
    assert ours.shape == (1, frames, 10, 5, 3)
    torch.testing.assert_close(ours, _official_windows(feats, frames, fps), rtol=0, atol=0)
    assert torch.equal(ours[0, 0, :4], torch.zeros(4, 5, 3))     # the 4 zero lead-in frames
    assert torch.equal(ours[0, 0, 4:], feats[:6])


def test_windows_past_the_encoded_frames_are_completed_with_zeros():
    feats = torch.randn(20, 5, 3)
    ours = audio_windows(feats, 10, 25)           # last window reads padded frames 18..27 of 24
    assert torch.equal(ours[0, 9, :6], feats[14:20])
    assert torch.equal(ours[0, 9, 6:], torch.zeros(4, 5, 3))


def test_video_frames_for_audio_length():
    assert video_frames_for(32000, 25) == 50 == 32000 // 640
    assert video_frames_for(32000 + 639, 25) == 50
    assert video_frames_for(32000, 12.5) == 25
    assert video_frames_for(639, 25) == 0


def test_wav_decodes_to_its_samples(tmp_path):
    src = tone(440, 1.0, 16000)
    wave, rate = load_audio(write_wav(tmp_path / "a.wav", src, 16000))
    assert rate == 16000 and wave.dtype == np.float32 and wave.shape == (16000,)
    np.testing.assert_allclose(wave, np.round(src[:, 0] * 32767) / 32768, atol=1e-6)


@pytest.mark.parametrize("kind", ["mp3", "mp4"])
def test_stereo_48k_mp3_and_mp4_decode_to_mono_16k(tmp_path, kind):
    src = write_wav(tmp_path / "stereo48k.wav", tone(440, 2.0, 48000, channels=2), 48000)
    path = encode_file(src, tmp_path / f"a.{kind}", video=(kind == "mp4"))
    wave, rate = load_audio(path)
    assert rate == 16000 and wave.ndim == 1
    assert abs(wave.size - 32000) <= 0.1 * 16000          # codec priming/padding only
    assert abs(dominant_frequency(wave, 16000) - 440) < 2
    # mono = mean of the two channels (0.5 and 0.25 amplitude)
    assert 0.33 < np.abs(wave[4000:28000]).max() < 0.42


def test_comfy_audio_dict_is_downmixed_and_resampled(tmp_path):
    stereo = torch.from_numpy(tone(440, 1.5, 48000, channels=2).T.copy())[None]       # (1, 2, N)
    wave, rate = load_audio({"waveform": stereo, "sample_rate": 48000})
    assert rate == 16000 and wave.shape == (24000,)
    assert abs(dominant_frequency(wave, 16000) - 440) < 2
    from_file, _ = load_audio(write_wav(tmp_path / "s.wav", tone(440, 1.5, 48000, channels=2), 48000))
    np.testing.assert_allclose(wave, from_file, atol=2e-4)    # the same ffmpeg resampler on both paths


def test_comfy_audio_dict_at_16k_is_only_downmixed():
    stereo = torch.tensor([[[0.2, 0.4, -0.6], [0.0, 0.2, 0.2]]])
    wave, _ = load_audio({"waveform": stereo, "sample_rate": 16000})
    np.testing.assert_allclose(wave, [0.1, 0.3, -0.2], atol=1e-7)


def test_65_s_of_sound_is_encoded_fully(tmp_path, whisper):
    path = write_wav(tmp_path / "long.wav", tone(220, 65.0, 16000), 16000)
    windows = audio_windows_for(path, whisper, fps=25)
    assert windows.shape == (1, 65 * 25, 10, 5, 16)
    wave, _ = load_audio(path)
    feats = encode_whisper(whisper, wave)
    assert feats.shape[0] == 4500                           # three 30 s chunks
    # the last video frame reads sound from the third chunk (not zeros, not a repeat of the first)
    torch.testing.assert_close(windows[0, -1], feats[2 * 1624 - 4: 2 * 1624 + 6])


def test_single_safetensors_file_as_comfyui_keeps_it_gives_the_same_features(tmp_path):
    """ComfyUI's models/audio_encoders holds one file with the keys of WhisperForConditionalGeneration."""
    from safetensors.torch import save_file
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=128, encoder_layers=2, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=16,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(1)
    model = WhisperForConditionalGeneration(config).eval()
    model.save_pretrained(tmp_path / "folder", safe_serialization=True)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path / "folder")
    save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "whisper.safetensors"))
    wave = tone(350, 4.0, 16000)[:, 0]
    from_file = load_whisper(tmp_path / "whisper.safetensors")
    assert (from_file.layers, from_file.dim) == (3, 128)
    torch.testing.assert_close(encode_whisper(from_file, wave), _transformers_features(tmp_path / "folder", wave),
                               rtol=1e-5, atol=1e-5)
