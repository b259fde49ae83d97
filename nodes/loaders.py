"""Model loader nodes: transformer, VAE, text encoders."""
from __future__ import annotations

from .adapters import CATEGORY, EMBEDDED_TOY_AVATAR, PREFIX, list_models, resolve_model, tooltip, torch_device

_DTYPES = ["auto", "bf16", "fp16", "fp32"]


def _dtype(name: str):
    import torch

    return {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _load_toy_avatar(weight_dtype, attention, memory):
    """The toy talking avatar (a few MB): memory passes have nothing to save on it and are not applied."""
    import logging

    import torch

    from ..hyvideo_core.attention import resolve_backend
    from ..hyvideo_core.toy.avatar import load_toy_avatar

    device = torch_device()
    model = load_toy_avatar(device=device, dtype=_dtype(weight_dtype) or torch.float32)
    model.attention_backend = resolve_backend(attention, device)
    if memory is not None:
        logging.getLogger(__name__).info("memory settings are not applied to %s (it is a few MB)", EMBEDDED_TOY_AVATAR)
    return model


class LoadTransformer:
    DESCRIPTION = ("Loads a HunyuanVideo diffusion transformer (.safetensors / .pt; official, ComfyUI, diffusers or "
                   "fp8-scaled layout). The variant is detected from the weights, not the file name; a "
                   "HunyuanVideo-Avatar file loads with its avatar modules.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (f"{PREFIX}_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The transformer, ready for the sampler.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        from ..hyvideo_core.attention import available_backends

        return {"required": {
            "model_name": (list_models("transformer"), tooltip(
                "Transformer weights from models/diffusion_models (or unet). '[embedded] tiny demo' is the suite's "
                "built-in small model; '[embedded] toy avatar' the toy world's talking avatar.")),
            "weight_dtype": (_DTYPES, tooltip(
                "auto keeps the file's precision (fp8 stays fp8) and computes in bf16 on GPU, fp32 on CPU.",
                default="auto")),
            "attention": (list(available_backends()), tooltip(
                "Attention kernel. flash_varlen and sage need their packages and a CUDA GPU; if unavailable, "
                "sdpa is used and the log says why.", default="sdpa")),
        }, "optional": {
            "memory": (f"{PREFIX}_MEMORY", tooltip("From HunyuanVideo Memory Settings: fp8, block swap, compile.")),
        }}

    def load(self, model_name, weight_dtype, attention, memory=None):
        from ..hyvideo_core.checkpoints.load import APP_EXTENSION
        from ..hyvideo_core.runtime.options import prepare_transformer

        if model_name == EMBEDDED_TOY_AVATAR:
            return (_load_toy_avatar(weight_dtype, attention, memory),)
        path = resolve_model("transformer", model_name)
        return (prepare_transformer(path, device=torch_device(), dtype=_dtype(weight_dtype),
                                    attention_backend=attention, memory=memory, extensions=[APP_EXTENSION]),)


class LoadVAE:
    DESCRIPTION = "Loads the HunyuanVideo causal 3D VAE (official / diffusers / ComfyUI-repackaged files)."
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (f"{PREFIX}_VAE",)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The video VAE for encoding and decoding.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae_name": (list_models("vae"), tooltip("VAE weights from models/vae.")),
            "weight_dtype": (_DTYPES, tooltip("auto keeps the file's precision on GPU and uses fp32 on CPU.",
                                              default="auto")),
        }}

    def load(self, vae_name, weight_dtype):
        from ..hyvideo_core import load_vae

        return (load_vae(resolve_model("vae", vae_name), device=torch_device(), dtype=_dtype(weight_dtype)),)


class LoadTextEncoders:
    DESCRIPTION = ("Loads the two text encoders: the LLaVA-Llama-3 language model (HF folder, ComfyUI "
                   "llava_llama3_fp16 / fp8_scaled, or GGUF) and CLIP-L. Tokenizers come from the model folder, "
                   "the GGUF metadata, or this ComfyUI installation; nothing is downloaded.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (f"{PREFIX}_TEXT_ENCODERS",)
    RETURN_NAMES = ("text_encoders",)
    OUTPUT_TOOLTIPS = ("Both encoders; they stay on the CPU between prompts.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        names = list_models("text_encoder")
        return {"required": {
            "llm_name": (names, tooltip("The LLaVA-Llama-3 text encoder (models/text_encoders or models/clip).")),
            "clip_name": (names, tooltip("CLIP-L (clip_l.safetensors or a CLIP folder).")),
            "weight_dtype": (_DTYPES + ["fp8"], tooltip(
                "auto keeps the file's precision (fp32 on CPU); fp8 stores the LLM's linear weights in fp8.",
                default="auto")),
        }}

    def load(self, llm_name, clip_name, weight_dtype):
        from ..hyvideo_core.text_encoders import load_text_encoders

        return (load_text_encoders(resolve_model("text_encoder", llm_name, "text_encoder"),
                                   resolve_model("text_encoder", clip_name, "clip"), device=torch_device(),
                                   dtype=None if weight_dtype == "auto" else weight_dtype),)


NODES = {f"{PREFIX}_LoadTransformer": (LoadTransformer, "Load HunyuanVideo Transformer (HVS)"),
         f"{PREFIX}_LoadVAE": (LoadVAE, "Load HunyuanVideo VAE (HVS)"),
         f"{PREFIX}_LoadTextEncoders": (LoadTextEncoders, "Load HunyuanVideo Text Encoders (HVS)")}
