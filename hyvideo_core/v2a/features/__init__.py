"""The Foley feature extractors: SigLIP2 frame features, CLAP text states, and frame sampling.

    from hyvideo_core.v2a.features import (load_siglip_vision, encode_frames, load_clap_text,
                                           encode_text, sample_video_file, sample_image_batch)

transformers' own model classes run the encoders (read from local Hugging Face folders only);
this package adds the release's preprocessing, batching, frame sampling and error messages.
"""
from .clap import CLAP_REPO, TEXT_LENGTH, ClapTextEncoder, encode_text, load_clap_text
from .frames import MAX_SECONDS, pick_indices, sample_image_batch, sample_video_file
from .model_folders import FeatureModelMissingError
from .siglip import SIGLIP_FPS, SIGLIP_REPO, encode_frames, load_siglip_vision, preprocess_frames

__all__ = ["CLAP_REPO", "TEXT_LENGTH", "ClapTextEncoder", "encode_text", "load_clap_text", "MAX_SECONDS",
           "pick_indices", "sample_image_batch", "sample_video_file", "FeatureModelMissingError", "SIGLIP_FPS",
           "SIGLIP_REPO", "encode_frames", "load_siglip_vision", "preprocess_frames"]
