"""Image-to-video nodes inside a real ComfyUI server: the workflow's API twin runs on the embedded
tiny models; wrong inputs give clear errors."""
import json
from pathlib import Path

import pytest
import torch

import server as harness
from hyvideo_core.video_io import read_video

REPO = Path(__file__).resolve().parents[2]
I2V_NODES = ["HVS_LoadImageEncoder", "HVS_ImageToVideoConditioning"]
SMALL = {"4": {"frames": 9, "base_size": 64}, "6": {"steps": 2}}


def api(name: str, **overrides) -> dict:
    wf = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    for node_id, inputs in overrides.items():
        wf[node_id]["inputs"].update(inputs)
    return wf


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_i2v_nodes_are_listed_with_tooltips(comfyui_server):
    info = comfyui_server.object_info()
    for node_id in I2V_NODES:
        node = info[node_id]
        assert node["description"].strip()
        for name, spec in node["input"]["required"].items():
            assert spec[1].get("tooltip"), f"{node_id}.{name}"
    assert "[embedded] tiny demo" in info["HVS_LoadImageEncoder"]["input"]["required"]["vision_name"][0]


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_image_to_video_workflow_runs(comfyui_server, queue_prompt):
    result = queue_prompt(api("image_to_video", **SMALL), timeout=600)
    files = [f for f in result.files() if f["kind"] == "gifs"]
    assert len(files) == 1, result.files()
    frames, _ = read_video(comfyui_server.output_path(files[0]))
    assert frames.shape[0] == 9 and frames.shape[1] % 32 == 0 and frames.shape[2] % 32 == 0


def test_mask_instead_of_image_is_rejected(comfyui_server):
    wf = api("image_to_video", **SMALL)
    wf["4"]["inputs"]["image"] = ["10", 1]          # LoadImage's MASK output
    with pytest.raises(harness.PromptRejected):
        comfyui_server.queue_prompt(wf, timeout=120)


def test_a_batch_of_images_is_a_clear_error(comfyui_server):
    wf = api("image_to_video", **SMALL)
    wf["20"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["10", 0], "amount": 3}}
    wf["4"]["inputs"]["image"] = ["20", 0]
    with pytest.raises(harness.PromptFailed, match="batch of 3"):
        comfyui_server.queue_prompt(wf, timeout=300)


def test_latent_concat_model_in_a_text_to_video_workflow(comfyui_server):
    from hyvideo_core import save_transformer
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.variants import get_variant

    torch.manual_seed(0)
    model = HunyuanVideoTransformer(get_variant("tiny-i2v-concat").transformer)
    model.variant = "tiny-i2v-concat"
    save_transformer(model, comfyui_server.models_dir / "diffusion_models" / "tiny_i2v_concat.safetensors")
    t2v = api("text_to_video", **{"1": {"model_name": "tiny_i2v_concat.safetensors"},
                                  "5": {"width": 64, "height": 64, "frames": 5}, "6": {"steps": 1}})
    with pytest.raises(harness.PromptFailed, match="image-to-video model"):
        comfyui_server.queue_prompt(t2v, timeout=300)
    # and the 16-channel-style conditioning given to it names the fix
    i2v = api("image_to_video", **SMALL, **{"1": {"model_name": "tiny_i2v_concat.safetensors"}})
    with pytest.raises(harness.PromptFailed, match="latent_concat"):
        comfyui_server.queue_prompt(i2v, timeout=300)


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)
def test_bad_frame_count_is_rejected_at_queue_time(comfyui_server):
    """like Empty HunyuanVideo Latent's (before: an execution error after the encoders had run)"""
    with pytest.raises(harness.PromptRejected) as exc:
        comfyui_server.queue_prompt(api("image_to_video", **{**SMALL, "4": {"frames": 30, "base_size": 64}}), timeout=120)
    errors = exc.value.node_errors["4"]["errors"]
    assert [e["extra_info"]["input_name"] for e in errors] == ["frames"], errors
    assert "4n+1" in errors[0]["details"] and "29 or 33" in errors[0]["details"]
