"""HunyuanVideo's causal 3D VAE: model, tiling and loading."""
from .autoencoder import CausalVideoVAE
from .load import detect_vae_config, load_vae, save_vae
from .tiling import TileSettings, TilingPlan

__all__ = ["CausalVideoVAE", "TileSettings", "TilingPlan", "detect_vae_config", "load_vae", "save_vae"]
