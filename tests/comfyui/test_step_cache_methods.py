"""The step-cache node's avatar method in a real ComfyUI server: a text-to-video sampler given it stops with the
message that says what to choose instead."""
import json
from pathlib import Path

import pytest

import server as harness

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def test_step_cache_node_lists_the_avatar_frame_cache(comfyui_server):
    method = comfyui_server.object_info()["HVS_StepCache"]["input"]["required"]["method"]
    assert method[0] == ["teacache", "first_block_cache", "avatar_frame_cache"]
    assert "avatar model only" in method[1]["tooltip"]


def test_text_to_video_with_the_avatar_frame_cache_is_a_clear_error(queue_prompt):
    wf = json.loads((WORKFLOWS / "api" / "text_to_video_low_memory.json").read_text())
    cache = next(k for k, v in wf.items() if v["class_type"] == "HVS_StepCache")
    wf[cache]["inputs"]["method"] = "avatar_frame_cache"
    with pytest.raises(harness.PromptFailed) as failed:
        queue_prompt(wf, timeout=600)
    error = failed.value.result
    assert error.error["node_type"] == "HVS_Sampler"
    assert "avatar model's frame cache" in error.error_text() and "'teacache'" in error.error_text()
