"""Latent creation and the sampler."""
from __future__ import annotations

from .adapters import CATEGORY, PREFIX, latent, progress_callback, tooltip


def check_frame_count(frames):
    """VALIDATE_INPUTS answer for a `frames` widget: True, or why the count is not 4n+1 (linked
    values arrive as None and are checked when the node runs)."""
    from ..hyvideo_core.errors import InputError
    from ..hyvideo_core.sampling.noise import latent_shape

    if frames is None:
        return True
    try:
        latent_shape(frames, 16, 16)
    except InputError as exc:
        return str(exc)
    return True


class EmptyVideoLatent:
    DESCRIPTION = ("An empty latent video of the given size: frames must be 4n+1 (1, 5, …, 129) and width/height "
                   "multiples of 16. Same layout as core's HunyuanVideo latents.")
    CATEGORY = f"{CATEGORY}/latent"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Zeros of shape (batch, channels, (frames-1)/4+1, height/8, width/8).",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", tooltip("Width in pixels, a multiple of 16.", default=848, min=16, max=4096, step=16)),
            "height": ("INT", tooltip("Height in pixels, a multiple of 16.", default=480, min=16, max=4096, step=16)),
            "frames": ("INT", tooltip("Frame count, 4n+1 (129 ≈ 5 s at 24 fps).", default=61, min=1, max=1025, step=4)),
            "batch_size": ("INT", tooltip("Videos per run.", default=1, min=1, max=64)),
        }, "optional": {
            "vae": (f"{PREFIX}_VAE", tooltip("Optional: take the latent channel count from this VAE (16 for the "
                                             "released model).")),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, frames=None):
        # Only `frames` in the signature: ComfyUI reports a failed check once under every input
        # named here, and skips its own min/max checks for them. Width and height keep the core
        # min/max checks; a size off the 16-pixel grid is refused when the node runs.
        return check_frame_count(frames)

    def make(self, width, height, frames, batch_size, vae=None):
        import torch

        from ..hyvideo_core.sampling.noise import latent_shape

        channels = vae.config.latent_channels if vae is not None else 16
        return (latent(torch.zeros(latent_shape(frames, height, width, channels, batch_size))),)


def _is_avatar_model(model) -> bool:
    from ..hyvideo_core.apps.avatar import AvatarExtension
    from ..hyvideo_core.model.extension import find_extension

    return find_extension(model, AvatarExtension) is not None


class Sampler:
    DESCRIPTION = ("Generates latents with the shifted flow-matching Euler sampler: embedded guidance for the "
                   "CFG-distilled model (one pass per step), optional true CFG with the negative prompt, and "
                   "denoise < 1 for video-to-video. With the Avatar Conditioning's latent and an avatar model it "
                   "runs the released talking-avatar sampler (windows over long sound, cfg = its starting guidance "
                   "scale, 7.5 released). Shows latent previews and stops on Cancel.")
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Denoised latents (raw VAE space), for the VAE decode node or core's VAE Decode.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (f"{PREFIX}_MODEL", tooltip("From Load HunyuanVideo Transformer.")),
            "embeds": (f"{PREFIX}_EMBEDS", tooltip("From HunyuanVideo Text Encode.")),
            "latent": ("LATENT", tooltip("An empty video latent, or an encoded video for video-to-video.")),
            "seed": ("INT", tooltip("Noise seed; the same seed gives the same video on any device.",
                                    default=0, min=0, max=2**63 - 1)),
            "steps": ("INT", tooltip("Euler steps (50 released; fewer steps want a larger shift).",
                                     default=30, min=1, max=200)),
            "shift": ("FLOAT", tooltip("Flow shift s in σ' = sσ/(1+(s−1)σ). 7 for 50 steps, ~9 for 30, "
                                       "17 for very few steps.", default=9.0, min=0.1, max=100.0, step=0.1)),
            "embedded_guidance": ("FLOAT", tooltip("Guidance fed into the CFG-distilled model (6.0 released); "
                                                   "ignored by models without guidance input.",
                                                   default=6.0, min=0.0, max=30.0, step=0.1)),
            "cfg": ("FLOAT", tooltip("True classifier-free guidance; > 1 runs a second pass per step with the "
                                     "negative prompt.", default=1.0, min=1.0, max=30.0, step=0.1)),
            "denoise": ("FLOAT", tooltip("1.0 starts from pure noise; less keeps that much of the input video "
                                         "(video-to-video).", default=1.0, min=0.01, max=1.0, step=0.01)),
        }, "optional": {
            "step_cache": (f"{PREFIX}_STEP_CACHE", tooltip("From HunyuanVideo Step Cache: skip passes that barely "
                                                           "change the result.")),
            "parallel": (f"{PREFIX}_PARALLEL", tooltip("From HunyuanVideo Parallel Settings: sample on several "
                                                       "GPUs (or CPU processes) at once, same result.")),
        }}

    def sample(self, model, embeds, latent, seed, steps, shift, embedded_guidance, cfg, denoise, step_cache=None,
               parallel=None):
        from functools import partial

        from ..hyvideo_core.apps.latent_stages import SamplerOptions, sample_latents
        from ..hyvideo_core.variants import get_variant
        from .avatar import LATENT_KEY as AVATAR_KEY, sample_avatar

        if latent.get(AVATAR_KEY) is not None or _is_avatar_model(model):       # talking avatar
            return (sample_avatar(model, embeds, latent, seed=seed, steps=steps, shift=shift, cfg=cfg,
                                  denoise=denoise, step_cache=step_cache, parallel=parallel),)
        options = SamplerOptions(steps=steps, shift=shift, embedded_guidance=embedded_guidance or None,
                                 cfg_scale=cfg, seed=seed, denoise=denoise, step_cache=step_cache)
        scaling_factor = get_variant(model.variant).vae.scaling_factor
        sampler = sample_latents
        if parallel is not None:
            from ..hyvideo_core.parallel.pool import parallel_sample_latents

            sampler = partial(parallel_sample_latents, settings=parallel)
        if latent.get("hvs_image_condition") is not None or model.config.condition_type == "latent_concat":
            from ..hyvideo_core.apps.i2v import LATENT_KEY, sample_i2v_latents   # image-to-video

            out = sample_i2v_latents(model, embeds.positive, latent["samples"], latent.get(LATENT_KEY), options,
                                     scaling_factor=scaling_factor, negative=embeds.negative,
                                     callback=progress_callback(), sampler=sampler)
            return (dict(latent, samples=out.cpu()),)
        out = sampler(model, embeds.positive, latent["samples"], options,
                      scaling_factor=scaling_factor, negative=embeds.negative, callback=progress_callback())
        return (dict(latent, samples=out.cpu()),)


NODES = {f"{PREFIX}_EmptyVideoLatent": (EmptyVideoLatent, "Empty HunyuanVideo Latent (HVS)"),
         f"{PREFIX}_Sampler": (Sampler, "HunyuanVideo Sampler (HVS)")}
