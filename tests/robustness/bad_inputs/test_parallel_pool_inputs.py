"""Bad settings and inputs for parallel sampling in a long-lived process (hyvideo_core/parallel/pool.py,
the ComfyUI Parallel Settings node): each is a clear error naming what is wrong and what to do, and a
message on the pool's socket that does not follow the format is refused, not interpreted."""
from __future__ import annotations

import json
import os
import shutil
import socket
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import torch

from hyvideo_core.apps.latent_stages import SamplerOptions
from hyvideo_core.errors import InputError
from hyvideo_core.parallel import wire
from hyvideo_core.parallel.pool import PoolSettings, parallel_sample_latents, shared_pool
from hyvideo_core.runtime.options import prepare_transformer
from hyvideo_core.text_encoders.api import PromptEmbeds

pytestmark = pytest.mark.robustness

REPO = Path(__file__).resolve().parents[3]
TOY = REPO / "hyvideo_core" / "toy" / "weights" / "transformer.safetensors"

SETTINGS = {   # id: (settings kwargs, (workers, heads, cfg scale) or None, message)
    "negative_workers": (dict(workers=-1), None, "must be >= 0"),
    "unknown_cfg_parallel": (dict(cfg_parallel="maybe"), None, "cfg_parallel must be 'auto', 'on' or 'off'"),
    "split_not_the_worker_count": (dict(ulysses=3), (2, 24, 1.0), "must make the 2 workers"),
    "ulysses_not_dividing_heads": (dict(ulysses=2), (2, 3, 1.0), "does not divide the model's 3 attention heads"),
    "cfg_parallel_without_cfg": (dict(cfg_parallel="on"), (2, 24, 1.0), "CFG-parallel needs cfg > 1"),
    "cfg_parallel_odd_workers": (dict(cfg_parallel="on"), (3, 24, 5.0), "an even number of workers"),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_bad_parallel_settings_are_explained(case):
    kwargs, split, message = SETTINGS[case]
    with pytest.raises(InputError, match=message):
        PoolSettings(**kwargs).config_for(*split) if split else PoolSettings(**kwargs)


def test_more_workers_than_gpus_is_explained():
    visible = torch.cuda.device_count()
    with pytest.raises(InputError, match=f"{visible + 1} parallel workers asked for but {visible} GPUs are visible"):
        PoolSettings(workers=visible + 1).worker_count("cuda")


def _job(model, channels=None):
    c = model.config
    embeds = PromptEmbeds(torch.randn(1, 6, c.text_states_dim), torch.ones(1, 6, dtype=torch.int64),
                          torch.randn(1, c.text_states_dim_2))
    return embeds, torch.zeros(1, channels or c.in_channels, 3, 8, 8)


def test_an_error_in_every_worker_is_raised_as_is_and_the_pool_survives():
    model = prepare_transformer(TOY)
    embeds, latent = _job(model, channels=model.config.in_channels + 1)
    with pytest.raises(InputError, match=f"latents have {model.config.in_channels + 1} channels"):
        parallel_sample_latents(model, embeds, latent, SamplerOptions(steps=2), settings=PoolSettings(workers=2),
                                scaling_factor=0.5)
    pids = shared_pool(2, "cpu").pids
    embeds, latent = _job(model)
    parallel_sample_latents(model, embeds, latent, SamplerOptions(steps=1), settings=PoolSettings(workers=2),
                            scaling_factor=0.5)
    assert shared_pool(2, "cpu").pids == pids


def test_a_model_file_gone_since_loading_is_explained(tmp_path):
    path = tmp_path / "model.safetensors"
    shutil.copy(TOY, path)
    model = prepare_transformer(path)
    os.remove(path)
    embeds, latent = _job(model)
    with pytest.raises(InputError, match="which the parallel workers cannot read now"):
        parallel_sample_latents(model, embeds, latent, SamplerOptions(steps=1), settings=PoolSettings(workers=2),
                                scaling_factor=0.5)


def _header(**over):
    return json.dumps(dict({"kind": "job", "fields": {}, "tensors": []}, **over)).encode()


MESSAGES = {   # id: (raw byte messages, error)
    "not_json": ([b"\x80\x04pickle?"], "malformed message header"),
    "missing_keys": ([json.dumps({"kind": "job"}).encode()], "malformed message header"),
    "fields_not_an_object": ([_header(fields=[1, 2])], "malformed message header"),
    "unknown_dtype": ([_header(tensors=[["x", [2], "object"]]), b"\0" * 16], "malformed tensor description"),
    "negative_size": ([_header(tensors=[["x", [-2], "float32"]]), b""], "negative size"),
    "too_few_bytes": ([_header(tensors=[["x", [4], "float32"]]), b"\0" * 15], r"15 bytes for shape \[4\] float32"),
}


@pytest.mark.parametrize("case", list(MESSAGES))
def test_malformed_messages_are_refused(case):
    raw, error = MESSAGES[case]
    a, b = socket.socketpair()
    sender, receiver = Connection(a.detach()), Connection(b.detach())
    for part in raw:
        sender.send_bytes(part)
    with pytest.raises(wire.WireError, match=error):
        wire.recv(receiver)


def test_a_tensor_of_an_unsendable_dtype_is_refused_before_anything_is_sent():
    a, b = socket.socketpair()
    sender, receiver = Connection(a.detach()), Connection(b.detach())
    with pytest.raises(wire.WireError, match="complex64 cannot be sent"):
        wire.send(sender, "job", tensors={"z": torch.zeros(2, dtype=torch.complex64)})
    assert not receiver.poll(0.1)
