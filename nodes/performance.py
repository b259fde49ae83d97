"""Settings nodes: memory passes for the transformer loader, step caching and parallel workers for
the sampler. Each returns a typed engine options object; the loader / sampler apply it."""
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
                   "0.15 ≈ 2.1x on the released model) or First-Block-Cache; for the avatar model its own frame "
                   "cache (the release's DeepCache). Connect to the sampler's 'step_cache'.")
    CATEGORY = f"{CATEGORY}/performance"
    RETURN_TYPES = (f"{PREFIX}_STEP_CACHE",)
    RETURN_NAMES = ("step_cache",)
    OUTPUT_TOOLTIPS = ("Step-cache options for the sampler.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        from ..hyvideo_core.runtime.options import STEP_CACHE_METHODS

        return {"required": {
            "method": (list(STEP_CACHE_METHODS), tooltip(
                "Which caching rule decides when to skip. teacache / first_block_cache: text- and image-to-video "
                "(they refuse the avatar model, whose sampling windows move between steps). avatar_frame_cache: the "
                "avatar model only, as released (always on there): 30 of 50 steps run the whole model, the others "
                "only its last block on the cached input of each latent frame (about 1.6x; other step counts scale "
                "the pattern); a text- or image-to-video sampler given it stops with an error.",
                default="teacache")),
            "threshold": ("FLOAT", tooltip("Higher skips more steps (faster, less faithful); 0 never skips. Not used "
                                           "by avatar_frame_cache (its steps are the release's).",
                                           default=0.15, min=0.0, max=2.0, step=0.01)),
        }}

    def make(self, method, threshold):
        from ..hyvideo_core.runtime.options import StepCacheOptions

        return (StepCacheOptions(method=method, threshold=threshold),)


class ParallelSettings:
    DESCRIPTION = ("Runs the sampler on several worker processes as one generation: one per GPU (or N CPU processes), "
                   "started on first use and kept warm. The image tokens are split over the workers (Ulysses and/or "
                   "ring attention), the two CFG passes can run side by side, and weights can be sharded so N smaller "
                   "cards hold the model. Same result as one process; progress, previews and Cancel work. Connect to "
                   "the sampler's 'parallel' input. Each worker loads the transformer from the loader's file (and "
                   "LoRA files) once.")
    CATEGORY = f"{CATEGORY}/performance"
    RETURN_TYPES = (f"{PREFIX}_PARALLEL",)
    RETURN_NAMES = ("parallel",)
    OUTPUT_TOOLTIPS = ("Parallel settings for the sampler.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "workers": ("INT", tooltip("Worker processes: 0 = one per visible GPU (2 when ComfyUI runs on the CPU). "
                                       "Changing it restarts the workers.", default=0, min=0, max=64)),
            "ulysses": ("INT", tooltip("Ulysses degree (all-to-all over attention heads; must divide the model's "
                                       "heads, 24 for the released model). 0 = automatic.", default=0, min=0, max=64)),
            "ring": ("INT", tooltip("Ring-attention degree (any size). 0 = automatic: the workers Ulysses cannot "
                                    "take.", default=0, min=0, max=64)),
            "cfg_parallel": (["auto", "on", "off"], tooltip(
                "Run the positive and negative CFG passes on two halves of the workers. auto: when cfg > 1 and "
                "the worker count is even.", default="auto")),
            "shard_weights": ("BOOLEAN", tooltip("Each worker keeps about 1/N of the transformer's weights (FSDP2), "
                                                 "so N smaller cards hold a model one card cannot.", default=False)),
        }}

    def make(self, workers, ulysses, ring, cfg_parallel, shard_weights):
        from ..hyvideo_core.parallel.pool import PoolSettings

        return (PoolSettings(workers=workers, ulysses=ulysses, ring=ring, cfg_parallel=cfg_parallel,
                             shard_weights=shard_weights),)


NODES = {f"{PREFIX}_MemorySettings": (MemorySettings, "HunyuanVideo Memory Settings (HVS)"),
         f"{PREFIX}_StepCache": (StepCache, "HunyuanVideo Step Cache (HVS)"),
         f"{PREFIX}_ParallelSettings": (ParallelSettings, "HunyuanVideo Parallel Settings (HVS)")}
