"""web/hvs.js in the real front end: snapping, token counts, memory estimate, inline video
previews, and no pollution of widgets_values. HVS node types are registered in the page from
made-up definitions (the real nodes come from nodes/)."""
import json

import pytest

import browser
import server as harness

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.comfyui_flavours(*harness.FLAVOURS)]


def _def(name, required, output=(), output_node=False):
    return {"name": name, "display_name": name, "category": "HVS/test", "description": "",
            "python_module": f"custom_nodes.{harness.PACK_NAME}",     # the new front end requires it
            "input": {"required": required}, "output": list(output), "output_name": list(output),
            "output_is_list": [False] * len(output), "output_node": output_node}


DEFS = {
    "HVS_TestEmptyVideoLatent": _def("HVS_TestEmptyVideoLatent", {
        "width": ["INT", {"default": 848, "min": 16, "max": 4096, "step": 16}],
        "height": ["INT", {"default": 480, "min": 16, "max": 4096, "step": 16}],
        "frames": ["INT", {"default": 49, "min": 1, "max": 1025, "step": 4}],
    }, ["LATENT"]),
    "HVS_TestTextEncode": _def("HVS_TestTextEncode", {"prompt": ["STRING", {"multiline": True, "default": ""}]}, ["HVS_EMBEDS"]),
    "HVS_TestSampler": _def("HVS_TestSampler", {"latent": ["LATENT"], "steps": ["INT", {"default": 30, "min": 1, "max": 200}]}, ["LATENT"]),
    "HVS_TestSaveVideo": _def("HVS_TestSaveVideo", {"latent": ["LATENT"]}, [], output_node=True),
    "HVS_TestNoWidgets": _def("HVS_TestNoWidgets", {"latent": ["LATENT"]}, ["LATENT"]),
}

JS = r"""
(async (defs) => {
  const u = await import("/extensions/hunyuanvideo_suite/hvs_utils.js");
  const r = {};
  r.unit = {
    f50: u.snapFrames(50), f48: u.snapFrames(48), f0: u.snapFrames(0), f129: u.snapFrames(129),
    s850: u.snap16(850), s7: u.snap16(7), tok: u.estimateTokens("A red square moves to the right, slowly."),
    lt: u.latentTokens(1280, 720, 129), mem: Math.round(u.estimateMemoryGB(u.latentTokens(1280, 720, 129))),
    mem544: Math.round(u.estimateMemoryGB(u.latentTokens(960, 544, 129))),
    q: u.viewQuery({filename: "a b.mp4", subfolder: "hvs", type: "output", format: "video/h264-mp4"}),
  };
  for (const [k, v] of Object.entries(defs)) await app.registerNodeDef(k, v);
  app.graph.clear();
  const add = (t, x, y) => { const n = LiteGraph.createNode(t); n.pos = [x, y]; app.graph.add(n); return n; };
  const lat = add("HVS_TestEmptyVideoLatent", 50, 80);
  const enc = add("HVS_TestTextEncode", 50, 300);
  const smp = add("HVS_TestSampler", 420, 80);
  const sav = add("HVS_TestSaveVideo", 780, 80);
  const bare = add("HVS_TestNoWidgets", 420, 420);
  lat.connect(0, smp, 0); smp.connect(0, sav, 0);
  const set = (node, name, v) => { const w = node.widgets.find((w) => w.name === name); w.value = v; w.callback && w.callback(v, app.canvas, node); return w.value; };
  r.frames = set(lat, "frames", 50);
  r.width = set(lat, "width", 850);
  r.height = set(lat, "height", 720);
  r.latNotes = lat.hvsInfoLines();
  set(lat, "width", 1280);
  set(lat, "frames", 129);
  r.latNotesAfter = lat.hvsInfoLines();
  set(enc, "prompt", "A red square moves to the right, slowly.");
  r.encNotes = enc.hvsInfoLines();
  r.smpNotes = smp.hvsInfoLines();
  r.bareNotes = bare.hvsInfoLines();
  sav.onExecuted({videos: [{filename: "hvs_clip_00001.mp4", subfolder: "hvs_test", type: "output", format: "video/h264-mp4"}],
                  gifs: [{filename: "hvs_clip_00001.webp", subfolder: "hvs_test", type: "output"}]});
  bare.onExecuted({});  // nothing to show, must not throw
  // the new front end mounts DOM widgets on its next render, the legacy one at once
  app.canvas.setDirty(true, true); app.canvas.draw(true, true);
  for (let i = 0; i < 50 && !document.querySelector("video[data-hvs-preview]"); i++)
    await new Promise((res) => setTimeout(res, 100));
  const vids = [...document.querySelectorAll("video[data-hvs-preview]")];
  const imgs = [...document.querySelectorAll("img[data-hvs-preview]")];
  r.video = vids.map((v) => v.getAttribute("src"));
  r.imgs = imgs.map((v) => v.getAttribute("src"));
  for (let i = 0; i < 100 && !(vids.every((v) => v.readyState >= 1) && imgs.every((m) => m.complete)); i++)
    await new Promise((res) => setTimeout(res, 100));
  r.videoDims = vids.map((v) => [v.videoWidth, v.videoHeight, v.error ? v.error.code : null]);
  r.imgDims = imgs.map((m) => [m.naturalWidth, m.naturalHeight]);
  r.savWidgetsValues = sav.serialize().widgets_values || null;
  r.latWidgetsValues = lat.serialize().widgets_values;
  r.prompt = (await app.graphToPrompt()).output;
  app.canvas.setDirty(true, true); app.canvas.draw(true, true);
  return r;
})
"""

RELOAD_JS = r"""
(async () => {
  const r = {};
  // reload a saved graph with off-grid values: snapped on load with a note
  const g = app.graph.serialize();
  g.nodes.find((n) => n.type === "HVS_TestEmptyVideoLatent").widgets_values = [1000, 500, 30];
  await app.loadGraphData(g);
  const lat2 = app.graph._nodes.find((n) => n.type === "HVS_TestEmptyVideoLatent");
  r.reloaded = lat2.widgets.filter((w) => !w.name.startsWith("hvs_")).map((w) => w.value);  // not our info widget
  r.reloadedNotes = lat2.hvsInfoLines();
  app.canvas.setDirty(true, true); app.canvas.draw(true, true);
  return r;
})
"""


def _write_media(folder):
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    frames = [np.full((48, 64, 3), (40 * i, 0, 255 - 40 * i), np.uint8) for i in range(5)]
    Image.fromarray(frames[0]).save(folder / "hvs_clip_00001.webp", save_all=True,
                                    append_images=[Image.fromarray(f) for f in frames[1:]], duration=100)
    import imageio_ffmpeg

    w = imageio_ffmpeg.write_frames(str(folder / "hvs_clip_00001.mp4"), (64, 48), fps=8, codec="libx264",
                                    pix_fmt_out="yuv420p", macro_block_size=16)
    w.send(None)
    for f in frames:
        w.send(f.tobytes())
    w.close()


def test_hvs_extension_behaviour(comfyui_server, chromium):
    _write_media(comfyui_server.output_dir / "hvs_test")
    view = "litegraph" if comfyui_server.flavour.new_frontend else None
    with browser.open_frontend(chromium, comfyui_server.url, view=view) as page:
        r = page.evaluate(f"{JS}({json.dumps(DEFS)})", timeout=60)
        page.screenshot(browser.ARTIFACTS / f"frontend_{comfyui_server.flavour.name}_hvs_extension.png")
        r.update(page.evaluate(f"{RELOAD_JS}()", timeout=60))
        page.screenshot(browser.ARTIFACTS / f"frontend_{comfyui_server.flavour.name}_hvs_extension_reloaded.png")
        page.send("Runtime.evaluate", {"expression": "0"})
        pack_messages = page.pack_messages()

    u = r["unit"]
    assert (u["f50"], u["f48"], u["f0"], u["f129"]) == (49, 49, 1, 129)
    assert (u["s850"], u["s7"]) == (848, 16)
    assert 8 <= u["tok"] <= 14
    assert u["lt"] == 33 * 45 * 80 and 55 <= u["mem"] <= 65 and 40 <= u["mem544"] <= 50
    assert u["q"] == "/view?filename=a+b.mp4&subfolder=hvs&type=output&format=video%2Fh264-mp4"

    assert (r["frames"], r["width"], r["height"]) == (49, 848, 720)
    assert any("frames 50 → 49" in n for n in r["latNotes"]), r["latNotes"]
    assert any("width 850 → 848" in n for n in r["latNotes"])
    assert r["latNotesAfter"] == []  # valid values clear the notes
    assert any(n.startswith("≈ ") and "tokens" in n for n in r["encNotes"])
    assert any("118,800 latent tokens" in n for n in r["smpNotes"]), r["smpNotes"]
    assert any("GB" in n for n in r["smpNotes"])
    assert r["bareNotes"] == []
    assert r["video"] and "/view?filename=hvs_clip_00001.mp4" in r["video"][0]
    assert r["imgs"] and "hvs_clip_00001.webp" in r["imgs"][0]
    assert r["imgDims"] == [[64, 48]]
    assert r["videoDims"][0][2] is None, f"<video> error code {r['videoDims'][0][2]}"
    assert r["videoDims"][0][:2] == [64, 48], r["videoDims"]
    assert r["savWidgetsValues"] in (None, []), r["savWidgetsValues"]
    assert r["latWidgetsValues"] == [1280, 720, 129]
    assert r["prompt"]["1"]["inputs"] == {"width": 1280, "height": 720, "frames": 129}
    assert r["reloaded"] == [1008, 496, 29]
    assert any("1000 → 1008" in n for n in r["reloadedNotes"])
    assert not pack_messages, "\n".join(pack_messages)
