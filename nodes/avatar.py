"""Talking-avatar nodes (HunyuanVideo-Avatar): the Whisper audio-encoder loader and the avatar conditioning
(reference image + sound + prompt -> embeddings and a latent carrying the avatar condition). HVS_Sampler
honours the condition attached to the latent; HVS_VAEDecode cuts the frames to the sound's length."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .adapters import CATEGORY, PREFIX, tooltip, torch_device

EMBEDDED_TOY_WHISPER = "[embedded] toy whisper"
AUDIO_ENCODERS = "audio_encoders"          # ComfyUI's models/audio_encoders (registered here on older releases)
LATENT_KEY = "hvs_avatar_condition"
FPS_CHOICES = {"25": 25.0, "12.5": 12.5}
GUIDANCE = {"released schedule": True, "plain cfg": False}      # -> AvatarOptions.released_schedule


@dataclass(frozen=True)
class AvatarLatentCondition:
    """What the avatar conditioning attaches to a LATENT: the recipe's conditioning and the options it was
    made with (fps, motion values); the sampler adds its steps, shift, cfg and seed."""
    conditioning: object        # hyvideo_core.apps.avatar.AvatarConditioning
    options: object             # hyvideo_core.apps.avatar.AvatarOptions
    scaling_factor: float       # of the VAE that scaled the reference latent (the sampler's latents unscale by it)

    @property
    def video_frames(self) -> int:
        return int(self.conditioning.video_frames)


def _register_audio_encoders():
    """ComfyUI releases before its own audio encoders have no "audio_encoders" model folder: add
    models/audio_encoders so the same place works on every release."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, AUDIO_ENCODERS)
    known = folder_paths.folder_names_and_paths.get(AUDIO_ENCODERS)
    if known is None:
        folder_paths.folder_names_and_paths[AUDIO_ENCODERS] = ([default], {".safetensors"})
    elif default not in known[0]:
        known[0].append(default)


def _toy_whisper():
    try:
        from ..hyvideo_core.toy.avatar import toy_whisper_folder

        return toy_whisper_folder()
    except (ImportError, ValueError):      # toy files not shipped in this install
        return None


def list_audio_encoders():
    """The toy Whisper (when shipped) and every .safetensors under models/audio_encoders (a Hugging Face
    Whisper folder shows as its model.safetensors and loads as the folder)."""
    import folder_paths

    _register_audio_encoders()
    names = [n for n in folder_paths.get_filename_list(AUDIO_ENCODERS) if n.lower().endswith(".safetensors")]
    return ([EMBEDDED_TOY_WHISPER] if _toy_whisper() is not None else []) + names


def resolve_audio_encoder(name: str) -> str:
    import folder_paths

    from ..hyvideo_core.errors import InputError

    if name == EMBEDDED_TOY_WHISPER:
        folder = _toy_whisper()
        if folder is None:
            raise InputError("the toy Whisper is not part of this install (hyvideo_core/toy/weights/whisper); pick "
                             "a Whisper from models/audio_encoders")
        return str(folder)
    _register_audio_encoders()
    path = folder_paths.get_full_path(AUDIO_ENCODERS, name)
    if not path:
        raise InputError(f"audio encoder {name!r} not found in ComfyUI's models/audio_encoders; put "
                         f"whisper-tiny there (a folder with config.json and model.safetensors) and refresh")
    parent = os.path.dirname(path)
    return parent if os.path.isfile(os.path.join(parent, "config.json")) else path


class LoadAudioEncoder:
    DESCRIPTION = ("Loads the Whisper audio encoder the avatar model listens with (whisper-tiny as released): a "
                   "Hugging Face Whisper folder or a Whisper .safetensors file from models/audio_encoders. Only "
                   "safetensors weights are read; nothing is downloaded.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (f"{PREFIX}_AUDIO_ENCODER",)
    RETURN_NAMES = ("audio_encoder",)
    OUTPUT_TOOLTIPS = ("The Whisper encoder, for the Avatar Conditioning node.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder_name": (list_audio_encoders(), tooltip(
                "whisper-tiny from models/audio_encoders (a folder shows as its model.safetensors). "
                f"'{EMBEDDED_TOY_WHISPER}' is the tiny Whisper of the suite's toy avatar.")),
        }}

    def load(self, encoder_name):
        from ..hyvideo_core.apps.avatar import load_whisper

        return (load_whisper(resolve_audio_encoder(encoder_name), device=torch_device()),)


class AvatarConditioning:
    DESCRIPTION = ("Talking-avatar conditioning (HunyuanVideo-Avatar): the reference image becomes the reference "
                   "latent, the sound becomes Whisper windows (any length: long sound is sampled in windows), the "
                   "prompt is encoded with the released prefix and negative prompt. Feed both outputs to the "
                   "HunyuanVideo Sampler with an avatar model; the VAE decode cuts the video to the sound's length. "
                   "motion_intensity and head_motion are the values the release hard-codes (30 / 25): lower them "
                   "for calmer motion.")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = (f"{PREFIX}_EMBEDS", "LATENT")
    RETURN_NAMES = ("embeds", "latent")
    OUTPUT_TOOLTIPS = ("Prompt embeddings (positive with the released prefix, and the negative).",
                       "An empty video latent as long as the sound, carrying the avatar condition, for the sampler.")
    FUNCTION = "condition"

    @classmethod
    def INPUT_TYPES(cls):
        from ..hyvideo_core.apps.avatar.recipe import RELEASED_NEGATIVE_PROMPT

        return {"required": {
            "text_encoders": (f"{PREFIX}_TEXT_ENCODERS", tooltip("From Load HunyuanVideo Text Encoders.")),
            "vae": (f"{PREFIX}_VAE", tooltip("From Load HunyuanVideo VAE.")),
            "audio_encoder": (f"{PREFIX}_AUDIO_ENCODER", tooltip("From Load Avatar Audio Encoder (Whisper).")),
            "image": ("IMAGE", tooltip("One reference image of the person (or the toy shape).")),
            "audio": ("AUDIO", tooltip("The speech; the video is as long as the sound. Stereo and any sample rate "
                                       "are fine (mixed to mono 16 kHz).")),
            "prompt": ("STRING", tooltip("What the video shows (the released prefix 'Authentic, Realistic, ...' is "
                                         "added).", multiline=True, dynamicPrompts=True)),
            "motion_intensity": ("FLOAT", tooltip("Facial expression motion fed to the model (30 released). Lower "
                                                  "is calmer.", default=30.0, min=0.0, max=100.0, step=1.0)),
            "head_motion": ("FLOAT", tooltip("Head-pose motion fed to the model (25 released). Lower is steadier.",
                                             default=25.0, min=0.0, max=100.0, step=1.0)),
            "fps": (list(FPS_CHOICES), tooltip("Frames per second of the video (the model knows 25 and 12.5); save "
                                               "the video at the same rate.", default="25")),
            "seed": ("INT", tooltip("Seed of the reference latent (the VAE samples it, as released).",
                                    default=0, min=0, max=2**63 - 1)),
        }, "optional": {
            "mask": ("MASK", tooltip("Optional face mask (any size, resized): where the audio may move the picture. "
                                     "Without one the whole frame (one log line), as released.")),
            "negative_prompt": ("STRING", tooltip("The negative prompt of the guidance (the release's by default).",
                                                  multiline=True, default=RELEASED_NEGATIVE_PROMPT)),
            "prompt_prefix": ("BOOLEAN", tooltip("Put the release's prefix 'Authentic, Realistic, Natural, "
                                                 "High-quality, Lens-Fixed, ' before the prompt.", default=True)),
            "text_tokens": ("INT", tooltip("LLM tokens kept after the prompt template (256 released; the toy avatar "
                                           "was trained with 32).", default=256, min=2, max=1024)),
            "guidance": (list(GUIDANCE), tooltip(
                "released schedule: the release's CFG (text+audio, then audio only; decaying scales from the "
                "sampler's cfg). plain cfg: the sampler's cfg against the negative prompt without sound at every "
                "step (how the toy avatar was trained).", default="released schedule")),
        }}

    def condition(self, text_encoders, vae, audio_encoder, image, audio, prompt, motion_intensity, head_motion, fps,
                  seed, mask=None, negative_prompt=None, prompt_prefix=True, text_tokens=256,
                  guidance="released schedule"):
        import torch

        from ..hyvideo_core.apps.avatar import AvatarOptions, prepare_avatar
        from ..hyvideo_core.apps.avatar.schedule import output_latents
        from ..hyvideo_core.apps.avatar.recipe import RELEASED_NEGATIVE_PROMPT
        from ..hyvideo_core.errors import InputError
        from .text import Conditioning

        if negative_prompt is None:
            negative_prompt = RELEASED_NEGATIVE_PROMPT
        if fps not in FPS_CHOICES:
            raise InputError(f"fps: expected one of {list(FPS_CHOICES)}, found {fps!r}")
        if guidance not in GUIDANCE:
            raise InputError(f"guidance: expected one of {list(GUIDANCE)}, found {guidance!r}")
        options = AvatarOptions(seed=seed, fps=FPS_CHOICES[fps], motion_exp=float(motion_intensity),
                                motion_pose=float(head_motion), released_schedule=GUIDANCE[guidance])
        cond = prepare_avatar(vae, text_encoders, audio_encoder, image, audio, prompt, options, face_mask=mask,
                              negative_prompt=negative_prompt, add_prompt_prefix=bool(prompt_prefix),
                              max_text_tokens=int(text_tokens))
        _, c, _, h, w = cond.ref_latents.shape
        latents = output_latents(cond.audio_windows.shape[1])   # the sampler's output latent frames
        empty = torch.zeros(1, c, latents, h, w)
        latent = {"samples": empty, LATENT_KEY: AvatarLatentCondition(cond, options, float(vae.scaling_factor))}
        return (Conditioning(cond.positive, cond.negative), latent)


def sample_avatar(model, embeds, latent, *, seed, steps, shift, cfg, denoise, step_cache=None, parallel=None) -> dict:
    """HVS_Sampler's avatar path: the sampler's widgets become AvatarOptions, the recipe samples, and the
    LATENT that comes back (raw VAE space) keeps the condition so the VAE decode can cut to the sound."""
    from dataclasses import replace

    from ..hyvideo_core.apps.avatar import AvatarExtension, sample_avatar_latents
    from ..hyvideo_core.errors import InputError
    from ..hyvideo_core.model.extension import find_extension
    from .adapters import progress_callback

    held = latent.get(LATENT_KEY)
    if find_extension(model, AvatarExtension) is None:
        raise InputError(f"the latent carries a talking-avatar condition, but this transformer ({model.variant}) has "
                         f"no avatar modules; load an avatar model (e.g. '[embedded] toy avatar' or HunyuanVideo-"
                         f"Avatar's checkpoint), or use Text Encode + Empty Latent for this model")
    if held is None:
        raise InputError(f"this is a talking-avatar model ({model.variant}): it needs a reference image and a sound. "
                         f"Connect the embeds and latent of HunyuanVideo Avatar Conditioning to the sampler")
    if parallel is not None:
        raise InputError("parallel sampling does not run the avatar model yet; disconnect the Parallel Settings node")
    if denoise < 1.0:
        raise InputError(f"denoise: the avatar sampler starts from pure noise (denoise 1.0), found {denoise}")
    frame_cache = False
    if step_cache is not None:
        if not getattr(step_cache, "avatar_frame_cache", False):
            raise InputError(f"step cache {getattr(step_cache, 'method', step_cache)!r} does not apply to the avatar "
                             f"model (its windows and guidance change every step); choose the avatar_frame_cache "
                             f"method, or disconnect the Step Cache node")
        frame_cache = True
    options = replace(held.options, steps=steps, shift=shift, cfg_scale=cfg, seed=seed, frame_cache=frame_cache)
    if embeds.positive is not held.conditioning.positive:
        # the embeds wire may come from another node (e.g. a Text Encode with another prompt)
        held = replace(held, conditioning=replace(held.conditioning, positive=embeds.positive,
                                                  negative=embeds.negative or held.conditioning.negative))
    scaled = sample_avatar_latents(model, held.conditioning, options, callback=progress_callback())
    return dict(latent, samples=(scaled / held.scaling_factor).float().cpu(), **{LATENT_KEY: held})


NODES = {f"{PREFIX}_AudioEncoderLoader": (LoadAudioEncoder, "Load Avatar Audio Encoder (HVS)"),
         f"{PREFIX}_AvatarConditioning": (AvatarConditioning, "HunyuanVideo Avatar Conditioning (HVS)")}
