"""The shipped toy avatar: its files load (toy Whisper through the product's loader, the avatar weights on the
teacher backbone), the toy weights stay within their 30 MB budget, and the trained adapter keeps its lip sync.

The regression floor runs the yardstick (hyvideo_core/toy/avatar_eval.py) on 6 held-out pairs, real and
shuffled sound only; the full measurement is bench/toy_avatar.md (`python -m hyvideo_core.toy avatar`)."""
import pytest
import torch

from hyvideo_core.toy.model import WEIGHTS

BUDGET_BYTES = 30 * 1000 * 1000


def test_toy_weights_fit_the_size_budget():
    total = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())
    assert total <= BUDGET_BYTES, f"{total / 1e6:.1f} MB of toy weights, budget 30 MB"


def test_toy_whisper_loads_with_the_product_loader():
    from hyvideo_core.apps.avatar import audio_windows, encode_whisper, load_whisper
    from hyvideo_core.toy.avatar import toy_whisper_folder
    from hyvideo_core.toy.talking import TRAIN_SEED, talking_clip
    from hyvideo_core.variants import get_variant

    folder = toy_whisper_folder()
    assert {"config.json", "preprocessor_config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    whisper = load_whisper(folder)
    avatar = get_variant("toy-avatar").app.config
    assert (whisper.layers, whisper.dim) == (avatar.whisper_layers, avatar.whisper_dim)
    clip = talking_clip(TRAIN_SEED, 0)
    windows = audio_windows(encode_whisper(whisper, clip.audio), 17)
    assert windows.shape == (1, 17, avatar.audio_window, avatar.whisper_layers, avatar.whisper_dim)
    long = encode_whisper(whisper, torch.zeros(16000 * 31))      # past one 30 s chunk
    assert long.shape[0] == 3000


def test_load_toy_avatar_installs_the_trained_extension():
    from hyvideo_core.apps.avatar import AvatarExtension
    from hyvideo_core.model.extension import find_extension
    from hyvideo_core.toy.avatar import load_toy_avatar

    model = load_toy_avatar()
    ext = find_extension(model, AvatarExtension)
    assert ext is not None and model.variant == "toy-avatar"
    assert ext.avatar.window_latents == 5 and ext.avatar.adapter_after == (0, 1)
    # trained: the adapters' output layers left their zero start
    assert all(float(b.to_out.weight.abs().max()) > 0 for b in model.audio_adapter_blocks)


def test_load_toy_avatar_names_missing_files(tmp_path):
    from hyvideo_core.errors import InputError
    from hyvideo_core.toy.avatar import load_toy_avatar, toy_whisper_folder

    with pytest.raises(InputError, match="toy avatar weights missing"):
        load_toy_avatar(tmp_path)
    with pytest.raises(InputError, match="toy Whisper folder"):
        toy_whisper_folder(tmp_path)


def test_shipped_toy_avatar_keeps_its_lip_sync():
    """Regression floor on 4 held-out pairs (the engine's plain CFG sampler with extras): the shape's size follows
    the real sound well above the shuffled-sound baseline, in time, and stays the reference's shape and colour.
    bench/toy_avatar.md has the 50-pair measurement."""
    from hyvideo_core.toy import avatar_eval

    kit = avatar_eval.load_kit()
    result = avatar_eval.evaluate_avatar(kit, pairs=4, conditions=("real", "shuffled"), sampler="plain")
    real, shuffled = result["summaries"]["real"], result["summaries"]["shuffled"]
    assert real.sync_mean >= 0.5, real
    assert real.sync_mean - shuffled.sync_mean >= 0.3, (real, shuffled)
    assert real.offset_within_1 >= 0.75, real
    assert real.identity >= 0.5, real
    assert real.still_outside < real.still_inside, real
