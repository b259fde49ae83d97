"""The Foley feature extractors: SigLIP2 frame features, Synchformer sync features, CLAP text
states, and frame sampling.

    from hyvideo_core.v2a.features import (load_siglip_vision, encode_frames, load_synchformer,
                                           encode_sync_frames, load_clap_text, encode_text,
                                           sample_video_file, sample_image_batch)

transformers' own model classes run SigLIP2 and CLAP (read from local Hugging Face folders only);
the Synchformer visual MotionFormer is ours, read from ``synchformer_state_dict.pth``. This package
adds the release's preprocessing, batching, frame sampling and error messages.
"""
from .clap import CLAP_REPO, TEXT_LENGTH, ClapTextEncoder, encode_text, load_clap_text
from .frames import (MAX_SECONDS, SEGMENT_FRAMES, SEGMENT_STRIDE, SYNCH_FPS, pick_indices, sample_image_batch,
                     sample_video_file, sync_segment_count)
from .model_folders import FeatureModelMissingError
from .siglip import SIGLIP_FPS, SIGLIP_REPO, encode_frames, load_siglip_vision, preprocess_frames
from .synchformer import (SYNCHFORMER_CONFIGS, SYNCHFORMER_FILE, Synchformer, SynchformerConfig, encode_sync_frames,
                          load_synchformer, preprocess_sync_frames, sync_duration_seconds)

__all__ = ["CLAP_REPO", "TEXT_LENGTH", "ClapTextEncoder", "encode_text", "load_clap_text", "MAX_SECONDS",
           "pick_indices", "sample_image_batch", "sample_video_file", "FeatureModelMissingError", "SIGLIP_FPS",
           "SIGLIP_REPO", "encode_frames", "load_siglip_vision", "preprocess_frames", "SEGMENT_FRAMES", "SEGMENT_STRIDE",
           "SYNCH_FPS", "sync_segment_count", "SYNCHFORMER_CONFIGS", "SYNCHFORMER_FILE", "Synchformer",
           "SynchformerConfig", "encode_sync_frames", "load_synchformer", "preprocess_sync_frames",
           "sync_duration_seconds"]
