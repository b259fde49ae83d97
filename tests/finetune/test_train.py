"""Training engine: loss goes down, exact resume, atomic checkpoints, DDP parity, bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.finetune.data import CachedDataset, assign_bucket, cache_dataset, folder_source, parse_buckets
from hyvideo_core.finetune.flow import noisy_latents, sample_sigmas, shift_sigmas, velocity_target
from hyvideo_core.finetune.passes import enable_gradient_checkpointing
from hyvideo_core.finetune.trainer import Trainer, build_model, train
from hyvideo_core.toy.clip_source import toy_clips

from .conftest import BUCKETS, fake_text

ROOT = Path(__file__).resolve().parents[2]


def test_flow_matching_definitions():
    g = torch.Generator().manual_seed(0)
    s = sample_sigmas(4000, g)
    assert 0 < float(s.min()) and float(s.max()) < 1 and abs(float(s.median()) - 0.5) < 0.03
    shifted = sample_sigmas(4000, torch.Generator().manual_seed(0), shift=7.0)
    assert float(shifted.median()) > 0.8                       # shift favours high noise
    assert torch.allclose(shift_sigmas(torch.tensor([0.5]), 7.0), torch.tensor([7 * 0.5 / (1 + 6 * 0.5)]))
    x0, eps, sigma = torch.randn(2, 4, 2, 4, 4), torch.randn(2, 4, 2, 4, 4), torch.tensor([0.0, 1.0])
    xt = noisy_latents(x0, eps, sigma)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[1], eps[1])
    assert torch.equal(velocity_target(x0, eps), eps - x0)


def test_buckets():
    b = parse_buckets(["17x64x64", "33x64x64", (17, 64, 96)])
    assert assign_bucket(40, 64, 64, b) == (33, 64, 64)
    assert assign_bucket(20, 128, 128, b) == (17, 64, 64)
    assert assign_bucket(33, 100, 150, b) == (17, 64, 96)
    with pytest.raises(InputError, match="fewer than the shortest bucket"):
        assign_bucket(9, 64, 64, b)
    with pytest.raises(InputError, match="4n\\+1"):
        parse_buckets(["16x64x64"])


def test_short_training_run_lowers_the_loss(train_cfg):
    result = train(train_cfg(steps=12, warmup_steps=2, schedule="cosine"))
    first, last = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert last < 0.8 * first, result.losses
    ckpt = Path(result.checkpoint)
    assert (ckpt / "training_state.safetensors").is_file() and (ckpt / "model.safetensors").is_file()
    from hyvideo_core import load_transformer
    assert load_transformer(ckpt / "model.safetensors").variant == "tiny"


def _weights(run_dir):
    from safetensors.torch import load_file
    root = Path(run_dir) / "checkpoints"
    return load_file(str(root / (root / "latest").read_text() / "model.safetensors"))


@pytest.mark.parametrize("extra", [dict(ema_decay=0.9, warmup_steps=2, schedule="cosine", caption_dropout=0.3),
                                   dict(mode="lora", lora_rank=4, lora_dropout=0.1, ema_decay=0.8),
                                   dict(mode="lora", lora_rank=4, prior_weight=2.0)],
                         ids=["full-ema", "lora", "lora-prior"])
def test_exact_resume(train_cfg, tmp_path, extra, prior_cache):
    if "prior_weight" in extra:
        extra = dict(extra, prior_cache_dir=prior_cache)
    full = train(train_cfg(output_dir=str(tmp_path / "a"), steps=6, **extra))
    part = train(train_cfg(output_dir=str(tmp_path / "b"), steps=6, stop_after=3, **extra))
    assert part.step == 3
    resumed = train(train_cfg(output_dir=str(tmp_path / "b"), steps=6, **extra))
    assert resumed.step == 6 and resumed.losses == full.losses   # bit-identical trajectory
    name = "lora.safetensors" if extra.get("mode") == "lora" else "model.safetensors"
    from safetensors.torch import load_file
    a = load_file(str(Path(full.checkpoint) / name))
    b = load_file(str(Path(resumed.checkpoint) / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_interrupted_checkpoint_keeps_the_last_good_one(train_cfg, tmp_path, monkeypatch):
    cfg = train_cfg(output_dir=str(tmp_path / "r"), steps=4, save_every=2)
    trainer = Trainer(cfg)
    trainer.train_step(), trainer.train_step()
    good = trainer.save_checkpoint()
    trainer.train_step()

    def crash(folder):
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(trainer, "export", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    root = tmp_path / "r" / "checkpoints"
    assert (root / "latest").read_text() == good.name
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("step_")) == [good.name]
    monkeypatch.undo()
    again = Trainer(train_cfg(output_dir=str(tmp_path / "r"), steps=4))
    assert again.step == 2


def test_gradient_checkpointing_gives_the_same_gradients(tiny_cache):
    from hyvideo_core.finetune.trainer import TrainConfig
    cfg = TrainConfig(cache_dir=tiny_cache, output_dir="unused", variant="tiny", seed=5)
    grads = []
    for ckpt in (False, True):
        model = build_model(cfg).train().requires_grad_(True)
        if ckpt:
            assert enable_gradient_checkpointing(model) == 6
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 4, 2, 4, 4, generator=g)
        y = model(x, torch.tensor([300.0, 700.0]), torch.randn(2, 5, 32, generator=g), None,
                  torch.randn(2, 16, generator=g), torch.tensor([6000.0, 6000.0]))
        y.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5) for n in grads[0])


@pytest.mark.parametrize("prior", [False, True], ids=["full", "lora-prior"])
def test_two_processes_match_one(train_cfg, tmp_path, prior, prior_cache):
    """2 CPU processes (gloo, per-process batch 2) vs 1 process (batch 4): same loss trajectory
    within 1e-5 relative (only the gradient all-reduce order differs). With prior preservation each
    step has two backward passes, and only the second may all-reduce."""
    extra = dict(mode="lora", lora_rank=4, prior_cache_dir=prior_cache, lr=2e-2) if prior else {}
    one = train(train_cfg(output_dir=str(tmp_path / "one"), steps=4, **extra))
    cfg = dict(train_cfg(output_dir=str(tmp_path / "two"), steps=4, **extra).__dict__)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hyvideo_core.finetune", "train", "--config", str(cfg_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["processes"] for r in records] == [2] * 4
    two = [r["loss"] for r in records]
    assert np.allclose(two, one.losses, rtol=1e-5, atol=1e-7), (two, one.losses)


def _prior_distance(trainer, n=4):
    """Mean squared gap between the model and its base (LoRA off) on the first prior batch."""
    b = trainer._sample_inputs(list(range(n)), list(range(n)), prior=True)
    with torch.no_grad():
        return float(trainer._prior_loss(b))


def test_prior_preservation_keeps_the_base_output_on_prior_clips(train_cfg, prior_cache):
    """The LoRA starts as the base (gap exactly 0); trained on its clips at a high learning rate it moves
    away from the base on other clips, and prior preservation holds it closer."""
    gaps = {}
    for weight in (0.0, 5.0):               # weight 0: the same run without the prior term
        trainer = Trainer(train_cfg(output_dir=f"{train_cfg().output_dir}_{weight}", mode="lora", lora_rank=4,
                                    lr=3e-2, steps=8, seed=3, prior_cache_dir=prior_cache, prior_weight=weight))
        assert _prior_distance(trainer) == 0.0
        for _ in range(8):
            trainer.train_step()
        gaps[weight] = _prior_distance(trainer)
    assert gaps[0.0] > 0 and gaps[5.0] < 0.5 * gaps[0.0], gaps


def test_guided_target_at_guidance_one_is_the_data_target(train_cfg, tmp_path):
    """u + w·(data − u) is the data target at w = 1 (same trajectory), and a different one at w = 4."""
    runs = {name: train(train_cfg(output_dir=str(tmp_path / name), mode="lora", lora_rank=4, steps=3, **kw)).losses
            for name, kw in {"plain": dict(train_guidance=1.0), "guided1": dict(train_guidance=1.0, guided_target=True),
                             "guided4": dict(train_guidance=4.0, guided_target=True),
                             "plain4": dict(train_guidance=4.0)}.items()}
    assert np.allclose(runs["guided1"], runs["plain"], rtol=1e-5), runs
    assert not np.allclose(runs["guided4"], runs["plain4"], rtol=1e-2), runs


def test_guided_target_needs_embedded_guidance(train_cfg):
    with pytest.raises(InputError, match="guided_target is for guidance-distilled"):
        Trainer(train_cfg(variant="tiny-noguide", guided_target=True))
    with pytest.raises(InputError, match="choose one"):
        Trainer(train_cfg(guided_target=True, distill_teacher="x.safetensors"))


def test_prior_preservation_needs_a_lora(train_cfg, prior_cache):
    with pytest.raises(InputError, match="needs mode 'lora'"):
        Trainer(train_cfg(prior_cache_dir=prior_cache))


# -- bad input ---------------------------------------------------------------------------------


def test_empty_missing_and_unreadable_dataset_folders(tmp_path, tiny_vae):
    with pytest.raises(InputError, match="does not exist"):
        list(folder_source(str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no videos"):
        list(folder_source(str(tmp_path / "empty")))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "clip.mp4").write_bytes(b"not a video at all")
    (bad / "clip.txt").write_text("a red circle")
    with pytest.raises(InputError, match="could not read video"):
        list(folder_source(str(bad)))
    (bad / "other.mp4").write_bytes(b"x")
    (bad / "clip.mp4").unlink()
    with pytest.raises(InputError, match="no caption file"):
        list(folder_source(str(bad)))
    with pytest.raises(InputError, match="no clips"):
        cache_dataset(str(tmp_path / "c0"), iter([]), tiny_vae, fake_text, BUCKETS)
    with pytest.raises(InputError, match="not a training cache"):
        CachedDataset(str(tmp_path / "empty"))


def test_folder_of_mp4_clips_is_cached(tmp_path, tiny_vae):
    from hyvideo_core.toy.world import ToyWorld
    from hyvideo_core.video_io import write_mp4
    data = tmp_path / "data"
    data.mkdir()
    for i, clip in enumerate(ToyWorld(0, frames=9, height=32, width=48).clips(2)):
        write_mp4(clip.frames, data / f"c{i}.mp4")
        (data / f"c{i}.txt").write_text(clip.caption)
    m = cache_dataset(str(tmp_path / "cache"), folder_source(str(data)), tiny_vae, fake_text, [(5, 32, 48)])
    assert [e["latent_shape"] for e in m["entries"]] == [[4, 2, 4, 6]] * 2
    ds = CachedDataset(str(tmp_path / "cache"))
    assert ds[0]["caption"] == ToyWorld(0, frames=9, height=32, width=48)[0].caption


def test_clips_shorter_than_the_bucket(tmp_path, tiny_vae):
    with pytest.raises(InputError, match="fewer than the shortest bucket"):
        cache_dataset(str(tmp_path / "c"), toy_clips(2, geometries=[(5, 32, 32)]), tiny_vae, fake_text, [(9, 32, 32)])
    with pytest.raises(InputError, match="all 2 clips are shorter"):
        cache_dataset(str(tmp_path / "d"), toy_clips(2, geometries=[(5, 32, 32)]), tiny_vae, fake_text, [(9, 32, 32)],
                      skip_short=True)


def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "hyvideo_core.finetune", "train", "--cache-dir", str(tmp_path / "x"),
                           "--output-dir", str(tmp_path / "o"), "--variant", "tiny"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "hyvideo_core.finetune", "train", "--config", str(tmp_path / "c.yaml")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "config file" in proc.stderr


def test_wrong_text_dims_or_batch(train_cfg):
    with pytest.raises(InputError, match="text embeddings of size"):
        Trainer(train_cfg(variant="toy"))
    with pytest.raises(InputError, match="larger than every bucket"):
        Trainer(train_cfg(global_batch=64))


def test_callback_gets_every_step_and_can_stop_the_run(train_cfg, tmp_path):
    seen = []
    result = train(train_cfg(output_dir=str(tmp_path / "a"), steps=3, mode="lora", lora_rank=4),
                   callback=lambda step, loss: seen.append((step, loss)))
    assert seen == list(enumerate(result.losses, start=1))

    class Stop(Exception):
        pass

    def stop_at_two(step, loss):
        if step == 2:
            raise Stop
    with pytest.raises(Stop):
        train(train_cfg(output_dir=str(tmp_path / "b"), steps=5, mode="lora", lora_rank=4), callback=stop_at_two)
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_cache_progress_and_a_cache_folder_made_with_other_buckets(tmp_path, tiny_vae):
    counts = []
    cache_dataset(str(tmp_path / "c"), toy_clips(3, geometries=[(5, 32, 32)]), tiny_vae, fake_text, [(5, 32, 32)],
                  callback=counts.append)
    assert counts == [1, 2, 3]
    counts.clear()
    cache_dataset(str(tmp_path / "c"), toy_clips(3, geometries=[(5, 32, 32)]), tiny_vae, fake_text, [(5, 32, 32)],
                  callback=counts.append)                    # already cached: still reported
    assert counts == [1, 2, 3]
    with pytest.raises(InputError, match="already holds a cache made with buckets"):
        cache_dataset(str(tmp_path / "c"), toy_clips(3, geometries=[(5, 32, 32)]), tiny_vae, fake_text,
                      [(5, 32, 48)])
    with pytest.raises(InputError, match="not FRAMESxHEIGHTxWIDTH"):
        parse_buckets(["17x64"])


def test_lora_training_starts_from_an_fp8_scaled_file(tmp_path):
    from hyvideo_core import save_transformer
    from hyvideo_core.finetune.trainer import TrainConfig
    from hyvideo_core.quant.passes import quantize_transformer

    model = build_model(TrainConfig(variant="tiny", seed=5))
    quantize_transformer(model, "fp8_e4m3fn")
    save_transformer(model, tmp_path / "fp8.safetensors")
    layer = model.double_blocks[0].img_attn_qkv
    expected = layer.weight.float() * layer.scale_weight
    built = build_model(TrainConfig(variant="tiny", seed=0, init=str(tmp_path / "fp8.safetensors")))
    assert torch.allclose(built.double_blocks[0].img_attn_qkv.weight, expected)
