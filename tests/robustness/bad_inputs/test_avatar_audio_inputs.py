"""Avatar audio inputs out of the ordinary: silence, stereo 48 kHz, sound longer than the released caps, and
bad AUDIO values, fps and Whisper folders. Each is a clear InputError or a documented fallback."""
import json
import shutil

import numpy as np
import pytest
import torch

from hyvideo_core.apps.avatar.audio import audio_windows, audio_windows_for, encode_whisper, load_whisper
from hyvideo_core.audio_io import load_audio
from hyvideo_core.errors import InputError
from tests.avatar.audio_fixtures import tone, write_wav
from tests.avatar.audio_fixtures import whisper, whisper_dir  # noqa: F401  (fixtures)

pytestmark = pytest.mark.robustness


# -- documented fallbacks ------------------------------------------------------------------------------------

def test_silent_file_gives_the_windows_of_whisper_of_silence(tmp_path, whisper):
    path = write_wav(tmp_path / "quiet.wav", np.zeros((32000, 1), np.float32), 16000)
    windows = audio_windows_for(path, whisper, fps=25)
    assert windows.shape == (1, 50, 10, 5, 16) and torch.isfinite(windows).all()
    expected = audio_windows(encode_whisper(whisper, np.zeros(32000, np.float32)), 50, 25)
    torch.testing.assert_close(windows, expected, rtol=0, atol=0)


def test_stereo_48k_is_resampled_to_mono_16k(tmp_path, whisper):
    path = write_wav(tmp_path / "stereo48k.wav", tone(440, 2.0, 48000, channels=2), 48000)
    wave, rate = load_audio(path)
    assert (rate, wave.shape) == (16000, (32000,))
    mono16k = write_wav(tmp_path / "mono16k.wav", tone(440, 2.0, 16000)[:, :1] * 0.75, 16000)
    torch.testing.assert_close(audio_windows_for(path, whisper), audio_windows_for(mono16k, whisper),
                               rtol=0, atol=5e-3)


def test_sound_longer_than_the_released_caps_gets_every_window(tmp_path, whisper):
    """The release stops at 400 frames (16 s) of the first 30 s; here 40 s gives all 1000 frames, to be cut
    into the sampler's circular windows."""
    path = write_wav(tmp_path / "long.wav", tone(200, 40.0, 16000), 16000)
    windows = audio_windows_for(path, whisper, fps=25)
    assert windows.shape[1] == 1000
    assert windows[0, 800:].abs().sum() > 0          # past 30 s: real features, not zeros


def test_more_video_frames_than_sound_are_windows_of_silence(tmp_path, whisper):
    path = write_wav(tmp_path / "short.wav", tone(300, 1.0, 16000), 16000)
    windows = audio_windows_for(path, whisper, fps=25, video_frames=129)
    assert windows.shape[1] == 129 and torch.isfinite(windows).all()


def test_whisper_folder_without_preprocessor_config_uses_the_standard_extractor(tmp_path, whisper_dir, whisper):
    bare = tmp_path / "bare"
    shutil.copytree(whisper_dir, bare)
    (bare / "preprocessor_config.json").unlink()
    wave = tone(500, 3.0, 16000)[:, 0]
    torch.testing.assert_close(encode_whisper(load_whisper(bare), wave), encode_whisper(whisper, wave))


# -- clear errors --------------------------------------------------------------------------------------------

def _stereo(n=1600):
    return torch.zeros(1, 2, n)


BAD_AUDIO = {
    "batch_of_two": ({"waveform": torch.zeros(2, 1, 1600), "sample_rate": 16000}, "one clip at a time"),
    "one_dimensional": ({"waveform": torch.zeros(1600), "sample_rate": 16000}, "(1, channels, samples)"),
    "not_a_tensor": ({"waveform": [0.0] * 100, "sample_rate": 16000}, "(1, channels, samples)"),
    "no_sample_rate": ({"waveform": _stereo()}, "sample_rate"),
    "zero_sample_rate": ({"waveform": _stereo(), "sample_rate": 0}, "sample_rate"),
    "no_samples": ({"waveform": _stereo(0), "sample_rate": 16000}, "found 0 samples"),
    "nan_samples": ({"waveform": torch.full((1, 1, 100), float("nan")), "sample_rate": 16000}, "NaN"),
    "over_the_length_limit": ({"waveform": _stereo(48000), "sample_rate": 16000, "max": 1.0}, "limit"),
}


@pytest.mark.parametrize("name", list(BAD_AUDIO))
def test_bad_comfy_audio_is_a_clear_error(name):
    audio, says = BAD_AUDIO[name]
    audio = dict(audio)
    limit = audio.pop("max", 3600.0)
    with pytest.raises(InputError, match="AUDIO") as err:
        load_audio(audio, max_seconds=limit)
    assert says in str(err.value)


def test_file_over_the_length_limit_is_a_clear_error(tmp_path):
    path = write_wav(tmp_path / "long.wav", tone(300, 3.0, 16000), 16000)
    with pytest.raises(InputError, match="longer than the 1 s limit"):
        load_audio(path, max_seconds=1.0)


@pytest.mark.parametrize("fps", [24, 30, 0, "25"])
def test_fps_other_than_25_or_12_5_is_a_clear_error(fps):
    with pytest.raises(InputError, match="25"):
        audio_windows(torch.zeros(100, 5, 4), 4, fps)


def test_sound_shorter_than_one_frame_is_a_clear_error(tmp_path, whisper):
    path = write_wav(tmp_path / "blip.wav", tone(300, 0.02, 16000), 16000)
    with pytest.raises(InputError, match="at least one video frame"):
        audio_windows_for(path, whisper)


def test_empty_waveform_is_a_clear_error(whisper):
    with pytest.raises(InputError, match="mono 16 kHz"):
        encode_whisper(whisper, np.zeros(0, np.float32))


def _no_folder(d, src):
    return d / "whisper-tiny"


def _no_config(d, src):
    shutil.copytree(src, d / "w")
    (d / "w" / "config.json").unlink()
    return d / "w"


def _pickle_only(d, src):
    shutil.copytree(src, d / "w")
    (d / "w" / "model.safetensors").rename(d / "w" / "pytorch_model.bin")
    return d / "w"


def _not_whisper(d, src):
    shutil.copytree(src, d / "w")
    (d / "w" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    return d / "w"


def _broken_weights(d, src):
    shutil.copytree(src, d / "w")
    (d / "w" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    return d / "w"


def _other_safetensors_file(d, src):
    from safetensors.torch import save_file

    save_file({"encoder.feature_projection.weight": torch.zeros(4, 4)}, str(d / "wav2vec2.safetensors"))
    return d / "wav2vec2.safetensors"


def _pickle_file(d, src):
    (d / "whisper.pt").write_bytes(b"\x80\x04K\x01.")
    return d / "whisper.pt"


BAD_FOLDERS = {"no_folder": (_no_folder, "found neither"), "not_safetensors_file": (_pickle_file, "found neither"),
               "other_safetensors_file": (_other_safetensors_file, "expected Whisper weights"), "no_config": (_no_config, "no config.json"),
               "pickle_only": (_pickle_only, "no .safetensors"), "not_whisper": (_not_whisper, "Whisper"),
               "broken_weights": (_broken_weights, "could not load")}


@pytest.mark.parametrize("name", list(BAD_FOLDERS))
def test_bad_whisper_folder_is_a_clear_error(tmp_path, whisper_dir, name):
    make, says = BAD_FOLDERS[name]
    with pytest.raises(InputError, match="audio encoder") as err:
        load_whisper(make(tmp_path, whisper_dir))
    assert says in str(err.value)
