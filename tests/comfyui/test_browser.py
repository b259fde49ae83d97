"""Every workflow in workflows/ (and our core-only fixtures) loads in the real ComfyUI front end
(headless Chromium) with no missing node types and with our web extension registered."""
import json
from pathlib import Path

import pytest

import server as harness

pytestmark = [pytest.mark.comfyui, pytest.mark.browser]

FIX = Path(__file__).resolve().parent / "fixtures"
WORKFLOWS = sorted((harness.REPO / "workflows").glob("**/*.json"))
FIXTURES = [FIX / "core_image_ui.json", FIX / "core_conversion_ui.json"]


def _id(p: Path) -> str:
    return str(p.relative_to(harness.REPO)).replace("/", "_").removesuffix(".json")


@pytest.mark.parametrize("path", WORKFLOWS + FIXTURES, ids=[_id(p) for p in WORKFLOWS + FIXTURES])
def test_workflow_loads_in_frontend(load_in_frontend, path):
    wf = json.loads(path.read_text())
    res = load_in_frontend(wf, _id(path))
    assert Path(res["screenshot"]).is_file()
    assert res["missing"] == [], f"missing node types: {res['missing']}"
    assert res["loadError"] is None, res["loadError"]
    assert not res["dialogText"], f"the front end showed a dialog: {res['dialogText'][:500]}"
    assert res["extension_registered"], f"hvs.video_helpers not in {res['extensions']}"
    hvs_errors = [e for e in res["js_errors"] if "hvs" in e.lower() or "hunyuanvideo_suite" in e]
    assert not hvs_errors, hvs_errors
    if not harness.hvs_queue.is_api_format(wf):
        assert res["promptError"] is None, res["promptError"]
        assert res["nodeCount"] == len(wf["nodes"])


def test_converter_matches_frontend_graph_to_prompt(comfyui_server, load_in_frontend):
    """scripts/hvs_queue.ui_to_api gives the same API prompt as the front end's graphToPrompt()"""
    info = comfyui_server.object_info()
    for path in FIXTURES + [p for p in WORKFLOWS if not harness.hvs_queue.is_api_format(json.loads(p.read_text()))]:
        wf = json.loads(path.read_text())
        fe = load_in_frontend(wf, _id(path))["prompt"]
        ours = harness.hvs_queue.ui_to_api(wf, info)

        def norm(prompt):
            out = {}
            for nid, node in prompt.items():
                spec = info[node["class_type"]]["input"]
                names = set(spec.get("required", {})) | set(spec.get("optional", {}))
                out[nid] = (node["class_type"], {k: v for k, v in node["inputs"].items() if k in names})
            return out
        assert norm(ours) == norm(fe), path.name


def test_missing_node_types_are_reported(load_in_frontend):
    wf = json.loads((FIX / "core_image_ui.json").read_text())
    wf["nodes"][4]["type"] = "HVS_NotARealNode"
    res = load_in_frontend(wf, "missing_node_probe")
    assert res["missing"] == ["HVS_NotARealNode"]
    assert res["dialogText"] and "HVS_NotARealNode" in res["dialogText"]
