"""The real ComfyUI starts with our pack, serves our web extension and runs core prompts."""
import urllib.request

import pytest

import server as harness

pytestmark = [pytest.mark.comfyui, pytest.mark.comfyui_flavours(*harness.FLAVOURS)]


def test_server_starts_with_pack_loaded(comfyui_server):
    info = comfyui_server.object_info()
    assert "SaveImage" in info and "EmptyImage" in info
    log = comfyui_server.log_text()
    assert "Import times for custom nodes" in log
    assert harness.PACK_NAME in log, "our pack was not picked up from custom_nodes/"
    assert not comfyui_server.pack_import_failed(), "ComfyUI logged IMPORT FAILED for our pack:\n" + log[-3000:]


def test_no_core_extra_import_failures(comfyui_server):
    """the torchvision shim and the test extra's deps cover everything ComfyUI imports"""
    failed = [l for l in comfyui_server.log_text().splitlines() if l.startswith("IMPORT FAILED")]
    assert not failed, failed


def test_web_directory_is_served_once(comfyui_server):
    client = comfyui_server.client()
    exts = client.get_json("/extensions")
    ours = [e for e in exts if e.startswith(f"/extensions/{harness.PACK_NAME}/")]
    assert f"/extensions/{harness.PACK_NAME}/hvs.js" in ours, exts
    # ComfyUI 0.8 also registers pyproject's [tool.comfy] web folder under the project name: the
    # front end would load hvs.js twice ("Extension named 'hvs.video_helpers' already registered")
    assert [e for e in exts if e.endswith("/hvs.js")] == [f"/extensions/{harness.PACK_NAME}/hvs.js"], exts
    with urllib.request.urlopen(comfyui_server.url + f"/extensions/{harness.PACK_NAME}/hvs.js", timeout=10) as r:
        body = r.read().decode()
    assert "hvs.video_helpers" in body and "registerExtension" in body


def test_queue_prompt_core_nodes(comfyui_server, queue_prompt):
    api = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 32, "batch_size": 2, "color": 0xFF0000}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hvs_smoke"}},
    }
    res = queue_prompt(api, timeout=120)
    assert res.ok and res.status == "success"
    files = res.files()
    assert len(files) == 2 and all(f["kind"] == "images" for f in files)
    assert comfyui_server.output_path(files[0]).is_file()
    png = comfyui_server.view(files[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(e == "executed" for e, _ in res.events)


def test_queue_prompt_execution_error(queue_prompt):
    api = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    with pytest.raises(harness.PromptFailed) as ei:
        queue_prompt(api, timeout=120)
    r = ei.value.result
    assert r.status == "error" and r.error["node_id"] == "2" and r.error["node_type"] == "ImageToMask"
    res = queue_prompt(api, timeout=120, check=False)
    assert not res.ok and "index" in res.error_text().lower()


def test_queue_prompt_validation_error(queue_prompt):
    api = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 999999, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bad"}},
    }
    with pytest.raises(harness.PromptRejected) as ei:
        queue_prompt(api)
    assert "1" in ei.value.node_errors
    assert "width" in str(ei.value)


def test_interrupt_stops_running_prompt(comfyui_server, comfy_interrupt):
    """POST /interrupt while a chain of slow core nodes runs: the prompt ends 'interrupted'."""
    import threading
    import time

    api = {"1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0x808080}}}
    prev = "1"
    for i in range(2, 16):  # ~0.3-0.5 s per blur on 2 CPU cores, checked for interrupt between nodes
        api[str(i)] = {"class_type": "ImageBlur", "inputs": {"image": [prev, 0], "blur_radius": 10, "sigma": 1.0 + i / 100}}
        prev = str(i)
    api["99"] = {"class_type": "PreviewImage", "inputs": {"images": [prev, 0]}}

    started = threading.Event()

    def on_event(etype, data):
        if etype == "executing" and data.get("node") == "3":
            started.set()

    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", comfyui_server.queue_prompt(
        api, timeout=300, check=False, on_event=on_event)))
    t0 = time.monotonic()
    t.start()
    assert started.wait(120), "the slow prompt never started"
    comfy_interrupt()
    t.join(300)
    res = box["r"]
    assert res.status == "interrupted", res.status
    executed = {d.get("node") for e, d in res.events if e == "executed"}
    assert "99" not in executed
    assert time.monotonic() - t0 < 120

    # the server still works afterwards
    res = comfyui_server.queue_prompt({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }, timeout=120)
    assert res.ok
