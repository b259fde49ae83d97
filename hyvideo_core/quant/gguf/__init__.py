"""GGUF transformers (city96/ComfyUI-GGUF layout, arch ``hyvid``): a memory-mapped reader,
torch dequantisation of the GGML block formats, and a pass that keeps quantised Linear weights
packed and dequantises them per layer in the forward."""
from .dequant import BLOCK_SIZES, SUPPORTED_QUANT_TYPES, dequantize
from .layers import GGUFLinear, attach_packed_weights
from .source import ARCHITECTURE, GGUFSource, PackedWeight, UnsupportedQuantTypeError
from .writer import write_gguf

__all__ = ["ARCHITECTURE", "BLOCK_SIZES", "GGUFLinear", "GGUFSource", "PackedWeight", "SUPPORTED_QUANT_TYPES",
           "UnsupportedQuantTypeError", "attach_packed_weights", "dequantize", "write_gguf"]
