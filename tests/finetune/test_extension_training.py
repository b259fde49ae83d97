"""Fine-tuning a model extension (the avatar's modules on the tiny-avatar variant): cached extras, collation,
extras reaching the model, extension-only or full training, per-extra condition dropout, exact resume."""
from pathlib import Path

import numpy as np
import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.finetune.data import CachedDataset, RawClip, cache_dataset, collate
from hyvideo_core.finetune.extensions import drop_extras
from hyvideo_core.finetune.trainer import TrainConfig, Trainer, build_model, train
from hyvideo_core.toy.world import ToyWorld
from hyvideo_core.variants import get_variant

from .conftest import fake_text

BUCKET = (5, 32, 32)                       # tiny VAE -> latents (4, 2, 4, 4): 5 audio frames
AVATAR = get_variant("tiny-avatar").app.config


def avatar_clips(n: int, seed: int = 5):
    world = ToyWorld(seed, frames=5, height=32, width=32)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        clip = world[i]
        windows = torch.randn(AVATAR.audio_frames(2), AVATAR.audio_window, AVATAR.whisper_layers,
                              AVATAR.whisper_dim, generator=g)
        mask = torch.zeros(4, 4)
        mask[1:3, 1:3] = 1
        yield RawClip(f"av{i:03d}", clip.frames, clip.caption, extras={"audio_windows": windows, "face_mask": mask},
                      reference=clip.frames[0])


@pytest.fixture(scope="module")
def avatar_cache(tmp_path_factory, tiny_vae):
    out = tmp_path_factory.mktemp("avatar_cache")
    cache_dataset(str(out), avatar_clips(8), tiny_vae, fake_text, [BUCKET])
    return str(out)


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    """A tiny-avatar backbone without avatar modules (what a base model file holds)."""
    from hyvideo_core.checkpoints.load import save_transformer
    from hyvideo_core.model import HunyuanVideoTransformer

    torch.manual_seed(3)
    model = HunyuanVideoTransformer(get_variant("tiny-avatar").transformer)
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_transformer(model, path)
    return str(path)


def cfg(avatar_cache, tmp_path, **kw):
    base = dict(cache_dir=avatar_cache, output_dir=str(tmp_path / "run"), variant="tiny-avatar", extension="avatar",
                steps=4, global_batch=4, lr=2e-3, log_every=1, seed=1, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_cache_keeps_extras_and_encodes_the_reference(avatar_cache, tiny_vae):
    ds = CachedDataset(avatar_cache)
    item = ds[0]
    assert sorted(item["extras"]) == ["audio_windows", "face_mask", "ref_latents"]
    assert item["extras"]["audio_windows"].shape == (5, 10, 5, 8)
    expected_windows = next(avatar_clips(1)).extras["audio_windows"]
    assert torch.equal(item["extras"]["audio_windows"], expected_windows)
    # the reference image repeated over the clip through the VAE, scaled like the latents
    clip = next(avatar_clips(1))
    video = torch.from_numpy(np.repeat(clip.reference[None], 5, axis=0)).permute(3, 0, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ref = tiny_vae.encode(video[None], tile=False)[0]
    assert item["extras"]["ref_latents"].shape == item["latents"].shape
    assert torch.allclose(item["extras"]["ref_latents"], ref * ds.scaling, atol=1e-5)
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["extras"]["audio_windows"].shape == (3, 5, 10, 5, 8)
    assert batch["extras"]["face_mask"].shape == (3, 4, 4)


def test_collate_refuses_mixed_extras(avatar_cache):
    ds = CachedDataset(avatar_cache)
    bare = dict(ds[1], extras={})
    with pytest.raises(InputError, match="different extension extras"):
        collate([ds[0], bare])
    other = dict(ds[1], extras=dict(ds[1]["extras"], face_mask=torch.zeros(8, 8)))
    with pytest.raises(InputError, match="different shapes"):
        collate([ds[0], other])


def test_reference_given_as_an_extra_is_refused(tmp_path, tiny_vae):
    clip = next(avatar_clips(1))
    clip.extras["ref_latents"] = torch.zeros(4, 2, 4, 4)
    with pytest.raises(InputError, match="RawClip.reference"):
        cache_dataset(str(tmp_path / "c"), [clip], tiny_vae, fake_text, [BUCKET])


def test_extension_only_training_moves_only_the_extension(avatar_cache, tmp_path, base_file):
    c = cfg(avatar_cache, tmp_path, init=base_file, trainable="extension", zero_init=("before_proj.",), steps=3)
    trainer = Trainer(c)
    own = ("ref_in.", "before_proj.", "audio_proj.", "motion_exp.", "motion_pose.", "fps_proj.",
           "audio_adapter_blocks.")
    assert set(trainer.named) and all(n.startswith(own) for n in trainer.named)
    assert float(trainer.model.before_proj.weight.detach().abs().max()) == 0.0      # zero-initialised: starts as the base
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    result = trainer.train()
    after = dict(trainer.model.named_parameters())
    base_moved = [n for n in before if not n.startswith(own) and not torch.equal(before[n], after[n])]
    assert base_moved == []
    assert not torch.equal(before["audio_adapter_blocks.0.to_q.weight"], after["audio_adapter_blocks.0.to_q.weight"])
    # the exported model carries the avatar modules and loads as an avatar checkpoint
    from hyvideo_core.apps.avatar import load_avatar_transformer

    loaded = load_avatar_transformer(Path(result.checkpoint) / "model.safetensors")
    assert torch.equal(loaded.state_dict()["audio_proj.proj1.weight"], after["audio_proj.proj1.weight"].detach())


def test_extras_reach_the_model(avatar_cache, tmp_path):
    """The loss depends on the audio windows: with them always dropped it differs from with them kept."""
    def first_loss(p):
        t = Trainer(cfg(avatar_cache, tmp_path / str(p), extra_dropout={"audio_windows": p}, steps=1))
        with torch.no_grad():     # make the adapters' output visible (to_out starts at zero, as released)
            for block in t.model.audio_adapter_blocks:
                block.to_out.weight.normal_(std=0.5)
        return t.train_step()
    assert first_loss(0.0) != first_loss(1.0)


def test_full_training_with_a_base_lr(avatar_cache, tmp_path, base_file):
    trainer = Trainer(cfg(avatar_cache, tmp_path, init=base_file, trainable="all", base_lr=1e-5, lr=1e-3))
    groups = trainer.opt.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-5]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert all(names[id(p)].startswith(("ref_in", "before_proj", "audio_", "motion_", "fps_proj")) for p in groups[0]["params"])
    assert any(names[id(p)].startswith("double_blocks.") for p in groups[1]["params"])


def test_drop_extras_is_seeded_and_per_name():
    extras = {"audio_windows": torch.ones(3), "face_mask": torch.ones(2)}
    assert torch.equal(drop_extras(extras, {"audio_windows": 1.0}, torch.Generator())["audio_windows"], torch.zeros(3))
    kept = drop_extras(extras, {"audio_windows": 0.0}, torch.Generator())
    assert torch.equal(kept["audio_windows"], torch.ones(3)) and kept["face_mask"] is extras["face_mask"]
    draws = [float(drop_extras(extras, {"audio_windows": 0.5}, torch.Generator().manual_seed(s))["audio_windows"][0])
             for s in range(40)]
    assert 0 < sum(draws) < 40                     # some kept, some dropped
    again = [float(drop_extras(extras, {"audio_windows": 0.5}, torch.Generator().manual_seed(s))["audio_windows"][0])
             for s in range(40)]
    assert draws == again
    with pytest.raises(InputError, match="carry the extras"):
        drop_extras(extras, {"motion": 0.1}, torch.Generator())


def test_exact_resume_of_an_extension_run(avatar_cache, tmp_path, base_file):
    kw = dict(init=base_file, trainable="all", base_lr=1e-4, caption_dropout=0.3, extra_dropout={"audio_windows": 0.3},
              steps=4)
    full = train(cfg(avatar_cache, tmp_path, output_dir=str(tmp_path / "a"), **kw))
    train(cfg(avatar_cache, tmp_path, output_dir=str(tmp_path / "b"), stop_after=2, **kw))
    resumed = train(cfg(avatar_cache, tmp_path, output_dir=str(tmp_path / "b"), **kw))
    assert resumed.losses == full.losses


@pytest.mark.parametrize("kw,match", [
    (dict(extension=None), "set the training option extension"),
    (dict(extension="avatar", variant="tiny"), "needs a variant that carries it"),
    (dict(extra_dropout={"audio_windows": 1.5}), "probability"),
    (dict(extension=None, trainable="extension"), "trainable 'extension'"),
    (dict(extension="pose"), "unknown extension"),
    (dict(trainable="some"), "trainable must be"),
], ids=["extras-without-extension", "not-an-avatar-variant", "dropout-out-of-range", "extension-only-without-one",
        "unknown-extension", "bad-trainable"])
def test_bad_extension_options(avatar_cache, tmp_path, kw, match):
    with pytest.raises(InputError, match=match):
        t = Trainer(cfg(avatar_cache, tmp_path, **kw))
        t.train_step()


def test_extension_without_extras_in_the_cache(tiny_cache, tmp_path):
    with pytest.raises(InputError, match="needs its extras in the cache"):
        Trainer(TrainConfig(cache_dir=tiny_cache, output_dir=str(tmp_path / "r"), variant="tiny-avatar",
                            extension="avatar", steps=1, global_batch=4, threads=1)).train_step()


def test_build_model_without_init_keeps_the_extension_modules(tmp_path):
    model = build_model(TrainConfig(cache_dir="x", output_dir="y", variant="tiny-avatar", extension="avatar"))
    assert hasattr(model, "audio_adapter_blocks") and hasattr(model, "ref_in")
