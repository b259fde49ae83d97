"""Shared fixtures: a tiny cache (toy-world clips through the `tiny` VAE, hashed word embeddings
standing in for the text encoders) and a trainer config on the `tiny` variant."""
import hashlib

import pytest
import torch

from hyvideo_core.finetune.data import cache_dataset
from hyvideo_core.finetune.trainer import TrainConfig
from hyvideo_core.toy.clip_source import toy_clips
from hyvideo_core.vae import CausalVideoVAE
from hyvideo_core.variants import get_variant

BUCKETS = [(5, 32, 32), (5, 32, 48)]


def word_vector(word: str, dim: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


def fake_text(prompts, dim=32, dim2=16):
    """(states, mask, pooled) like encode_prompt: one token per word, right-padded."""
    words = [p.split() or ["<empty>"] for p in prompts]
    length = max(len(w) for w in words)
    states = torch.zeros(len(prompts), length, dim)
    mask = torch.zeros(len(prompts), length, dtype=torch.long)
    pooled = torch.zeros(len(prompts), dim2)
    for i, ws in enumerate(words):
        for j, w in enumerate(ws):
            states[i, j] = word_vector(w, dim)
            pooled[i] += word_vector(w, dim2) / len(ws)
        mask[i, : len(ws)] = 1
    return states, mask, pooled


@pytest.fixture(scope="session")
def tiny_vae():
    torch.manual_seed(0)
    return CausalVideoVAE(get_variant("tiny").vae).eval()


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory, tiny_vae):
    out = tmp_path_factory.mktemp("cache")
    cache_dataset(str(out), toy_clips(16, seed=3, geometries=BUCKETS), tiny_vae, fake_text, BUCKETS)
    return str(out)


@pytest.fixture(scope="session")
def prior_cache(tmp_path_factory, tiny_vae):
    """Other clips (other seed, other captions): what a LoRA's prior preservation keeps."""
    out = tmp_path_factory.mktemp("prior_cache")
    cache_dataset(str(out), toy_clips(8, seed=4, geometries=BUCKETS[:1]), tiny_vae, fake_text, BUCKETS[:1])
    return str(out)


@pytest.fixture
def train_cfg(tiny_cache, tmp_path):
    def make(**kw):
        base = dict(cache_dir=tiny_cache, output_dir=str(tmp_path / "run"), variant="tiny", steps=6, global_batch=4,
                    lr=2e-3, log_every=1, seed=1, threads=1)
        base.update(kw)
        return TrainConfig(**base)
    return make
