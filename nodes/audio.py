"""Sound nodes: load an audio file (or the sound track of a video) from ComfyUI's input folder as core AUDIO,
decoded by our own ffmpeg reader, so no torchaudio is needed."""
from __future__ import annotations

import hashlib
import os

from .adapters import CATEGORY, PREFIX, audio_from_samples, tooltip

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff")


def _input_sounds():
    import folder_paths

    from ..hyvideo_core.video_io import VIDEO_EXTENSIONS

    root = folder_paths.get_input_directory()
    names = os.listdir(root) if os.path.isdir(root) else []
    return sorted(f for f in names if f.lower().endswith(AUDIO_EXTENSIONS + VIDEO_EXTENSIONS)
                  and os.path.isfile(os.path.join(root, f)))


def _sound_path(audio: str) -> str:
    """The file of a list entry, confined to ComfyUI's input (and output) folders: a name typed into an
    API prompt must not reach other files."""
    import folder_paths

    from ..hyvideo_core.errors import InputError
    from .folders import confined_path, input_roots

    if not isinstance(audio, str) or not audio.strip():
        raise InputError("audio: expected the name of a sound or video file in ComfyUI's input folder, found "
                         f"{audio!r}; put a file there (or upload one) and pick it")
    return confined_path(folder_paths.get_annotated_filepath(audio), input_roots(), "audio")


class LoadAudio:
    DESCRIPTION = ("Loads a sound (wav, mp3, flac, ogg, m4a, ...) or the sound track of a video from ComfyUI's input "
                   "folder as AUDIO, with its own channels and sample rate. Decoded by the suite's ffmpeg reader, so "
                   "it works without torchaudio.")
    CATEGORY = f"{CATEGORY}/audio"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The sound: waveform (1, channels, samples) and its sample rate (core AUDIO).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        # "audio" + audio_upload: the new front end adds its upload button and player as for core Load Audio
        return {"required": {
            "audio": (_input_sounds(), tooltip("A sound or video file in ComfyUI's input folder (refresh the page "
                                               "after adding one, or upload it here).", audio_upload=True)),
        }}

    @classmethod
    def IS_CHANGED(cls, audio):
        try:
            digest = hashlib.sha256()
            with open(_sound_path(audio), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
        except (OSError, ValueError):
            return float("nan")       # always re-run: the node itself reports the problem

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        # Defining this makes ComfyUI skip its own "value in list" check, so confinement and existence are
        # checked here, at queue time.
        from ..hyvideo_core.errors import InputError

        try:
            path = _sound_path(audio)
        except InputError as exc:
            return str(exc)
        if not os.path.isfile(path):
            return f"audio file not found in ComfyUI's input folder: {audio!r}; put it there (or upload it)"
        return True

    def load(self, audio):
        from ..hyvideo_core.audio_io import load_audio_channels

        samples, rate = load_audio_channels(_sound_path(audio))
        return (audio_from_samples(samples, rate),)


NODES = {f"{PREFIX}_LoadAudio": (LoadAudio, "Load Audio (HVS)")}
