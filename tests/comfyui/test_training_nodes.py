"""LoRA nodes inside a real ComfyUI server: a folder of toy clips -> Cache Training Set -> Train LoRA
(the workflow's API twin) writes a ComfyUI-format LoRA and a loss plot; Load LoRA changes the
sampler's output at strength 1, gives exactly the base output at strength 0 and leaves the loaded
model alone; bad input gives the engine's clear errors."""
import json
import uuid
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import server as harness
from hyvideo_core.finetune.lora import detect_lora_format

REPO = Path(__file__).resolve().parents[2]
TRAINING_NODES = ["HVS_CacheDataset", "HVS_TrainLoRA", "HVS_LoadLoRA"]
CLIPS, STEPS = 4, 3


def api(name: str, **overrides) -> dict:
    wf = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    for node_id, inputs in overrides.items():
        wf[node_id]["inputs"].update(inputs)
    return wf


@pytest.fixture(scope="module")
def dataset(comfyui_server):
    """Four 9-frame 32x32 toy-world clips as .mp4 with same-name .txt captions, in the server's
    input folder (dataset folders must be inside ComfyUI's input or output folder)."""
    from hyvideo_core.toy.world import ToyWorld
    from hyvideo_core.video_io import write_mp4

    folder = comfyui_server.input_dir / "lora_dataset"
    folder.mkdir(exist_ok=True)
    for i, clip in enumerate(ToyWorld(7, frames=9, height=32, width=32).clips(CLIPS)):
        write_mp4(clip.frames, folder / f"clip{i}.mp4")
        (folder / f"clip{i}.txt").write_text(clip.caption)
    return folder


def _train_workflow(server, dataset, cache_folder, **train_inputs):
    """Queue the train_lora workflow on the dataset folder (3 steps at rank 4 on the embedded tiny model);
    returns the result, the LoRA name and the paths it was written to."""
    name = f"hvs_test_{uuid.uuid4().hex[:8]}"
    wf = api("train_lora", **{
        "14": {"dataset_folder": str(dataset), "buckets": "5x32x32", "cache_folder": str(cache_folder)},
        "15": {"steps": STEPS, "rank": 4, "alpha": 4.0, "learning_rate": 0.01, "batch_size": 2, "lora_name": name,
               "overwrite": False, **train_inputs},
        "5": {"width": 32, "height": 32, "frames": 5}, "6": {"steps": 2}})
    result = server.queue_prompt(wf, timeout=600)
    folders = [server.comfy_dir / "models" / "loras", server.models_dir / "loras"]
    return result, name, [f / f"{name}.safetensors" for f in folders if (f / f"{name}.safetensors").is_file()]


def output_folder(server, name: str) -> Path:
    """A new folder under the server's output folder (cache folders must be inside it)."""
    return server.output_dir / "hvs_test_caches" / f"{name}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def lora_cache_folder(comfyui_server):
    return output_folder(comfyui_server, "lora_cache")


@pytest.fixture(scope="module")
def trained(comfyui_server, dataset, lora_cache_folder):
    result, name, paths = _train_workflow(comfyui_server, dataset, lora_cache_folder)
    try:
        yield result, name, paths
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def test_training_nodes_are_listed_with_tooltips(comfyui_server):
    info = comfyui_server.object_info()
    for node_id in TRAINING_NODES:
        node = info[node_id]
        assert node["description"].strip()
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name}"
    assert "[embedded] tiny demo" in info["HVS_TrainLoRA"]["input"]["required"]["base_model"][0]
    assert info["HVS_TrainLoRA"]["output"] == ["STRING", "IMAGE"]


@pytest.mark.comfyui_flavours(*harness.FLAVOURS)   # the train_lora workflow's API twin
def test_cache_and_train_write_a_comfyui_lora_and_a_loss_plot(comfyui_server, trained):
    from PIL import Image

    result, name, paths = trained
    assert len(paths) == 1, f"{name}.safetensors not written to models/loras"
    tensors = load_file(str(paths[0]))
    assert detect_lora_format(tensors) == "comfyui"
    assert "diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight" in tensors
    assert tensors["diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight"].shape[0] == 4
    assert float(tensors["diffusion_model.double_blocks.0.img_attn_qkv.alpha"]) == 4.0
    with safe_open(str(paths[0]), "pt") as f:
        assert f.metadata()["hyvideo_variant"] == "tiny"
    plots = [f for f in result.files() if f["node"] == "16"]
    assert len(plots) == 1, result.files()
    with Image.open(comfyui_server.output_path(plots[0])) as img:
        assert img.size == (512, 320)
    progress = [d for e, d in result.events if e == "progress"]
    assert {"value": STEPS, "max": STEPS} in [{"value": d["value"], "max": d["max"]} for d in progress]  # per step
    assert {"value": CLIPS, "max": CLIPS} in [{"value": d["value"], "max": d["max"]} for d in progress]  # per clip
    assert [f for f in result.files() if f["kind"] == "gifs"], "the test render with the LoRA was not saved"


def test_prior_cache_input_reaches_the_trainer(comfyui_server, dataset, lora_cache_folder, trained):
    """The same run with the dataset's own cache as prior (weight 5): a LoRA is written, and it differs
    from the run without a prior (same seed, same data), so the prior term took part."""
    _, _, plain = trained
    result, name, paths = _train_workflow(comfyui_server, dataset, lora_cache_folder, prior_cache=["14", 0],
                                          prior_weight=5.0)
    try:
        assert len(paths) == 1, f"{name}.safetensors not written to models/loras"
        a, b = load_file(str(plain[0])), load_file(str(paths[0]))
        assert a.keys() == b.keys()
        assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith("lora_B.weight"))
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def _sample_with(model_node: str, prefix: str) -> dict:
    """A sampler + SaveLatent branch on the model output of ``model_node`` (ids suffixed by prefix)."""
    return {f"6{prefix}": {"class_type": "HVS_Sampler", "inputs": {
                "seed": 3, "steps": 2, "shift": 7.0, "embedded_guidance": 6.0, "cfg": 1.0, "denoise": 1.0,
                "model": [model_node, 0], "embeds": ["4", 0], "latent": ["5", 0]}},
            f"20{prefix}": {"class_type": "SaveLatent", "inputs": {
                "samples": [f"6{prefix}", 0], "filename_prefix": f"hvs_lora_test/{prefix}_{uuid.uuid4().hex[:6]}"}}}


def _base_prompt() -> dict:
    wf = api("text_to_video", **{"5": {"width": 32, "height": 32, "frames": 5}})
    return {k: wf[k] for k in ("1", "2", "3", "4", "5")}


def _latents(server, result) -> dict:
    out = {}
    for node_id, node_out in result.outputs.items():
        for item in node_out.get("latents") or []:
            out[node_id[2:]] = load_file(str(server.output_path(item)))["latent_tensor"]
    return out


def test_load_lora_strength_and_the_input_model_left_alone(comfyui_server, trained):
    _, name, paths = trained
    assert paths
    lora = {"class_type": "HVS_LoadLoRA", "inputs": {"model": ["1", 0], "lora_name": f"{name}.safetensors",
                                                     "strength": 1.0}}
    first = {**_base_prompt(), "10": lora, **_sample_with("10", "one")}
    with_lora = _latents(comfyui_server, comfyui_server.queue_prompt(first, timeout=300))["one"]
    # the loader's cached model (fed to Load LoRA above) against a freshly loaded one, and strength 0
    second = {**_base_prompt(), **_sample_with("1", "base"),
              "11": {"class_type": "HVS_LoadTransformer",
                     "inputs": {"model_name": "[embedded] tiny demo", "weight_dtype": "fp32", "attention": "sdpa"}},
              **_sample_with("11", "fresh"),
              "12": {**lora, "inputs": {**lora["inputs"], "strength": 0.0}}, **_sample_with("12", "zero")}
    out = _latents(comfyui_server, comfyui_server.queue_prompt(second, timeout=300))
    assert torch.equal(out["base"], out["fresh"]), "Load LoRA changed the loaded model it was given"
    assert torch.equal(out["zero"], out["base"])
    assert (with_lora - out["base"]).abs().max() > 1e-4


def test_lora_for_another_model_is_a_clear_error(comfyui_server):
    from hyvideo_core.finetune.lora import inject_lora, save_lora
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.variants import get_variant

    with torch.device("meta"):
        toy = HunyuanVideoTransformer(get_variant("toy").transformer)
    inject_lora(toy, rank=2, targets=("img_attn_qkv",))
    toy.to_empty(device="cpu")
    loras = comfyui_server.models_dir / "loras"
    name = f"toy_lora_{uuid.uuid4().hex[:8]}.safetensors"
    save_lora(toy, loras / name)
    try:
        wf = {**_base_prompt(), "10": {"class_type": "HVS_LoadLoRA", "inputs": {
            "model": ["1", 0], "lora_name": "", "strength": 1.0, "lora_path": str(loras / name)}},
            **_sample_with("10", "bad")}
        with pytest.raises(harness.PromptFailed, match="different model size"):
            comfyui_server.queue_prompt(wf, timeout=120)
    finally:
        (loras / name).unlink()
    wf["10"]["inputs"]["lora_path"] = str(loras / "missing.safetensors")
    with pytest.raises(harness.PromptFailed, match="does not exist"):
        comfyui_server.queue_prompt(wf, timeout=120)


def _cache_and_train(**cache_inputs) -> dict:
    wf = api("train_lora", **{"14": cache_inputs, "15": {"steps": 1, "rank": 2}})
    return {k: wf[k] for k in ("2", "3", "14", "15")}


def test_bad_dataset_folders_give_the_engines_errors(comfyui_server, dataset):
    empty = comfyui_server.input_dir / f"empty_{uuid.uuid4().hex[:8]}"
    empty.mkdir()
    with pytest.raises(harness.PromptFailed, match="holds no videos.*clip1.mp4 \\+ clip1.txt"):
        comfyui_server.queue_prompt(_cache_and_train(dataset_folder=str(empty), buckets="5x32x32",
                                                     cache_folder=str(output_folder(comfyui_server, "c1"))),
                                    timeout=120)
    with pytest.raises(harness.PromptFailed, match="has 9 frames, fewer than the shortest bucket"):
        comfyui_server.queue_prompt(_cache_and_train(dataset_folder=str(dataset), buckets="17x32x32",
                                                     cache_folder=str(output_folder(comfyui_server, "c2"))),
                                    timeout=120)
    with pytest.raises(harness.PromptRejected, match="not FRAMESxHEIGHTxWIDTH"):
        comfyui_server.queue_prompt(_cache_and_train(dataset_folder=str(dataset), buckets="17x32"), timeout=120)


def test_cancel_stops_training_within_a_step_and_writes_no_file(comfyui_server, dataset):
    import threading

    name = f"hvs_test_{uuid.uuid4().hex[:8]}"
    wf = _cache_and_train(dataset_folder=str(dataset), buckets="5x32x32",
                          cache_folder=str(output_folder(comfyui_server, "c")))
    wf["15"]["inputs"].update(steps=400, lora_name=name)
    seen = []

    def on_event(kind, data):
        if kind == "progress" and data.get("max") == 400:
            seen.append(data["value"])
            if len(seen) == 1:
                threading.Thread(target=comfyui_server.interrupt).start()

    result = comfyui_server.queue_prompt(wf, timeout=300, check=False, on_event=on_event)
    assert result.status == "interrupted"
    assert seen and max(seen) <= seen[0] + 3
    folders = [comfyui_server.comfy_dir / "models" / "loras", comfyui_server.models_dir / "loras"]
    assert not [p for f in folders for p in f.glob(f"{name}*")]
    assert not list(comfyui_server.temp_dir.rglob("hvs_lora_run_*"))      # the run folder is cleaned up


def test_generated_toy_clips_as_the_dataset(comfyui_server):
    name = f"hvs_test_{uuid.uuid4().hex[:8]}"
    cache = output_folder(comfyui_server, "toy")
    wf = _cache_and_train(dataset_folder="toy:2", buckets="5x32x32", cache_folder=str(cache))
    wf["15"]["inputs"].update(lora_name=name)
    comfyui_server.queue_prompt(wf, timeout=300)
    written = [p for f in (comfyui_server.comfy_dir / "models" / "loras", comfyui_server.models_dir / "loras")
               for p in f.glob(f"{name}.safetensors")]
    assert len(written) == 1
    written[0].unlink()
    assert len(json.loads((cache / "cache.json").read_text())["entries"]) == 2
    wf["14"]["inputs"]["dataset_folder"] = "toy:many"
    with pytest.raises(harness.PromptFailed, match="toy:N or toy:N:SEED"):
        comfyui_server.queue_prompt(wf, timeout=120)


def test_cache_folder_outside_output_is_refused_before_any_work(comfyui_server):
    """Before: `../..` wrote the cache two folders above output/."""
    escape = f"hvs_escape_{uuid.uuid4().hex[:8]}"
    wf = _cache_and_train(dataset_folder="toy:1", buckets="5x32x32", cache_folder=f"../../{escape}")
    with pytest.raises(harness.PromptFailed, match="cache_folder '../../hvs_escape_.*' is outside the folders"):
        comfyui_server.queue_prompt(wf, timeout=120)
    assert not (comfyui_server.output_dir.parent.parent / escape).exists()


def test_lora_path_refusal_does_not_reveal_whether_a_file_exists(comfyui_server):
    """Before: a missing file anywhere was 'does not exist' at queue time, an existing one was accepted."""
    answers = []
    for path in (comfyui_server.log_path, comfyui_server.workdir / "no_such_lora.safetensors"):
        wf = {**_base_prompt(), "10": {"class_type": "HVS_LoadLoRA", "inputs": {
            "model": ["1", 0], "lora_name": "", "strength": 1.0, "lora_path": str(path)}}, **_sample_with("10", "x")}
        with pytest.raises(harness.PromptFailed) as exc:
            comfyui_server.queue_prompt(wf, timeout=120)
        answers.append(exc.value.result.error_text().replace(str(path), "<path>"))
    assert answers[0] == answers[1] and "outside the folders" in answers[0], answers
    for name in (str(comfyui_server.log_path), str(comfyui_server.workdir / "no_such_lora.safetensors")):
        wf = {**_base_prompt(), "10": {"class_type": "HVS_LoadLoRA", "inputs": {
            "model": ["1", 0], "lora_name": name, "strength": 1.0}}, **_sample_with("10", "y")}
        with pytest.raises(harness.PromptRejected) as exc:
            comfyui_server.queue_prompt(wf, timeout=120)
        answers.append(str(exc.value).replace(name, "<path>"))
    assert answers[2] == answers[3] and "is not in models/loras" in answers[2], answers[2:]
