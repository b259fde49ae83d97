"""Sound files that cannot drive an avatar: each a clear InputError (expected / found / what to do), no
ffmpeg process left behind, nothing written."""
import struct
import wave

import pytest

from hyvideo_core.audio_io import load_audio
from hyvideo_core.errors import InputError
from tests.avatar.audio_fixtures import ffmpeg, tone, write_wav
from tests.robustness.checks import ffmpeg_children, wait_until

pytestmark = pytest.mark.robustness


def _missing(d):
    return d / "nowhere.wav"


def _folder(d):
    (d / "a_folder.wav").mkdir()
    return d / "a_folder.wav"


def _empty(d):
    (d / "empty.mp3").write_bytes(b"")
    return d / "empty.mp3"


def _text(d):
    (d / "notes.wav").write_text("this is a text file, not a recording\n" * 20)
    return d / "notes.wav"


def _zero_length_wav(d):
    with wave.open(str(d / "zero.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return d / "zero.wav"


def _unknown_codec_wav(d):
    data = b"\x01\x02" * 8000
    fmt = struct.pack("<HHIIHH", 0x7777, 1, 16000, 32000, 2, 16)        # a format tag no decoder knows
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (d / "odd_codec.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return d / "odd_codec.wav"


def _video_without_sound(d):
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:r=25:d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(d / "silent_film.mp4"))
    return d / "silent_film.mp4"


def _truncated_mp3(d):
    ffmpeg("-i", str(write_wav(d / "t.wav", tone(440, 1.0, 16000), 16000)), "-c:a", "libmp3lame", str(d / "t.mp3"))
    head = (d / "t.mp3").read_bytes()[:40]                      # tags and a piece of one frame header
    (d / "cut.mp3").write_bytes(head)
    return d / "cut.mp3"


CASES = {
    "missing": (_missing, "not found"),
    "folder": (_folder, "expected a file"),
    "empty_file": (_empty, "empty (0 bytes)"),
    "text_file": (_text, "does not recognise it"),
    "zero_length_wav": (_zero_length_wav, "no samples"),
    "unknown_codec": (_unknown_codec_wav, "codec is not supported"),
    "video_without_sound": (_video_without_sound, "no audio stream"),
    "truncated_mp3": (_truncated_mp3, "expected"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_sound_file_is_a_clear_error(tmp_path, name):
    make, says = CASES[name]
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as err:
        load_audio(path)
    message = str(err.value)
    assert says in message, message
    assert str(path.name) in message or "not found" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before          # nothing written beside it
    assert wait_until(lambda: not ffmpeg_children(), 5), ffmpeg_children()
