"""Settings nodes: memory passes for the transformer loader, step caching for the sampler.
Each returns a typed engine options object; the loader / sampler apply it."""
from __future__ import annotations

from .adapters import CATEGORY, PREFIX, tooltip


class MemorySettings:
    DESCRIPTION = ("Memory passes for HunyuanVideo Transformer loading: fp8 block weights, block swap (keep the last "
                   "blocks in CPU RAM or on disk and stream each in just before use, with prefetch on CUDA), and "
                   "regional torch.compile. Connect to the loader's 'memory' input.")
    CATEGORY = f"{CATEGORY}/performance"
    RETURN_TYPES = (f"{PREFIX}_MEMORY",)
    RETURN_NAMES = ("memory",)
    OUTPUT_TOOLTIPS = ("Options for Load HunyuanVideo Transformer.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "quantize": (["none", "fp8_e4m3fn"], tooltip(
                "fp8_e4m3fn stores the block weights in 8 bits (about half of bf16; fp8 matmul on GPUs that have "
                "it). GGUF and fp8 files are already quantized.", default="none")),
            "block_swap": (["off", "auto", "manual"], tooltip(
                "auto: swap as few blocks as fit the weights budget; manual: swap the counts below.", default="off")),
            "weights_budget_gb": ("FLOAT", tooltip(
                "With auto: GPU memory the transformer weights may take. Leave room for activations (about 18 GB "
                "at 720p x 129 frames).", default=12.0, min=0.5, max=200.0, step=0.5)),
            "swap_double_blocks": ("INT", tooltip("With manual: how many of the last double blocks to swap.",
                                                  default=0, min=0, max=64)),
            "swap_single_blocks": ("INT", tooltip("With manual: how many of the last single blocks to swap.",
                                                  default=0, min=0, max=128)),
            "offload_to": (["cpu", "disk"], tooltip("Where swapped blocks live: pinned CPU RAM, or a file on disk "
                                                    "(slowest, least RAM).", default="cpu")),
            "compile": ("BOOLEAN", tooltip("torch.compile each block (slow first run, faster steps).", default=False)),
        }}

    def make(self, quantize, block_swap, weights_budget_gb, swap_double_blocks, swap_single_blocks, offload_to,
             compile):
        from ..hyvideo_core.runtime.options import MemoryOptions

        return (MemoryOptions(quantize=quantize, block_swap=block_swap, weights_budget_gb=weights_budget_gb,
                              swap_double=swap_double_blocks, swap_single=swap_single_blocks, store=offload_to,
                              compile=compile),)


class StepCache:
    DESCRIPTION = ("Skips transformer passes on steps where its output barely changes: TeaCache (threshold 0.1 ≈ 1.6x, "
                   "0.15 ≈ 2.1x on the released model) or First-Block-Cache. Connect to the sampler's 'step_cache'.")
    CATEGORY = f"{CATEGORY}/performance"
    RETURN_TYPES = (f"{PREFIX}_STEP_CACHE",)
    RETURN_NAMES = ("step_cache",)
    OUTPUT_TOOLTIPS = ("Step-cache options for the sampler.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "method": (["teacache", "first_block_cache"], tooltip("Which caching rule decides when to skip.",
                                                                  default="teacache")),
            "threshold": ("FLOAT", tooltip("Higher skips more steps (faster, less faithful); 0 never skips.",
                                           default=0.15, min=0.0, max=2.0, step=0.01)),
        }}

    def make(self, method, threshold):
        from ..hyvideo_core.runtime.options import StepCacheOptions

        return (StepCacheOptions(method=method, threshold=threshold),)


NODES = {f"{PREFIX}_MemorySettings": (MemorySettings, "HunyuanVideo Memory Settings (HVS)"),
         f"{PREFIX}_StepCache": (StepCache, "HunyuanVideo Step Cache (HVS)")}
