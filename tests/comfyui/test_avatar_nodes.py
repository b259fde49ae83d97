"""Talking-avatar nodes inside a real ComfyUI server: workflows/api/avatar.json runs on the embedded toy avatar
and toy Whisper and saves an mp4 whose AAC sound track is as long as the video, which is as long as the
speech; a text-to-video model given avatar conditioning, and the reverse, are clear errors."""

import numpy as np
import pytest

import server as harness
from workflow_files import REPO, api, mp4_streams
from hyvideo_core.audio_io import load_audio_channels
from hyvideo_core.video_io import read_video

AVATAR_NODES = ["HVS_AudioEncoderLoader", "HVS_AvatarConditioning", "HVS_LoadAudio"]
SPEECH = REPO / "workflows" / "inputs" / "hvs_avatar_speech.wav"
FAST = {"6": {"steps": 3}}
TOY = "[embedded] toy world"


def saved_video(server, result):
    files = [f for f in result.files() if f["kind"] == "gifs"]
    assert len(files) == 1, result.files()
    return server.output_path(files[0])


def test_example_inputs_are_small_and_committed():
    from PIL import Image

    assert SPEECH.stat().st_size < 100_000
    sound, rate = load_audio_channels(SPEECH)
    assert rate == 16000 and sound.shape == (1, 25600)                 # 1.6 s: 40 frames at 25 fps
    assert Image.open(SPEECH.with_name("hvs_avatar_reference.png")).size == (64, 64)


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_avatar_nodes_are_listed_with_the_embedded_toy_avatar(comfyui_server):
    info = comfyui_server.object_info()
    assert set(AVATAR_NODES) <= set(info)
    assert "[embedded] toy avatar" in info["HVS_LoadTransformer"]["input"]["required"]["model_name"][0]
    assert "[embedded] toy whisper" in info["HVS_AudioEncoderLoader"]["input"]["required"]["encoder_name"][0]
    cond = info["HVS_AvatarConditioning"]["input"]
    assert cond["required"]["fps"][0] == ["25", "12.5"]
    assert cond["required"]["motion_intensity"][1]["default"] == 30.0
    assert cond["required"]["head_motion"][1]["default"] == 25.0
    assert cond["optional"]["mask"][0] == "MASK"


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_avatar_workflow_saves_a_video_as_long_as_the_speech_with_its_sound(comfyui_server, queue_prompt):
    result = queue_prompt(api("avatar", **FAST), timeout=600)
    path = saved_video(comfyui_server, result)
    assert mp4_streams(path) == (["h264"], ["aac"])
    frames, fps = read_video(path)
    assert fps == 25 and frames.shape == (40, 64, 64, 3)               # 1.6 s of speech at 25 fps
    sound, rate = load_audio_channels(path)
    assert rate == 16000 and sound.shape == (1, 25600)                 # the whole speech, no more
    speech, _ = load_audio_channels(SPEECH)
    assert np.corrcoef(np.abs(sound[0]), np.abs(speech[0]))[0, 1] > 0.8    # the same sound, through AAC


def test_a_face_mask_of_another_size_is_resized(comfyui_server, queue_prompt):
    wf = api("avatar", **FAST)
    wf["30"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 24, "height": 40}}
    wf["4"]["inputs"]["mask"] = ["30", 0]
    frames, _ = read_video(saved_video(comfyui_server, queue_prompt(wf, timeout=600)))
    assert frames.shape == (40, 64, 64, 3)


def test_text_to_video_model_given_avatar_conditioning_is_a_clear_error(queue_prompt):
    wf = api("avatar", **FAST, **{"1": {"model_name": TOY}})
    with pytest.raises(harness.PromptFailed, match="no avatar modules"):
        queue_prompt(wf, timeout=300)


def test_avatar_model_given_text_to_video_conditioning_is_a_clear_error(queue_prompt):
    wf = api("text_to_video", **{"1": {"model_name": "[embedded] toy avatar"}, "2": {"vae_name": TOY},
                                 "3": {"llm_name": TOY, "clip_name": TOY},
                                 "5": {"width": 64, "height": 64, "frames": 9}, "6": {"steps": 2}})
    with pytest.raises(harness.PromptFailed, match="Avatar Conditioning"):
        queue_prompt(wf, timeout=300)


def test_generic_step_cache_on_the_avatar_model_is_a_clear_error(queue_prompt):
    wf = api("avatar", **FAST)
    wf["13"] = {"class_type": "HVS_StepCache", "inputs": {"method": "teacache", "threshold": 0.15}}
    wf["6"]["inputs"]["step_cache"] = ["13", 0]
    with pytest.raises(harness.PromptFailed, match="does not apply to the avatar"):
        queue_prompt(wf, timeout=300)


def test_whisper_folder_in_models_audio_encoders_is_listed(comfyui_server, tmp_path):
    from tests.avatar.audio_fixtures import tiny_whisper_folder

    tiny_whisper_folder(comfyui_server.models_dir / "audio_encoders" / "tiny-whisper")
    names = comfyui_server.object_info()["HVS_AudioEncoderLoader"]["input"]["required"]["encoder_name"][0]
    assert "tiny-whisper/model.safetensors" in names


def test_avatar_checkpoint_in_diffusion_models_loads_as_an_avatar_model(comfyui_server, queue_prompt):
    """A HunyuanVideo-Avatar file picked in the transformer loader gets its avatar modules (before: an error
    telling a ComfyUI user to call a Python function). Given a plain latent, the avatar sampler path answers."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    golden = REPO / "tests" / "avatar" / "golden_avatar.safetensors"
    with safe_open(str(golden), "pt") as f:
        state = {k[len("state."):]: f.get_tensor(k).contiguous() for k in f.keys() if k.startswith("state.")}
    save_file(state, str(comfyui_server.models_dir / "diffusion_models" / "tiny_avatar.safetensors"))
    wf = api("text_to_video", **{"1": {"model_name": "tiny_avatar.safetensors"},
                                 "5": {"width": 64, "height": 64, "frames": 9}, "6": {"steps": 2}})
    with pytest.raises(harness.PromptFailed, match="talking-avatar model \\(tiny-avatar\\)"):
        queue_prompt(wf, timeout=300)


def test_avatar_workflow_gives_the_engine_recipes_video(comfyui_server, queue_prompt):
    """The nodes add nothing of their own: the workflow's frames are generate_avatar's on the same inputs, seed
    and settings (up to H.264 at quality 8)."""
    import torch
    from PIL import Image

    from hyvideo_core import load_text_encoders, load_vae
    from hyvideo_core.apps.avatar import AvatarOptions, generate_avatar, load_whisper
    from hyvideo_core.toy.avatar import load_toy_avatar, toy_whisper_folder
    from hyvideo_core.video_io import to_uint8_frames

    wf = api("avatar", **FAST)
    frames, _ = read_video(saved_video(comfyui_server, queue_prompt(wf, timeout=600)))
    weights = REPO / "hyvideo_core" / "toy" / "weights"
    reference = np.asarray(Image.open(SPEECH.with_name("hvs_avatar_reference.png")).convert("RGB"))
    sampler, cond = wf["6"]["inputs"], wf["4"]["inputs"]
    options = AvatarOptions(steps=sampler["steps"], shift=sampler["shift"], cfg_scale=sampler["cfg"], seed=0,
                            released_schedule=cond["guidance"] == "released schedule")
    torch.set_num_threads(1)
    video = generate_avatar(load_toy_avatar(), load_vae(weights / "vae.safetensors"),
                            load_text_encoders(weights / "text_encoder", weights / "text_encoder_2"),
                            load_whisper(toy_whisper_folder()), reference, str(SPEECH), cond["prompt"], options,
                            negative_prompt=cond["negative_prompt"], add_prompt_prefix=cond["prompt_prefix"],
                            max_text_tokens=cond["text_tokens"])
    expected = to_uint8_frames(video[0])
    assert expected.shape == frames.shape
    assert np.abs(expected.astype(np.int16) - frames.astype(np.int16)).mean() < 3.0


def test_video_length_follows_a_stereo_48k_sound_at_12_5_fps(comfyui_server, queue_prompt):
    """0.8 s of stereo 48 kHz sound at 12.5 fps is 10 frames: the sound is mixed down and resampled for Whisper,
    while the saved video keeps it as it is."""
    from tests.avatar.audio_fixtures import write_wav

    speech, _ = load_audio_channels(SPEECH)
    left = np.interp(np.arange(38400) / 48000, np.arange(25600) / 16000, speech[0])
    write_wav(comfyui_server.input_dir / "hvs_stereo_48k.wav", np.stack([left, 0.5 * left], 1), 48000)
    wf = api("avatar", **FAST, **{"4": {"fps": "12.5"}, "8": {"fps": 12.5}, "20": {"audio": "hvs_stereo_48k.wav"}})
    path = saved_video(comfyui_server, queue_prompt(wf, timeout=600))
    video, fps = read_video(path)
    assert video.shape[0] == 10 and fps == 12.5
    sound, rate = load_audio_channels(path)
    assert rate == 48000 and sound.shape == (2, 38400)
    assert np.abs(sound[1]).max() < np.abs(sound[0]).max()


def test_avatar_frame_cache_from_the_step_cache_node(comfyui_server, queue_prompt):
    wf = api("avatar", **{"6": {"steps": 4}})
    wf["13"] = {"class_type": "HVS_StepCache", "inputs": {"method": "avatar_frame_cache", "threshold": 0.0}}
    wf["6"]["inputs"]["step_cache"] = ["13", 0]
    frames, _ = read_video(saved_video(comfyui_server, queue_prompt(wf, timeout=600)))
    assert frames.shape == (40, 64, 64, 3)


@pytest.mark.slow
def test_avatar_frame_cache_skips_steps_at_the_workflows_16_steps(comfyui_server, queue_prompt):
    """(the scaled release rule runs the whole model at every step below 16 steps; at 16 it skips 4 of them, so
    the result moves a little away from the uncached one)"""
    plain = api("avatar", **{"8": {"filename_prefix": "hvs_plain"}})
    cached = api("avatar", **{"8": {"filename_prefix": "hvs_cached"}})
    cached["13"] = {"class_type": "HVS_StepCache", "inputs": {"method": "avatar_frame_cache", "threshold": 0.0}}
    cached["6"]["inputs"]["step_cache"] = ["13", 0]
    a, _ = read_video(saved_video(comfyui_server, queue_prompt(plain, timeout=900)))
    b, _ = read_video(saved_video(comfyui_server, queue_prompt(cached, timeout=900)))
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
    assert 0 < diff < 40, diff
