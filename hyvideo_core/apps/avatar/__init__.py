"""HunyuanVideo-Avatar: audio-driven talking avatars on the HunyuanVideo transformer, as an extension
(shared/spec/official_apps.md part B). ``load_avatar_transformer(path)`` loads the official checkpoint
with the extension installed; ``AvatarExtension`` documents the model inputs; ``audio_windows_for`` makes
the audio windows from a sound file or ComfyUI AUDIO with a Whisper from ``load_whisper``;
``generate_avatar`` (or its stages ``prepare_avatar`` -> ``sample_avatar_latents`` -> ``decode_avatar``)
makes a talking clip as long as the sound."""
from .audio import (WhisperFeatures, audio_windows, audio_windows_for, encode_whisper, load_whisper,
                    video_frames_for)
from .extension import AvatarExtension, avatar_extension
from .loading import load_avatar_transformer
from .recipe import (RELEASED_NEGATIVE_PROMPT, RELEASED_PROMPT_PREFIX, AvatarConditioning, AvatarOptions,
                     avatar_size, decode_avatar, generate_avatar, prepare_avatar, sample_avatar_latents)

__all__ = ["AvatarExtension", "avatar_extension", "load_avatar_transformer", "WhisperFeatures", "audio_windows",
           "audio_windows_for", "encode_whisper", "load_whisper", "video_frames_for", "RELEASED_PROMPT_PREFIX",
           "RELEASED_NEGATIVE_PROMPT", "AvatarOptions", "AvatarConditioning", "avatar_size", "prepare_avatar",
           "sample_avatar_latents", "decode_avatar", "generate_avatar"]
