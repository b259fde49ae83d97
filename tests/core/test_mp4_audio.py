"""Video with sound: write_mp4's AAC track (one ffmpeg run, atomic) and the native-rate audio reader.

Checked with imageio-ffmpeg's own ffmpeg (no ffprobe): the streams ``ffmpeg -i`` lists, and the sound decoded
back with hyvideo_core.audio_io."""
import re
import subprocess

import numpy as np
import pytest

from hyvideo_core.audio_io import load_audio_channels
from hyvideo_core.video_io import fit_audio_to_video, read_video, write_mp4
from tests.avatar.audio_fixtures import tone, write_wav


def streams(path):
    """(video codecs, audio codecs, container duration in s) as ffmpeg reports them."""
    import imageio_ffmpeg

    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, timeout=60).stderr
    video = re.findall(r"Stream #\d+:\d+.*?: Video: (\w+)", text)
    audio = re.findall(r"Stream #\d+:\d+.*?: Audio: (\w+)", text)
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text).groups()
    return video, audio, int(h) * 3600 + int(m) * 60 + float(s)


def frames(n, h=32, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def dominant_hz(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples))
    return np.fft.rfftfreq(samples.size, 1 / rate)[int(spectrum.argmax())]


@pytest.mark.parametrize("seconds", [0.6, 1.0, 2.5], ids=["padded", "exact", "cut"])
def test_sound_is_fitted_to_the_video(tmp_path, seconds):
    rate = 44100
    sound = tone(440, seconds, rate, channels=2).T                    # (2, N)
    path = write_mp4(frames(25), tmp_path / "v.mp4", fps=25, audio=(sound, rate))
    video, audio, duration = streams(path)
    assert video == ["h264"] and audio == ["aac"], (video, audio)
    assert abs(duration - 1.0) < 0.03
    back, back_rate = load_audio_channels(path)
    assert back_rate == rate and back.shape == (2, rate)               # exactly 1 s: 25 frames at 25 fps
    heard = back[0, :int(min(seconds, 1.0) * rate) - 2048]
    assert abs(dominant_hz(heard, rate) - 440) < 5
    assert np.abs(back[1]).max() < np.abs(back[0]).max()              # channels kept apart (right is quieter)
    if seconds < 1:
        assert np.abs(back[:, int(seconds * rate) + 2048:]).max() < 0.01   # silence after the sound
    assert read_video(path)[0].shape[0] == 25


def test_streamed_frames_get_sound_of_their_duration(tmp_path):
    rate = 16000
    path = write_mp4(iter(list(frames(20))), tmp_path / "v.mp4", fps=10, audio=(tone(300, 3.0, rate)[:, 0], rate))
    video, audio, duration = streams(path)
    assert video == ["h264"] and audio == ["aac"]
    back, _ = load_audio_channels(path)
    assert back.shape[1] == 2 * rate               # exactly 2 s (before: ffmpeg's -shortest gave up to 2.94 s)


def test_unusual_rate_is_resampled_and_metadata_kept(tmp_path):
    from hyvideo_core.video_io import read_metadata

    path = write_mp4(frames(12), tmp_path / "v.mp4", fps=12, metadata={"prompt": "p"},
                     audio=(tone(500, 1.0, 12345)[:, 0], 12345))
    back, rate = load_audio_channels(path)
    assert rate == 48000 and back.shape == (1, 48000)
    assert read_metadata(path) == {"prompt": "p"}


def test_fit_audio_to_video_cuts_and_pads():
    sound = np.ones((2, 100), np.float32)
    assert fit_audio_to_video(sound, 100, 5, 10).shape == (2, 50)
    padded = fit_audio_to_video(sound, 100, 30, 10)
    assert padded.shape == (2, 300) and padded[:, 100:].max() == 0 and padded[:, :100].min() == 1


def test_native_reader_keeps_channels_and_rate(tmp_path):
    samples = tone(440, 0.5, 48000, channels=2)
    back, rate = load_audio_channels(write_wav(tmp_path / "s.wav", samples, 48000))
    assert rate == 48000 and back.shape == (2, 24000) and back.dtype == np.float32
    np.testing.assert_allclose(back, samples.T, atol=1 / 32767 + 1e-6)
