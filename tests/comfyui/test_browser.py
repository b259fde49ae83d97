"""Every workflow in workflows/ (and our core-only fixtures) loads in the real ComfyUI front end
(headless Chromium) with no missing node types, our web extension registered once, no console
error or warning from our pack, our info texts shown, and the same API prompt as our headless
converter. On ComfyUI 0.8 with the newest front end this holds in both node views: the
litegraph canvas and the Vue node view (setting Comfy.VueNodes.Enabled)."""
import json
from pathlib import Path

import pytest

import server as harness

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.comfyui_flavours(*harness.FLAVOURS)]

FIX = Path(__file__).resolve().parent / "fixtures"
WORKFLOWS = sorted((harness.REPO / "workflows").glob("**/*.json"))
FIXTURES = [FIX / "core_image_ui.json", FIX / "core_conversion_ui.json"]
# info texts web/hvs.js shows for nodes of a workflow: prompt token counts, the sampler's estimate
EXPECTED_INFO = {"text_to_video": ("tokens", "latent tokens"), "text_to_video_low_memory": ("tokens", "latent tokens"),
                 "text_to_video_parallel": ("tokens", "latent tokens"),
                 "video_to_video": ("tokens",), "image_to_video": ("tokens",), "train_lora": ("tokens",),
                 "avatar": ("tokens",)}


@pytest.fixture(scope="module", autouse=True)
def fixture_checkpoint(comfyui_server):
    """core_conversion_ui.json names a checkpoint; the new front end flags a workflow whose model
    file is not in models/ (the file is never loaded here, only listed)."""
    path = comfyui_server.models_dir / "checkpoints" / "tiny_model.safetensors"
    path.write_bytes(b"placeholder, only listed")
    yield
    path.unlink(missing_ok=True)


def _id(p: Path) -> str:
    return str(p.relative_to(harness.REPO)).replace("/", "_").removesuffix(".json")


def _normalised(prompt: dict, info: dict) -> dict:
    """class type and the declared inputs of every node (front ends add extra keys such as _meta)"""
    out = {}
    for nid, node in prompt.items():
        spec = info[node["class_type"]]["input"]
        names = set(spec.get("required", {})) | set(spec.get("optional", {}))
        out[nid] = (node["class_type"], {k: v for k, v in node["inputs"].items() if k in names})
    return out


CASES = [(view, p) for view in ("litegraph", "vue") for p in WORKFLOWS + FIXTURES]   # one page per view


@pytest.mark.parametrize("view,path", CASES, ids=[f"{view}-{_id(p)}" for view, p in CASES])
def test_workflow_loads_in_frontend(comfyui_server, load_in_frontend, view, path):
    """(the Vue node view only on the new front end)"""
    wf = json.loads(path.read_text())
    info = comfyui_server.object_info()
    res = load_in_frontend(wf, _id(path), view=view)
    assert Path(res["screenshot"]).is_file()
    assert res["missing"] == [], f"missing node types: {res['missing']}"
    assert res["loadError"] is None, res["loadError"]
    assert not res["dialogText"], f"the front end showed a dialog: {res['dialogText'][:500]}"
    assert res["extension_registered"], f"hvs.video_helpers not in {res['extensions']}"
    assert [u for u in res["hvsScripts"] if u.endswith("/hvs.js")] == [
        f"{comfyui_server.url}/extensions/{harness.PACK_NAME}/hvs.js"], res["hvsScripts"]
    assert not res["pack_messages"], "console messages from our pack:\n" + "\n".join(res["pack_messages"])
    if comfyui_server.flavour.new_frontend and path.parent.name == "workflows":
        for words in EXPECTED_INFO[path.stem]:
            assert any(words in t for t in res["infoTexts"]), f"no '{words}' info text in {res['infoTexts']}"
    if not harness.hvs_queue.is_api_format(wf):
        assert res["promptError"] is None, res["promptError"]
        assert res["nodeCount"] == len(wf["nodes"])
        # scripts/hvs_queue.ui_to_api gives the same API prompt as the front end's graphToPrompt()
        assert _normalised(harness.hvs_queue.ui_to_api(wf, info), info) == _normalised(res["prompt"], info)


def test_missing_node_types_are_reported(load_in_frontend):
    wf = json.loads((FIX / "core_image_ui.json").read_text())
    wf["nodes"][4]["type"] = "HVS_NotARealNode"
    res = load_in_frontend(wf, "missing_node_probe", fresh=True)
    assert res["missing"] == ["HVS_NotARealNode"]
    assert res["dialogText"] and "HVS_NotARealNode" in res["dialogText"]


@pytest.mark.parametrize("view", ["litegraph", "vue"])
def test_load_audio_gets_the_upload_button_and_player_of_core_load_audio(comfyui_server, chromium, view):
    """Our Load Audio declares audio_upload like core's; on the new front end it gets the same upload button
    and player (before: the button's set-up threw for want of the player and the node was not created).
    The old front end has no audio upload and shows the plain list."""
    import browser
    from tests.avatar.audio_fixtures import tone, write_wav

    write_wav(comfyui_server.input_dir / "hvs_browser_tone.wav", tone(440, 0.5, 16000), 16000)
    js = """(() => {
        const node = LiteGraph.createNode("HVS_LoadAudio");
        if (!node) return null;
        app.graph.add(node);
        node.widgets.find((w) => w.name === "audio").value = "hvs_browser_tone.wav";
        const names = node.widgets.map((w) => w.name);
        const player = node.widgets.find((w) => w.name === "audioUI");
        const saved = node.serialize().widgets_values;
        app.graph.remove(node);
        return {names, player: !!player, saved};
    })()"""
    new = comfyui_server.flavour.new_frontend
    with browser.open_frontend(chromium, comfyui_server.url, view=view if new else None) as page:
        page.evaluate("app.refreshComboInNodes ? app.refreshComboInNodes() : null")
        res = page.evaluate(js)
        errors = [e for e in page.js_errors() if "audioUI" in e or "updateUIWidget" in e or "element" in e]
    assert res is not None, "the front end could not create HVS_LoadAudio"
    assert not errors, errors
    assert res["names"][0] == "audio"
    if new:
        assert res["player"] and "upload" in res["names"], res
    assert res["saved"][0] == "hvs_browser_tone.wav"
