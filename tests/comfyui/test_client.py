"""scripts/hvs_queue.py against the real server, with workflows made of core nodes only."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import server as harness

pytestmark = pytest.mark.comfyui

FIX = Path(__file__).resolve().parent / "fixtures"
CLI = harness.REPO / "scripts" / "hvs_queue.py"


def run_cli(url, workflow, out_dir, *extra, timeout=180):
    return subprocess.run([sys.executable, str(CLI), str(workflow), "--server", url, "--out", str(out_dir), *extra],
                          capture_output=True, text=True, timeout=timeout)


def _pixels(path):
    from PIL import Image
    with Image.open(path) as im:
        return im.size, im.convert("RGB").getpixel((0, 0))


def test_cli_api_format(comfyui_server, tmp_path):
    r = run_cli(comfyui_server.url, FIX / "core_image_api.json", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    paths = [Path(p) for p in r.stdout.split()]
    assert len(paths) == 1 and paths[0].is_file() and paths[0].parent == tmp_path / "out"
    assert _pixels(paths[0]) == ((40, 24), (0, 255, 0))
    assert "executing node 2 SaveImage" in r.stderr


def test_cli_ui_format(comfyui_server, tmp_path):
    """PrimitiveNode-driven width, Reroute, bypassed blur, muted preview and a Note."""
    api_out = tmp_path / "api.json"
    r = run_cli(comfyui_server.url, FIX / "core_image_ui.json", tmp_path / "out", "--api-out", str(api_out))
    assert r.returncode == 0, r.stderr
    api = json.loads(api_out.read_text())
    assert sorted(api, key=int) == ["2", "5", "6"]  # virtual, bypassed and muted nodes dropped
    assert api["2"]["inputs"] == {"width": 96, "height": 48, "batch_size": 2, "color": 16711680}
    assert api["5"]["inputs"] == {"image": ["2", 0]}  # through the Reroute and the bypassed blur
    assert api["6"]["inputs"] == {"images": ["5", 0], "filename_prefix": "hvs_ui_fixture"}
    paths = [Path(p) for p in r.stdout.split()]
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    assert _pixels(paths[0]) == ((96, 48), (0, 255, 255))  # red, inverted, not blurred


@pytest.mark.parametrize("name", ["core_invalid_ui.json", "core_invalid_api.json"])
def test_cli_validation_error(comfyui_server, tmp_path, name):
    r = run_cli(comfyui_server.url, FIX / name, tmp_path / "out")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "(EmptyImage)" in r.stderr
    assert ("height" in r.stderr) if "ui" in name else ("color" in r.stderr)
    assert not r.stdout.strip()


def test_cli_execution_error(comfyui_server, tmp_path):
    r = run_cli(comfyui_server.url, FIX / "core_exec_error_api.json", tmp_path / "out")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "node 2 (ImageToMask) failed" in r.stderr and "IndexError" in r.stderr


def test_cli_unreachable_server(tmp_path):
    r = run_cli(f"http://127.0.0.1:{harness.free_port()}", FIX / "core_image_api.json", tmp_path / "out", timeout=60)
    assert r.returncode == 4 and "cannot reach ComfyUI" in r.stderr


def test_cli_missing_node_type(comfyui_server, tmp_path):
    wf = json.loads((FIX / "core_image_ui.json").read_text())
    wf["nodes"][1]["type"] = "HVS_DoesNotExist"
    p = tmp_path / "wf.json"
    p.write_text(json.dumps(wf))
    r = run_cli(comfyui_server.url, p, tmp_path / "out")
    assert r.returncode == 2 and "HVS_DoesNotExist" in r.stderr


EXPECTED_CONVERSION = {
    "1": {"ckpt_name": "tiny_model.safetensors"},
    "2": {"text": "a red square moving right", "clip": ["1", 1]},
    "3": {"text": "", "clip": ["1", 1]},
    "4": {"width": 256, "height": 128, "batch_size": 1},
    "6": {"seed": 5678, "steps": 12, "cfg": 6.5, "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
          "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]},
    "10": {"samples": ["6", 0], "vae": ["1", 2]},
    "11": {"filename_prefix": "hvs/conv", "images": ["10", 0]},
    "13": {},
    "14": {"image": "example.png"},
    "15": {"upscale_method": "bilinear", "width": 64, "height": 48, "crop": "disabled", "image": ["14", 0]},
    "16": {"images": ["15", 0]},
}


def test_ui_to_api_conversion(comfyui_server):
    """seed control widgets, a PrimitiveNode on a converted seed, LoadImage's upload button,
    Reroute chains, a bypassed node between two nodes, a muted branch (its consumer loses the link)."""
    wf = json.loads((FIX / "core_conversion_ui.json").read_text())
    api = harness.hvs_queue.ui_to_api(wf, comfyui_server.object_info())
    assert {k: v["inputs"] for k, v in api.items()} == EXPECTED_CONVERSION
    assert api["6"]["class_type"] == "KSampler" and api["2"]["_meta"] == {"title": "positive"}
    # the PrimitiveNode's value wins over the stale value saved in the converted widget
    next(n for n in wf["nodes"] if n["id"] == 7)["widgets_values"][0] = 4242
    assert harness.hvs_queue.ui_to_api(wf, comfyui_server.object_info())["6"]["inputs"]["seed"] == 4242


def test_ui_to_api_new_frontend_layout(comfyui_server):
    """newer front ends omit the control_after_generate / upload-button slots and save dicts"""
    info = comfyui_server.object_info()
    wf = json.loads((FIX / "core_conversion_ui.json").read_text())
    by_id = {n["id"]: n for n in wf["nodes"]}
    by_id[6]["widgets_values"] = [1234, 12, 6.5, "euler", "normal", 1]
    by_id[14]["widgets_values"] = ["example.png"]
    by_id[15]["widgets_values"] = {"upscale_method": "bilinear", "width": 64, "height": 48, "crop": "disabled"}
    api = harness.hvs_queue.ui_to_api(wf, info)
    assert {k: v["inputs"] for k, v in api.items()} == EXPECTED_CONVERSION


def test_ui_to_api_workflow_saved_before_a_widget_was_added(comfyui_server):
    """a workflow saved before a node gained a trailing optional widget (Train LoRA's prior_weight):
    the saved values keep their names, the new widget gets its default, as the front end does"""
    wf = json.loads((harness.REPO / "workflows" / "train_lora.json").read_text())
    node = next(n for n in wf["nodes"] if n["type"] == "HVS_TrainLoRA")
    node["widgets_values"] = node["widgets_values"][:-1]
    inputs = harness.hvs_queue.ui_to_api(wf, comfyui_server.object_info())[str(node["id"])]["inputs"]
    assert (inputs["seed"], inputs["lora_name"], inputs["overwrite"], inputs["prior_weight"]) == (0, "hvs_lora", True, 1.0)


def test_ui_to_api_ignores_trailing_frontend_widgets(comfyui_server):
    """a front-end-only widget (e.g. a preview) saved after the real ones does not shift values"""
    wf = json.loads((FIX / "core_conversion_ui.json").read_text())
    by_id = {n["id"]: n for n in wf["nodes"]}
    by_id[6]["widgets_values"] = by_id[6]["widgets_values"] + [None]
    by_id[15]["widgets_values"] = by_id[15]["widgets_values"] + ["preview"]
    api = harness.hvs_queue.ui_to_api(wf, comfyui_server.object_info())
    assert {k: v["inputs"] for k, v in api.items()} == EXPECTED_CONVERSION
