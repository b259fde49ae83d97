"""Video file nodes: load frames from the input folder, save an H.264 .mp4 with metadata."""
from __future__ import annotations

import json
import os

from .adapters import CATEGORY, PREFIX, tooltip

# A built-in source video, so video-to-video runs on a fresh install with an empty input folder:
# a 33-frame 128x128 toy-world clip, rendered once into ComfyUI's temp folder.
EMBEDDED_CLIP = "[embedded] toy clip"
_EMBEDDED_CLIP_CAPTION = "a red circle moving left slowly on a dark background"
_EMBEDDED_CLIP_FILE = "hvs_embedded_toy_clip.mp4"


def _input_videos():
    import folder_paths

    from ..hyvideo_core.video_io import VIDEO_EXTENSIONS

    root = folder_paths.get_input_directory()
    return [EMBEDDED_CLIP] + sorted(f for f in os.listdir(root) if f.lower().endswith(VIDEO_EXTENSIONS)
                                    and os.path.isfile(os.path.join(root, f)))


def _video_path(video: str) -> str:
    """The file of an entry of the video list (the embedded clip is written on first use)."""
    import folder_paths

    if video != EMBEDDED_CLIP:
        return folder_paths.get_annotated_filepath(video)
    path = os.path.join(folder_paths.get_temp_directory(), _EMBEDDED_CLIP_FILE)
    if not os.path.isfile(path):
        from ..hyvideo_core.toy.world import clip_for_prompt
        from ..hyvideo_core.video_io import write_mp4

        os.makedirs(os.path.dirname(path), exist_ok=True)
        clip = clip_for_prompt(_EMBEDDED_CLIP_CAPTION, frames=33, height=128, width=128)
        write_mp4(clip.frames, path, fps=24.0)
    return path


class LoadVideo:
    DESCRIPTION = "Loads a video from ComfyUI's input folder as frames (IMAGE), with frame selection."
    CATEGORY = f"{CATEGORY}/video"
    RETURN_TYPES = ("IMAGE", "FLOAT", "INT")
    RETURN_NAMES = ("frames", "fps", "frame_count")
    OUTPUT_TOOLTIPS = ("Selected frames (F, H, W, 3) in [0, 1].", "Frame rate after selection.", "Frames returned.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": (_input_videos(), tooltip(f"A video file in ComfyUI's input folder. {EMBEDDED_CLIP} is a "
                                                f"built-in 33-frame 128x128 clip ({_EMBEDDED_CLIP_CAPTION}).")),
            "skip_first_frames": ("INT", tooltip("Frames to drop at the start.", default=0, min=0, max=100000)),
            "select_every_nth": ("INT", tooltip("Keep every n-th frame (lowers the frame rate).", default=1, min=1,
                                                max=100)),
            "frame_load_cap": ("INT", tooltip("Most frames to return; 0 = all.", default=0, min=0, max=100000)),
            "trim_to_4n_plus_1": ("BOOLEAN", tooltip("Drop trailing frames so the count is 4n+1, as the VAE needs.",
                                                     default=True)),
        }}

    @classmethod
    def IS_CHANGED(cls, video, **_):
        if video == EMBEDDED_CLIP:
            return EMBEDDED_CLIP
        path = _video_path(video)
        return os.path.getmtime(path) if os.path.exists(path) else float("nan")

    def load(self, video, skip_first_frames, select_every_nth, frame_load_cap, trim_to_4n_plus_1):
        import torch

        from ..hyvideo_core.video_io import load_frames

        frames, fps = load_frames(_video_path(video), skip_first=skip_first_frames,
                                  every_nth=select_every_nth, max_frames=frame_load_cap,
                                  four_n_plus_one=trim_to_4n_plus_1)
        return (torch.from_numpy(frames).float() / 255.0, fps, int(frames.shape[0]))


class SaveVideo:
    DESCRIPTION = ("Saves frames as an H.264 .mp4 in ComfyUI's output folder, with the prompt and workflow embedded "
                   "as metadata, and previews it on the node. An optional AUDIO becomes the video's AAC sound track, "
                   "cut or padded with silence to the video's length. Nothing is written if the run is cancelled.")
    CATEGORY = f"{CATEGORY}/video"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": ("IMAGE", tooltip("The frames to save, (F, H, W, 3).")),
            "fps": ("FLOAT", tooltip("Frames per second (24 released).", default=24.0, min=1.0, max=120.0, step=1.0)),
            "quality": ("FLOAT", tooltip("H.264 quality 0–10 (10 = best, largest).", default=8.0, min=0.0, max=10.0,
                                         step=0.5)),
            "filename_prefix": ("STRING", tooltip("File name prefix; may contain a subfolder.",
                                                  default="HunyuanVideo/video")),
        }, "optional": {
            "audio": ("AUDIO", tooltip("Optional sound (e.g. from Load Audio): muxed as AAC, cut or padded with "
                                       "silence to the video's duration.")),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, frames, fps, quality, filename_prefix, audio=None, prompt=None, extra_pnginfo=None):
        import folder_paths

        from ..hyvideo_core.video_io import write_mp4
        from .adapters import audio_to_samples

        sound = audio_to_samples(audio, "Save Video's audio") if audio is not None else None

        out = (frames.clamp(0, 1) * 255).round().byte().cpu().numpy()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), out.shape[2], out.shape[1])
        filename = f"{name}_{counter:05}_.mp4"
        metadata = {"prompt": json.dumps(prompt)} if prompt is not None else {}
        if extra_pnginfo and "workflow" in extra_pnginfo:
            metadata["workflow"] = json.dumps(extra_pnginfo["workflow"])
        write_mp4(out, os.path.join(folder, filename), fps=fps, quality=quality, metadata=metadata, audio=sound)
        entry = {"filename": filename, "subfolder": subfolder, "type": "output", "format": "video/h264-mp4",
                 "frame_rate": fps}
        return {"ui": {"gifs": [entry]}}


NODES = {f"{PREFIX}_LoadVideo": (LoadVideo, "Load Video (HVS)"),
         f"{PREFIX}_SaveVideo": (SaveVideo, "Save Video MP4 (HVS)")}
