"""Tiny random SigLIP and CLAP models with offline-built tokenizers, saved in the Hugging Face
folder layout the Foley feature loaders read. Shared by the feature tests and the robustness cases."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

WORDS = ("a the dog barks cat meows rain falls on roof glass breaks footsteps wood floor engine roars car "
         "passes by water splash noisy harsh loud soft quiet birds sing wind blows door slams").split()
IMAGE_SIZE = 32


def save_tiny_siglip(folder: Path, seed: int = 0):
    """A full SiglipModel (text + vision, as google/siglip2-base-patch16-512 is) at 32×32, patch 8."""
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(seed)
    cfg = SiglipConfig(text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, vocab_size=64),
                       vision_config=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=8))
    model = SiglipModel(cfg).eval()
    model.save_pretrained(str(folder))
    return model


def build_clap_tokenizer():
    """Byte-level BPE with RoBERTa's <s> … </s> post-processing, as laion/larger_clap_general's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([" ".join(WORDS[i:i + 5]) for i in range(len(WORDS))] * 3, trainer=trainer)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    return tk


def save_tiny_clap(folder: Path, seed: int = 0):
    """A full ClapModel (text + audio towers) with an 80-position text tower and its tokenizer."""
    from transformers import ClapConfig, ClapModel

    tk = build_clap_tokenizer()
    torch.manual_seed(seed)
    cfg = ClapConfig(text_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=2, vocab_size=tk.get_vocab_size(),
                                      max_position_embeddings=80, projection_dim=16, pad_token_id=1),
                     audio_config=dict(depths=[1, 1], num_attention_heads=[1, 1], hidden_size=16,
                                       patch_embeds_hidden_size=8, projection_dim=16, num_mel_bins=16,
                                       spec_size=32, window_size=4, patch_size=4),
                     projection_dim=16)
    model = ClapModel(cfg).eval()
    model.save_pretrained(str(folder))
    tk.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(dict(
        tokenizer_class="PreTrainedTokenizerFast", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>", model_max_length=512, padding_side="right")))
    return model


def write_test_video(path: Path, seconds: float, fps: int, size: int = 16) -> Path:
    """An H.264 test pattern made by imageio-ffmpeg's own ffmpeg binary (frame-accurate, constant rate)."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size={size}x{size}:rate={fps}", "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True, timeout=300)
    return path
