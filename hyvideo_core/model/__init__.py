from .transformer import HunyuanVideoTransformer

__all__ = ["HunyuanVideoTransformer"]
