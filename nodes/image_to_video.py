"""Image-to-video nodes: the LLaVA image encoder loader and the I2V conditioning (image + prompt ->
embeddings with semantic image tokens + a latent carrying the encoded image). HVS_Sampler honours
the condition attached to the latent."""
from __future__ import annotations

from .adapters import CATEGORY, PREFIX, list_models, resolve_model, tooltip, torch_device
from .sampling import check_frame_count

_BASE_SIZES = {"360p (480)": 480, "540p (720)": 720, "720p (960)": 960}


class LoadImageEncoder:
    DESCRIPTION = ("Loads the LLaVA vision tower + projector that turns the input image into semantic tokens for the "
                   "text encoder (image-to-video): the full llava-llama-3-8b folder (text_encoder_i2v) or ComfyUI's "
                   "llava_llama3_vision.safetensors from models/clip_vision.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (f"{PREFIX}_IMAGE_ENCODER",)
    RETURN_NAMES = ("image_encoder",)
    OUTPUT_TOOLTIPS = ("The LLaVA image encoder, for the Image-to-Video Conditioning node.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vision_name": (list_models("image_encoder"), tooltip(
                "llava_llama3_vision.safetensors (models/clip_vision) or a LLaVA folder's weights file. "
                "'[embedded] tiny demo' is the suite's built-in tiny LLaVA.")),
        }}

    def load(self, vision_name):
        from ..hyvideo_core.text_encoders.llava_image import load_image_encoder

        return (load_image_encoder(resolve_model("image_encoder", vision_name, "text_encoder_i2v"),
                                   device=torch_device()),)


class ImageToVideoConditioning:
    DESCRIPTION = ("Image-to-video conditioning: snaps the image to the official resolution bucket (crop or pad), "
                   "encodes it with the VAE as the first latent frame, and encodes the prompt with the image's "
                   "semantic tokens (LLaVA). Feed both outputs to the HunyuanVideo Sampler. Use condition "
                   "token_replace for the 16-channel I2V model (embedded guidance 6, shift 7 stable / 17 dynamic) and "
                   "latent_concat for the 33-channel one (no guidance; its first 4 decoded frames are warm-up).")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = (f"{PREFIX}_EMBEDS", "LATENT", "IMAGE")
    RETURN_NAMES = ("embeds", "latent", "image")
    OUTPUT_TOOLTIPS = ("Prompt embeddings with the image tokens.",
                       "An empty video latent at the bucket size carrying the encoded image, for the sampler.",
                       "The input image as snapped to the bucket.")
    FUNCTION = "condition"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoders": (f"{PREFIX}_TEXT_ENCODERS", tooltip("From Load HunyuanVideo Text Encoders.")),
            "image_encoder": (f"{PREFIX}_IMAGE_ENCODER", tooltip("From Load HunyuanVideo Image Encoder.")),
            "vae": (f"{PREFIX}_VAE", tooltip("From Load HunyuanVideo VAE.")),
            "image": ("IMAGE", tooltip("One image: the first frame of the video.")),
            "prompt": ("STRING", tooltip("What happens in the video.", multiline=True, dynamicPrompts=True)),
            "frames": ("INT", tooltip("Frame count, 4n+1 (129 released).", default=129, min=1, max=1025, step=4)),
            "base_size": ("INT", tooltip("Bucket size: the video area is about base_size²; 480 = 360p, 720 = 540p, "
                                         "960 = 720p. The image's aspect ratio picks the bucket.",
                                         default=960, min=64, max=2048, step=32)),
            "resize": (["crop", "pad"], tooltip("crop: short side to the bucket, centre crop (official). pad: fit "
                                                "inside and pad with black.", default="crop")),
            "condition": (["token_replace", "latent_concat"], tooltip(
                "token_replace for the 16-channel I2V model (released), latent_concat for the 33-channel one. Must "
                "match the model; the sampler checks.", default="token_replace")),
            "batch_size": ("INT", tooltip("Videos per run.", default=1, min=1, max=64)),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, frames=None):
        return check_frame_count(frames)      # at queue time, not after the encoders ran

    def condition(self, text_encoders, image_encoder, vae, image, prompt, frames, base_size, resize, condition,
                  batch_size):
        from ..hyvideo_core.apps.i2v import LATENT_KEY, I2VConditioningOptions, prepare_conditioning
        from .text import Conditioning

        options = I2VConditioningOptions(prompt=prompt, frames=frames, base_size=base_size, resize=resize,
                                         mode=condition, batch_size=batch_size)
        embeds, empty, cond, bucket_image = prepare_conditioning(vae, text_encoders, image, options,
                                                                 image_encoder=image_encoder)
        latent = {"samples": empty, LATENT_KEY: cond}
        return (Conditioning(embeds), latent, bucket_image.permute(0, 2, 3, 1).cpu())


NODES = {f"{PREFIX}_LoadImageEncoder": (LoadImageEncoder, "Load HunyuanVideo Image Encoder (HVS)"),
         f"{PREFIX}_ImageToVideoConditioning": (ImageToVideoConditioning, "HunyuanVideo Image-to-Video Conditioning (HVS)")}
