"""Our nodes inside a real ComfyUI server, driven over HTTP and websocket like a headless user."""
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

import server as harness
from cancelling import cancel_after_first_step
from hyvideo_core import load_transformer, save_transformer
from hyvideo_core.demo_models import ensure_demo_models
from hyvideo_core.video_io import read_video

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
OUR_NODES = ["HVS_LoadTransformer", "HVS_LoadVAE", "HVS_LoadTextEncoders", "HVS_TextEncode", "HVS_RewritePrompt",
             "HVS_EmptyVideoLatent", "HVS_Sampler", "HVS_VAEDecode", "HVS_VAEEncode", "HVS_LoadVideo",
             "HVS_SaveVideo", "HVS_LoadImageEncoder", "HVS_ImageToVideoConditioning", "HVS_MemorySettings",
             "HVS_StepCache"]


def api(name: str, **overrides) -> dict:
    """An API twin from workflows/api/, with {node_id: {input: value}} overrides."""
    wf = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    for node_id, inputs in overrides.items():
        wf[node_id]["inputs"].update(inputs)
    return wf


SMALL = {"5": {"width": 64, "height": 64, "frames": 9}, "6": {"steps": 2}}


def saved_video(server, result):
    files = [f for f in result.files() if f["kind"] == "gifs"]
    assert len(files) == 1, result.files()
    return server.output_path(files[0])


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_every_node_is_listed_with_description_and_tooltips(comfyui_server):
    info = comfyui_server.object_info()
    assert set(OUR_NODES) <= set(info), set(OUR_NODES) - set(info)
    # a node whose INPUT_TYPES raises is silently left out of /object_info; ComfyUI logs it
    assert "An error occurred while retrieving information for the 'HVS_" not in comfyui_server.log_text()
    for node_id in [n for n in info if n.startswith("HVS_")]:
        node = info[node_id]
        assert node["description"].strip(), node_id
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert "[embedded] tiny demo" in info["HVS_LoadTransformer"]["input"]["required"]["model_name"][0]


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_text_to_video_runs_and_writes_the_requested_mp4(comfyui_server, queue_prompt):
    result = queue_prompt(api("text_to_video", **SMALL, **{"8": {"fps": 12.0}}), timeout=600)
    frames, fps = read_video(saved_video(comfyui_server, result))
    assert frames.shape == (9, 64, 64, 3) and fps == 12
    progress = [d for e, d in result.events if e == "progress"]
    assert progress and max(d["max"] for d in progress) == 2


@pytest.fixture(scope="module")
def real_layout_models(comfyui_server, tmp_path_factory):
    """Tiny models written into the server's model folders in the released files' layouts: the
    transformer ComfyUI-prefixed in bf16, the VAE, and Hugging Face text-encoder folders."""
    demo = ensure_demo_models(tmp_path_factory.mktemp("demo"))
    models = comfyui_server.models_dir
    model = load_transformer(demo.transformer)
    save_transformer(model, models / "diffusion_models" / "tiny_t2v_bf16.safetensors", dtype=torch.bfloat16,
                     prefix="model.diffusion_model.")
    shutil.copy(demo.vae, models / "vae" / "tiny_vae.safetensors")
    shutil.copytree(demo.text_encoder, models / "text_encoders" / "tiny_llm")
    shutil.copytree(demo.clip, models / "text_encoders" / "tiny_clip")
    return {"1": {"model_name": "tiny_t2v_bf16.safetensors"}, "2": {"vae_name": "tiny_vae.safetensors"},
            "3": {"llm_name": "tiny_llm/model.safetensors", "clip_name": "tiny_clip/model.safetensors"}}


def test_text_to_video_with_model_files_in_real_layouts(comfyui_server, queue_prompt, real_layout_models):
    result = queue_prompt(api("text_to_video", **SMALL, **real_layout_models), timeout=600)
    frames, _ = read_video(saved_video(comfyui_server, result))
    assert frames.shape == (9, 64, 64, 3)


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_video_to_video_workflow_runs_on_a_fresh_install(comfyui_server, queue_prompt):
    """The API twin as shipped, with nothing in the input folder: Load Video's embedded toy clip
    (before: input_video.mp4, which a fresh install does not have)."""
    assert not list(comfyui_server.input_dir.glob("*.mp4"))
    result = queue_prompt(api("video_to_video", **{"9": {"frame_load_cap": 5}, "6": {"steps": 2}}), timeout=600)
    frames, _ = read_video(saved_video(comfyui_server, result))
    assert frames.shape == (5, 128, 128, 3)


def test_video_to_video_on_a_video_from_the_input_folder(comfyui_server, queue_prompt):
    source = api("text_to_video", **SMALL, **{"8": {"filename_prefix": "v2v_source"}})
    clip = saved_video(comfyui_server, queue_prompt(source, timeout=600))
    shutil.copy(clip, comfyui_server.input_dir / "input_video.mp4")
    try:
        result = queue_prompt(api("video_to_video", **{"9": {"video": "input_video.mp4"}, "6": {"steps": 4}}),
                              timeout=600)
    finally:
        (comfyui_server.input_dir / "input_video.mp4").unlink()
    frames, _ = read_video(saved_video(comfyui_server, result))
    assert frames.shape == (9, 64, 64, 3)


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_bad_frame_count_is_rejected_with_an_actionable_message(queue_prompt):
    with pytest.raises(harness.PromptRejected) as exc:
        queue_prompt(api("text_to_video", **{"5": {"frames": 30}}), timeout=120)
    assert "4n+1" in str(exc.value) and "29 or 33" in str(exc.value)
    # named once, under the bad input (before: four times, as width/height/frames/batch_size)
    errors = exc.value.node_errors["5"]["errors"]
    assert [e["extra_info"]["input_name"] for e in errors] == ["frames"], errors


def test_out_of_range_batch_size_gets_comfyuis_own_check(queue_prompt):
    """batch_size left VALIDATE_INPUTS' signature, so ComfyUI's min/max check applies again"""
    with pytest.raises(harness.PromptRejected) as exc:
        queue_prompt(api("text_to_video", **{"5": {"batch_size": 0}}), timeout=120)
    errors = exc.value.node_errors["5"]["errors"]
    assert [e["extra_info"]["input_name"] for e in errors] == ["batch_size"], errors


def test_missing_model_file_is_rejected(queue_prompt):
    with pytest.raises(harness.PromptRejected) as exc:
        queue_prompt(api("text_to_video", **{"1": {"model_name": "hunyuan_video_t2v_720p_bf16.safetensors"}}),
                     timeout=120)
    assert "hunyuan_video_t2v_720p_bf16.safetensors" in str(exc.value)


def test_interrupt_stops_within_a_step_and_leaves_no_file(comfyui_server, queue_prompt, comfy_interrupt):
    before = set(comfyui_server.output_dir.rglob("*.mp4"))
    on_event, steps_seen = cancel_after_first_step(comfy_interrupt, 200)

    long_run = api("text_to_video", **{"5": {"width": 64, "height": 64, "frames": 9}, "6": {"steps": 200}})
    result = queue_prompt(long_run, timeout=600, check=False, on_event=on_event)
    assert result.status == "interrupted"
    assert steps_seen and max(steps_seen) <= steps_seen[0] + 2   # stopped right after the interrupt
    assert set(comfyui_server.output_dir.rglob("*.mp4")) == before
    assert not list(comfyui_server.output_dir.rglob(".partial-*"))


def test_workflow_files_match_their_builder():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(REPO / "scripts" / "build_workflows.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_headless_client_runs_the_ui_workflow_end_to_end(comfyui_server, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(REPO / "scripts" / "hvs_queue.py"), str(WORKFLOWS / "text_to_video.json"),
                          "--server", comfyui_server.url, "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    paths = [Path(p) for p in out.stdout.split()]
    assert len(paths) == 1 and paths[0].suffix == ".mp4" and paths[0].is_file()
    frames, fps = read_video(paths[0])
    assert frames.shape == (33, 128, 128, 3) and fps == 24


def test_headless_client_reports_the_node_error(comfyui_server, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(api("text_to_video", **{"5": {"frames": 30}})))
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "hvs_queue.py"), str(bad),
                          "--server", comfyui_server.url, "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "4n+1" in out.stderr


def test_pack_adds_under_a_second_to_start_up(comfyui_server):
    """ComfyUI logs each pack's import time ("  0.1 seconds: …/custom_nodes/<pack>")."""
    import re

    times = [float(m.group(1)) for m in re.finditer(r"([\d.]+) seconds(?: \(IMPORT FAILED\))?: \S*" + harness.PACK_NAME,
                                                    comfyui_server.log_text())]
    assert times, "no import-time line for our pack in the server log"
    assert times[-1] < 1.0, times


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_low_memory_workflow_runs_with_fp8_and_step_cache(comfyui_server, queue_prompt):
    wf = api("text_to_video_low_memory", **{"5": {"width": 64, "height": 64, "frames": 9}, "6": {"steps": 4}})
    result = queue_prompt(wf, timeout=600)
    frames, _ = read_video(saved_video(comfyui_server, result))
    assert frames.shape == (9, 64, 64, 3)
    log = comfyui_server.log_text()
    assert "quantize_transformer(fp8_e4m3fn): 26 block linears quantised" in log   # all block linears of `tiny`
    import re
    full, cached = map(int, re.findall(r"step cache \(teacache 0.15\): (\d+) full / (\d+) cached", log)[-1])
    assert full + cached == 4 and full >= 1


def test_trained_toy_model_is_selectable_and_runs(comfyui_server, queue_prompt):
    info = comfyui_server.object_info()
    for node, widget in (("HVS_LoadTransformer", "model_name"), ("HVS_LoadVAE", "vae_name"),
                         ("HVS_LoadTextEncoders", "llm_name"), ("HVS_LoadTextEncoders", "clip_name")):
        assert "[embedded] toy world" in info[node]["input"]["required"][widget][0]
    toy = "[embedded] toy world"
    wf = api("text_to_video", **{"1": {"model_name": toy}, "2": {"vae_name": toy},
                                 "3": {"llm_name": toy, "clip_name": toy},
                                 "5": {"width": 64, "height": 64, "frames": 17},
                                 "6": {"steps": 4, "shift": 3.0, "embedded_guidance": 4.0}})
    frames, _ = read_video(saved_video(comfyui_server, queue_prompt(wf, timeout=600)))
    assert frames.shape == (17, 64, 64, 3)
