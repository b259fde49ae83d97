"""Writes workflows/*.json (UI format 0.4, drag-and-drop) and workflows/api/*.json (their API
twins) from one description per graph, so the two can never drift apart.

    python scripts/build_workflows.py          # rewrite the files
    python scripts/build_workflows.py --check  # exit 1 if the files differ (used by the tests)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "workflows"
EMBEDDED = "[embedded] tiny demo"

# Each node: id -> (type, {input: (src_id, slot)}, [widget values in INPUT_TYPES order], outputs)
# outputs: [(name, type)], position in the canvas grid (col, row).
NOTE = ("These example workflows use the suite's embedded tiny model so they run anywhere (CPU, no downloads).\n"
        "For the released HunyuanVideo: put hunyuan_video_t2v_720p_bf16.safetensors in models/diffusion_models, "
        "hunyuan_video_vae_bf16.safetensors in models/vae, llava_llama3_fp16.safetensors and clip_l.safetensors in "
        "models/text_encoders, pick them in the loaders, and use e.g. 848x480, 61 frames, 30 steps, shift 9, "
        "embedded guidance 6.")

NOTES = {
    "video_to_video": (
        "Video-to-video: Load Video starts on '[embedded] toy clip', a built-in 33-frame clip, so this runs on a fresh "
        "install; put your own video in ComfyUI's input folder and pick it there (refresh the page). denoise 0.6 keeps "
        "the input's layout and motion. " + NOTE),
    "train_lora": (
        "LoRA fine-tuning: Cache Training Set encodes the clips once (toy:8 = eight generated toy-world clips; give "
        "your own folder of clip.mp4 + clip.txt pairs instead, relative paths are looked up in ComfyUI's input "
        "folder), Train LoRA writes models/loras/hvs_lora.safetensors (ComfyUI LoRA format) and shows the loss plot, "
        "and Load LoRA applies it for a test render. For the released model: cache with its VAE and text encoders "
        "at e.g. 33x544x960, rank 32-64, learning rate 1e-4, a few thousand steps on a GPU."),
    "text_to_video_parallel": (
        "Parallel sampling: HunyuanVideo Parallel Settings feeds the sampler's 'parallel' input, and the sampler runs "
        "on worker processes kept warm between runs (here 2 CPU workers on the suite's embedded toy-world model, "
        "64x64, 17 frames). On a GPU machine set workers to 0 (one per GPU); ulysses / ring 0 pick the split "
        "automatically, cfg_parallel runs the two CFG passes side by side when cfg > 1, shard_weights lets N smaller "
        "cards hold the released model. The result equals the single-process sampler's."),
    "avatar": (
        "Talking avatar: Load Image gives the reference (hvs_avatar_reference.png) and Load Audio (HVS) the speech "
        "(hvs_avatar_speech.wav, 1.6 s); both are in the suite's workflows/inputs folder: copy them into ComfyUI's "
        "input folder. The embedded toy avatar (the toy world's shape whose size follows the loudness) with its toy "
        "Whisper runs on the CPU; the video is as long as the sound (40 frames at 25 fps, sampled in windows) and "
        "Save Video muxes the sound as AAC. motion_intensity / head_motion are the release's fixed 30 / 25: lower "
        "them for calmer motion. The toy avatar was trained without the release's prompt prefix and negative prompt, "
        "with 32 text tokens and plain CFG, which the conditioning's last four settings give. For HunyuanVideo-Avatar: "
        "its transformer (mp_rank_00_model_states.pt or a "
        "safetensors conversion) in models/diffusion_models, whisper-tiny in models/audio_encoders, the HunyuanVideo "
        "VAE and text encoders, a portrait as reference, the conditioning's defaults (released negative prompt and "
        "prefix, 256 tokens, released schedule), steps 50, shift 5, cfg 7.5, fps 25."),
}

TOY = "[embedded] toy world"
TOY_AVATAR = "[embedded] toy avatar"
TOY_WHISPER = "[embedded] toy whisper"

LOADERS = {
    1: ("HVS_LoadTransformer", {}, [EMBEDDED, "auto", "sdpa"], [("model", "HVS_MODEL")], (0, 0)),
    2: ("HVS_LoadVAE", {}, [EMBEDDED, "auto"], [("vae", "HVS_VAE")], (0, 1)),
    3: ("HVS_LoadTextEncoders", {}, [EMBEDDED, EMBEDDED, "auto"], [("text_encoders", "HVS_TEXT_ENCODERS")], (0, 2)),
}
ENCODE = (4, ("HVS_TextEncode", {"text_encoders": (3, 0)},
              ["a red circle moving left on a dark background", "video", ""], [("embeds", "HVS_EMBEDS")], (1, 2)))
DECODE_SAVE = {
    7: ("HVS_VAEDecode", {"vae": (2, 0), "samples": (6, 0)}, [0, 0, 0.25], [("IMAGE", "IMAGE")], (3, 1)),
    8: ("HVS_SaveVideo", {"frames": (7, 0)}, [24.0, 8.0, "HunyuanVideo/video"], [], (4, 1)),
}

GRAPHS = {
    "text_to_video": {
        **LOADERS, ENCODE[0]: ENCODE[1],
        5: ("HVS_EmptyVideoLatent", {"vae": (2, 0)}, [128, 128, 33, 1], [("LATENT", "LATENT")], (1, 1)),
        6: ("HVS_Sampler", {"model": (1, 0), "embeds": (4, 0), "latent": (5, 0)},
            [0, "fixed", 8, 7.0, 6.0, 1.0, 1.0], [("LATENT", "LATENT")], (2, 1)),
        **DECODE_SAVE,
    },
    "video_to_video": {
        **LOADERS, ENCODE[0]: ENCODE[1],
        9: ("HVS_LoadVideo", {}, ["[embedded] toy clip", 0, 1, 33, True],
            [("frames", "IMAGE"), ("fps", "FLOAT"), ("frame_count", "INT")], (0, 3)),
        5: ("HVS_VAEEncode", {"vae": (2, 0), "images": (9, 0)}, [0, 0, 0.25], [("LATENT", "LATENT")], (1, 1)),
        6: ("HVS_Sampler", {"model": (1, 0), "embeds": (4, 0), "latent": (5, 0)},
            [0, "fixed", 8, 7.0, 6.0, 1.0, 0.6], [("LATENT", "LATENT")], (2, 1)),
        **DECODE_SAVE,
    },
    "text_to_video_low_memory": {
        **LOADERS, ENCODE[0]: ENCODE[1],
        1: ("HVS_LoadTransformer", {"memory": (12, 0)}, [EMBEDDED, "auto", "sdpa"], [("model", "HVS_MODEL")], (0, 0)),
        12: ("HVS_MemorySettings", {}, ["fp8_e4m3fn", "auto", 12.0, 0, 0, "cpu", False],
             [("memory", "HVS_MEMORY")], (0, 4)),
        13: ("HVS_StepCache", {}, ["teacache", 0.15], [("step_cache", "HVS_STEP_CACHE")], (1, 3)),
        5: ("HVS_EmptyVideoLatent", {"vae": (2, 0)}, [128, 128, 33, 1], [("LATENT", "LATENT")], (1, 1)),
        6: ("HVS_Sampler", {"model": (1, 0), "embeds": (4, 0), "latent": (5, 0), "step_cache": (13, 0)},
            [0, "fixed", 8, 7.0, 6.0, 1.0, 1.0], [("LATENT", "LATENT")], (2, 1)),
        7: ("HVS_VAEDecode", {"vae": (2, 0), "samples": (6, 0)}, [64, 16, 0.25], [("IMAGE", "IMAGE")], (3, 1)),
        8: DECODE_SAVE[8],
    },
    "image_to_video": {
        **LOADERS,
        10: ("LoadImage", {}, ["example.png", "image"], [("IMAGE", "IMAGE"), ("MASK", "MASK")], (0, 4)),
        11: ("HVS_LoadImageEncoder", {}, [EMBEDDED], [("image_encoder", "HVS_IMAGE_ENCODER")], (0, 3)),
        4: ("HVS_ImageToVideoConditioning",
            {"text_encoders": (3, 0), "image_encoder": (11, 0), "vae": (2, 0), "image": (10, 0)},
            ["the red circle moves left slowly", 33, 128, "crop", "token_replace", 1],
            [("embeds", "HVS_EMBEDS"), ("latent", "LATENT"), ("image", "IMAGE")], (1, 2)),
        6: ("HVS_Sampler", {"model": (1, 0), "embeds": (4, 0), "latent": (4, 1)},
            [0, "fixed", 8, 7.0, 6.0, 1.0, 1.0], [("LATENT", "LATENT")], (2, 1)),
        **DECODE_SAVE,
    },
    "text_to_video_parallel": {
        1: ("HVS_LoadTransformer", {}, [TOY, "auto", "sdpa"], [("model", "HVS_MODEL")], (0, 0)),
        2: ("HVS_LoadVAE", {}, [TOY, "auto"], [("vae", "HVS_VAE")], (0, 1)),
        3: ("HVS_LoadTextEncoders", {}, [TOY, TOY, "auto"], [("text_encoders", "HVS_TEXT_ENCODERS")], (0, 2)),
        4: ("HVS_TextEncode", {"text_encoders": (3, 0)},
            ["a red circle moving left slowly on a dark background", "video", ""], [("embeds", "HVS_EMBEDS")], (1, 2)),
        18: ("HVS_ParallelSettings", {}, [2, 0, 0, "auto", False], [("parallel", "HVS_PARALLEL")], (1, 3)),
        5: ("HVS_EmptyVideoLatent", {"vae": (2, 0)}, [64, 64, 17, 1], [("LATENT", "LATENT")], (1, 1)),
        6: ("HVS_Sampler", {"model": (1, 0), "embeds": (4, 0), "latent": (5, 0), "parallel": (18, 0)},
            [0, "fixed", 8, 3.0, 4.0, 1.0, 1.0], [("LATENT", "LATENT")], (2, 1)),
        **DECODE_SAVE,
    },
    "avatar": {
        1: ("HVS_LoadTransformer", {}, [TOY_AVATAR, "auto", "sdpa"], [("model", "HVS_MODEL")], (0, 0)),
        2: ("HVS_LoadVAE", {}, [TOY, "auto"], [("vae", "HVS_VAE")], (0, 1)),
        3: ("HVS_LoadTextEncoders", {}, [TOY, TOY, "auto"], [("text_encoders", "HVS_TEXT_ENCODERS")], (0, 2)),
        19: ("HVS_AudioEncoderLoader", {}, [TOY_WHISPER], [("audio_encoder", "HVS_AUDIO_ENCODER")], (0, 3)),
        10: ("LoadImage", {}, ["hvs_avatar_reference.png", "image"], [("IMAGE", "IMAGE"), ("MASK", "MASK")], (0, 4)),
        20: ("HVS_LoadAudio", {}, ["hvs_avatar_speech.wav"], [("audio", "AUDIO")], (1, 4)),
        4: ("HVS_AvatarConditioning",
            {"text_encoders": (3, 0), "vae": (2, 0), "audio_encoder": (19, 0), "image": (10, 0), "audio": (20, 0)},
            ["a yellow circle changes size on a light background", 30.0, 25.0, "25", 0, "fixed", "", False, 32,
             "plain cfg"],
            [("embeds", "HVS_EMBEDS"), ("latent", "LATENT")], (1, 2)),
        6: ("HVS_Sampler", {"model": (1, 0), "embeds": (4, 0), "latent": (4, 1)},
            [0, "fixed", 16, 3.0, 6.0, 4.0, 1.0], [("LATENT", "LATENT")], (2, 1)),
        7: DECODE_SAVE[7],
        8: ("HVS_SaveVideo", {"frames": (7, 0), "audio": (20, 0)}, [25.0, 8.0, "HunyuanVideo/avatar"], [], (4, 1)),
    },
    "train_lora": {
        **LOADERS, ENCODE[0]: ENCODE[1],
        14: ("HVS_CacheDataset", {"vae": (2, 0), "text_encoders": (3, 0)}, ["toy:8", "17x64x64", "", False],
             [("cache", "HVS_DATASET_CACHE")], (1, 3)),
        15: ("HVS_TrainLoRA", {"cache": (14, 0)}, [EMBEDDED, 50, 16, 16.0, 0.0001, 1, 0, "fixed", "hvs_lora", True, 1.0],
             [("lora_path", "STRING"), ("loss_plot", "IMAGE")], (2, 3)),
        16: ("PreviewImage", {"images": (15, 1)}, [], [], (3, 3)),
        17: ("HVS_LoadLoRA", {"model": (1, 0), "lora_path": (15, 0)}, ["", 1.0], [("model", "HVS_MODEL")], (1, 0)),
        5: ("HVS_EmptyVideoLatent", {"vae": (2, 0)}, [64, 64, 17, 1], [("LATENT", "LATENT")], (1, 1)),
        6: ("HVS_Sampler", {"model": (17, 0), "embeds": (4, 0), "latent": (5, 0)},
            [0, "fixed", 8, 7.0, 6.0, 1.0, 1.0], [("LATENT", "LATENT")], (2, 1)),
        **DECODE_SAVE,
    },
}

# Widget names per node type, in INPUT_TYPES order ("control_after_generate" is UI-only).
WIDGETS = {
    "HVS_LoadTransformer": ["model_name", "weight_dtype", "attention"],
    "HVS_LoadVAE": ["vae_name", "weight_dtype"],
    "HVS_LoadTextEncoders": ["llm_name", "clip_name", "weight_dtype"],
    "HVS_TextEncode": ["prompt", "template", "negative_prompt"],
    "HVS_EmptyVideoLatent": ["width", "height", "frames", "batch_size"],
    "HVS_Sampler": ["seed", None, "steps", "shift", "embedded_guidance", "cfg", "denoise"],
    "HVS_VAEDecode": ["tile_size", "tile_frames", "overlap"],
    "HVS_VAEEncode": ["tile_size", "tile_frames", "overlap"],
    "HVS_LoadVideo": ["video", "skip_first_frames", "select_every_nth", "frame_load_cap", "trim_to_4n_plus_1"],
    "HVS_SaveVideo": ["fps", "quality", "filename_prefix"],
    "LoadImage": ["image", "upload"],
    "HVS_LoadImageEncoder": ["vision_name"],
    "HVS_ImageToVideoConditioning": ["prompt", "frames", "base_size", "resize", "condition", "batch_size"],
    "HVS_MemorySettings": ["quantize", "block_swap", "weights_budget_gb", "swap_double_blocks", "swap_single_blocks",
                           "offload_to", "compile"],
    "HVS_StepCache": ["method", "threshold"],
    "HVS_ParallelSettings": ["workers", "ulysses", "ring", "cfg_parallel", "shard_weights"],
    "HVS_CacheDataset": ["dataset_folder", "buckets", "cache_folder", "skip_short_clips"],
    "HVS_TrainLoRA": ["base_model", "steps", "rank", "alpha", "learning_rate", "batch_size", "seed", None, "lora_name",
                      "overwrite", "prior_weight"],
    "HVS_LoadLoRA": ["lora_name", "strength"],
    "HVS_AudioEncoderLoader": ["encoder_name"],
    "HVS_LoadAudio": ["audio"],
    "HVS_AvatarConditioning": ["prompt", "motion_intensity", "head_motion", "fps", "seed", None, "negative_prompt",
                               "prompt_prefix", "text_tokens", "guidance"],
    "PreviewImage": [],
}


def api_format(graph: dict) -> dict:
    out = {}
    for node_id, (kind, links, widgets, _, _) in sorted(graph.items()):
        inputs = {name: value for name, value in zip(WIDGETS[kind], widgets) if name is not None}
        inputs.update({name: [str(src), slot] for name, (src, slot) in links.items()})
        out[str(node_id)] = {"class_type": kind, "inputs": inputs}
    return out


def ui_format(graph: dict, note: str = NOTE) -> dict:
    links, nodes = [], []
    out_links = {}
    for node_id, (kind, inputs, _, outputs, _) in sorted(graph.items()):
        for name, (src, slot) in inputs.items():
            link_id = len(links) + 1
            src_type = graph[src][3][slot][1]
            links.append([link_id, src, slot, node_id, None, src_type])
            out_links.setdefault((src, slot), []).append(link_id)
    order = {nid: i for i, nid in enumerate(sorted(graph))}
    for node_id, (kind, inputs, widgets, outputs, (col, row)) in sorted(graph.items()):
        ui_inputs = []
        for slot, (name, (src, src_slot)) in enumerate(inputs.items()):
            link = next(l for l in links if l[3] == node_id and l[1] == src and l[2] == src_slot and l[4] is None)
            link[4] = slot
            ui_inputs.append({"name": name, "type": link[5], "link": link[0]})
        nodes.append({
            "id": node_id, "type": kind, "pos": [40 + 380 * col, 40 + 300 * row], "size": [340, 130 + 26 * len(widgets)],
            "flags": {}, "order": order[node_id], "mode": 0, "inputs": ui_inputs,
            "outputs": [{"name": n, "type": t, "links": out_links.get((node_id, i), []), "slot_index": i}
                        for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind}, "widgets_values": widgets,
        })
    note_id = max(graph) + 1
    note_y = max([1240] + [n["pos"][1] + n["size"][1] + 40 for n in nodes])   # below every node
    nodes.append({"id": note_id, "type": "Note", "pos": [40, note_y], "size": [1100, 120], "flags": {},
                  "order": len(nodes), "mode": 0, "properties": {"text": ""}, "widgets_values": [note]})
    return {"last_node_id": note_id, "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def render() -> dict:
    files = {}
    for name, graph in GRAPHS.items():
        files[ROOT / f"{name}.json"] = ui_format(graph, NOTES.get(name, NOTE))
        files[ROOT / "api" / f"{name}.json"] = api_format(graph)
    return {path: json.dumps(data, indent=2) + "\n" for path, data in files.items()}


def main() -> int:
    rendered = render()
    if "--check" in sys.argv:
        stale = [str(p) for p, text in rendered.items() if not p.is_file() or p.read_text() != text]
        if stale:
            print("out of date (run python scripts/build_workflows.py):", *stale, sep="\n  ")
            return 1
        return 0
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
