"""The native-rate reader behind the Load Audio node (load_audio_channels) on the same bad sound files as
load_audio: each a clear InputError, nothing written, no ffmpeg process left."""
import pytest

from hyvideo_core.audio_io import load_audio_channels
from hyvideo_core.errors import InputError
from tests.robustness.bad_files.test_audio_files import CASES
from tests.robustness.checks import ffmpeg_children, wait_until

pytestmark = pytest.mark.robustness


@pytest.mark.parametrize("name", list(CASES))
def test_bad_sound_file_is_a_clear_error_at_native_rate(tmp_path, name):
    make, says = CASES[name]
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as err:
        load_audio_channels(path)
    message = str(err.value)
    assert says in message, message
    assert str(path.name) in message or "not found" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert wait_until(lambda: not ffmpeg_children(), 5), ffmpeg_children()
