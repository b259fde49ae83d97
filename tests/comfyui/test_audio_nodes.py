"""Sound in a real ComfyUI server: Load Audio (HVS) gives core AUDIO without torchaudio, Save Video muxes it
as AAC fitted to the video; bad sound files are clear errors."""

import numpy as np
import pytest

import server as harness
from workflow_files import api, mp4_streams
from hyvideo_core.audio_io import load_audio_channels
from hyvideo_core.video_io import read_video

SMALL = {"5": {"width": 64, "height": 64, "frames": 9}, "6": {"steps": 2}, "8": {"fps": 12.0}}
TONE = "hvs_test_tone.wav"


@pytest.fixture(scope="module")
def tone_file(comfyui_server):
    """3 s of a stereo 48 kHz tone (440 Hz left, half as loud right) in the input folder."""
    from tests.avatar.audio_fixtures import tone, write_wav

    path = write_wav(comfyui_server.input_dir / TONE, tone(440, 3.0, 48000, channels=2), 48000)
    yield path
    path.unlink(missing_ok=True)


def with_sound(workflow: dict, name: str = TONE) -> dict:
    workflow["20"] = {"class_type": "HVS_LoadAudio", "inputs": {"audio": name}}
    workflow["8"]["inputs"]["audio"] = ["20", 0]
    return workflow


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_audio_nodes_are_listed(comfyui_server, tone_file):
    info = comfyui_server.object_info()
    load = info["HVS_LoadAudio"]
    choices, options = load["input"]["required"]["audio"]
    assert TONE in choices and options.get("audio_upload") is True
    assert load["output"] == ["AUDIO"]
    assert info["HVS_SaveVideo"]["input"]["optional"]["audio"][0] == "AUDIO"


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_saved_video_carries_the_sound_cut_to_its_length(comfyui_server, queue_prompt, tone_file):
    result = queue_prompt(with_sound(api("text_to_video", **SMALL)), timeout=600)
    files = [f for f in result.files() if f["kind"] == "gifs"]
    assert len(files) == 1, result.files()
    path = comfyui_server.output_path(files[0])
    assert mp4_streams(path) == (["h264"], ["aac"])
    frames, fps = read_video(path)
    assert frames.shape[0] == 9 and fps == 12
    sound, rate = load_audio_channels(path)
    assert rate == 48000 and sound.shape == (2, 9 * 48000 // 12)          # 0.75 s of the 3 s tone
    assert np.abs(sound[1]).max() < np.abs(sound[0]).max()              # stereo kept


@pytest.mark.comfyui_flavours("0.8")
def test_load_audio_output_plugs_into_core_save_audio(comfyui_server, queue_prompt, tone_file):
    wf = {"1": {"class_type": "HVS_LoadAudio", "inputs": {"audio": TONE}},
          "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "hvs_audio"}}}
    result = queue_prompt(wf, timeout=300)
    saved = [f for f in result.files() if f["kind"] == "audio"]
    assert len(saved) == 1, result.files()
    sound, rate = load_audio_channels(comfyui_server.output_path(saved[0]))
    assert rate == 48000 and sound.shape == (2, 3 * 48000)


def test_empty_sound_file_is_a_clear_error(comfyui_server, queue_prompt):
    (comfyui_server.input_dir / "hvs_empty.wav").write_bytes(b"")
    try:
        with pytest.raises(harness.PromptFailed, match=r"empty \(0 bytes\)"):
            queue_prompt(with_sound(api("text_to_video", **SMALL), "hvs_empty.wav"), timeout=300)
    finally:
        (comfyui_server.input_dir / "hvs_empty.wav").unlink()


def test_text_file_named_wav_is_a_clear_error(comfyui_server, queue_prompt):
    (comfyui_server.input_dir / "hvs_notes.wav").write_text("not a recording\n" * 50)
    try:
        with pytest.raises(harness.PromptFailed, match="does not recognise it as audio"):
            queue_prompt(with_sound(api("text_to_video", **SMALL), "hvs_notes.wav"), timeout=300)
    finally:
        (comfyui_server.input_dir / "hvs_notes.wav").unlink()


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_sound_outside_the_input_folder_is_refused(comfyui_server, queue_prompt, tone_file):
    """refused at queue time; the 2024 release does not validate nodes behind an optional input, so there
    the node itself refuses when it runs"""
    outside = comfyui_server.workdir / "outside.wav"
    outside.write_bytes(tone_file.read_bytes())
    with pytest.raises((harness.PromptRejected, harness.PromptFailed)) as exc:
        queue_prompt(with_sound(api("text_to_video", **SMALL), "../outside.wav"), timeout=300)
    assert "outside the folders this node may use" in str(exc.value)
