"""Files that are junk, damaged, malicious or point elsewhere: a clear error of the right class,
and nothing in them runs."""
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.robustness, pytest.mark.filterwarnings("ignore:Detected pickle protocol")]


class _Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# -- transformer weights ------------------------------------------------------------------------------------------


def _good_pt(path):
    torch.save({"w": torch.zeros(3)}, path)
    return path.read_bytes()


JUNK_PT = {
    "random-bytes": lambda p: os.urandom(4096),
    "text": lambda p: b"this is a README, not weights\n" * 20,
    "empty": lambda p: b"",
    "truncated-zip": lambda p: _good_pt(p)[:300],
    "zip-without-pickle": lambda p: _good_pt(p).replace(b"data.pkl", b"data.pkx"),
    "plain-pickle-not-torch": lambda p: pickle.dumps([1, 2, 3]),
}


@pytest.mark.parametrize("kind", sorted(JUNK_PT))
def test_junk_pt_is_reported_as_corrupt_not_as_unsafe(tmp_path, kind):
    from hyvideo_core import load_transformer
    from hyvideo_core.errors import CheckpointError, UnsafeCheckpointError

    path = tmp_path / "model.pt"
    path.write_bytes(JUNK_PT[kind](path))
    with pytest.raises(CheckpointError) as info:
        load_transformer(path)
    assert not isinstance(info.value, UnsafeCheckpointError), info.value
    assert "corrupt or truncated" in str(info.value) and "convert" not in str(info.value)


def _zip_payload(path, marker):
    torch.save({"module": {"img_in.proj.weight": torch.zeros(1)}, "extra": _Payload(marker)}, path)


def _legacy_payload(path, marker):
    path.write_bytes(pickle.dumps({"w": _Payload(marker)}))


@pytest.mark.parametrize("make", [_zip_payload, _legacy_payload], ids=["torch-zip", "raw-pickle"])
def test_pt_that_needs_code_is_refused_and_nothing_runs(tmp_path, make):
    from hyvideo_core import load_transformer
    from hyvideo_core.errors import UnsafeCheckpointError

    marker = tmp_path / "payload-ran"
    make(tmp_path / "evil.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"arbitrary code execution .*pathlib"):
        load_transformer(tmp_path / "evil.pt")
    assert not marker.exists()


def _tiny_state():
    from hyvideo_core import get_variant
    from hyvideo_core.model import HunyuanVideoTransformer

    return {k: v.detach().clone() for k, v in HunyuanVideoTransformer(get_variant("tiny").transformer).state_dict().items()}


MALFORMED = {
    "empty-input-projection": lambda s: s.update({"img_in.proj.weight": torch.zeros(0, 4, 1, 2, 2)}),
    "flat-input-projection": lambda s: s.update({"img_in.proj.weight": torch.zeros(5)}),
    "scalar-final-layer": lambda s: s.update({"final_layer.linear.weight": torch.tensor(1.0)}),
    "empty-text-projection": lambda s: s.update({"txt_in.input_embedder.weight": torch.zeros(48, 0)}),
    "no-attention-norms": lambda s: [s.pop(k) for k in [k for k in s if "q_norm" in k]],
}


@pytest.mark.parametrize("damage", sorted(MALFORMED))
def test_malformed_tensor_shapes(tmp_path, damage):
    from safetensors.torch import save_file

    from hyvideo_core import load_transformer
    from hyvideo_core.errors import UnknownCheckpointError

    state = _tiny_state()
    MALFORMED[damage](state)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(UnknownCheckpointError, match="re-download or re-export"):
        load_transformer(tmp_path / "model.safetensors")


# -- training checkpoints -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder with one committed checkpoint (step 1) and the cache it was trained on."""
    from hyvideo_core.finetune.data import cache_dataset
    from hyvideo_core.toy.clip_source import toy_clips
    from hyvideo_core.finetune.trainer import train
    from hyvideo_core.vae import CausalVideoVAE
    from hyvideo_core.variants import get_variant
    from tests.robustness.faults.kill_harness import fake_text, train_config

    base = tmp_path_factory.mktemp("trained")
    cache = str(base / "cache")
    cache_dataset(cache, toy_clips(2, seed=3, geometries=[(5, 32, 32)]), CausalVideoVAE(get_variant("tiny").vae),
                  fake_text, [(5, 32, 32)])
    train(train_config(cache, str(base / "run"), steps=1, ema_decay=0.0, mode="lora", lora_rank=2))
    return base, cache


@pytest.fixture
def run_copy(trained_run, tmp_path):
    base, cache = trained_run
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    return run, cache


def _resume(run, cache):
    from hyvideo_core.finetune.trainer import Trainer
    from tests.robustness.faults.kill_harness import train_config

    return Trainer(train_config(cache, str(run), steps=2, ema_decay=0.0, mode="lora", lora_rank=2))


def test_pickled_training_state_is_never_unpickled(run_copy, tmp_path):
    """A run folder whose checkpoint holds a state.pt (earlier versions, or planted): refused with a
    clear error; the pickle's code does not run."""
    from hyvideo_core.errors import CheckpointError

    run, cache = run_copy
    marker = tmp_path / "payload-ran"
    step = run / "checkpoints" / "step_0000001"
    (step / "training_state.safetensors").unlink()
    torch.save({"step": 1, "payload": _Payload(marker)}, step / "state.pt")
    with pytest.raises(CheckpointError, match="unpickling can run code"):
        _resume(run, cache)
    assert not marker.exists()


DAMAGED_STATE = {
    "truncated": lambda data: data[: len(data) // 2],
    "random-bytes": lambda data: os.urandom(len(data)),
    "other-safetensors": None,        # a valid safetensors file that is not a training state
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_STATE))
def test_damaged_training_state(run_copy, damage):
    from safetensors.torch import save_file

    from hyvideo_core.errors import CheckpointError

    run, cache = run_copy
    state = run / "checkpoints" / "step_0000001" / "training_state.safetensors"
    if DAMAGED_STATE[damage] is None:
        save_file({"w": torch.zeros(2)}, str(state))
    else:
        state.write_bytes(DAMAGED_STATE[damage](state.read_bytes()))
    with pytest.raises(CheckpointError, match="training state"):
        _resume(run, cache)


def _outside_checkpoint(run, tmp_path, marker):
    """A complete-looking checkpoint outside the run folder, with a code-running state.pt as well."""
    outside = tmp_path / "outside"
    shutil.copytree(run / "checkpoints" / "step_0000001", outside)
    torch.save({"payload": _Payload(marker)}, outside / "state.pt")
    return outside


POINTERS = {
    "parent-folders": lambda run, outside: os.path.relpath(outside, run / "checkpoints"),
    "absolute-path": lambda run, outside: str(outside),
    "through-a-checkpoint": lambda run, outside: "step_0000001/" + os.path.relpath(outside, run / "checkpoints" / "step_0000001"),
    "symlinked-folder": None,
    "missing-folder": lambda run, outside: "step_0000009",
    "empty": lambda run, outside: "",
}


@pytest.mark.parametrize("pointer", sorted(POINTERS))
def test_latest_pointer_never_leads_out_of_the_run(run_copy, tmp_path, pointer):
    from hyvideo_core.errors import CheckpointError

    run, cache = run_copy
    marker = tmp_path / "payload-ran"
    outside = _outside_checkpoint(run, tmp_path, marker)
    root = run / "checkpoints"
    if POINTERS[pointer] is None:
        (root / "step_0000005").symlink_to(outside, target_is_directory=True)
        (root / "latest").write_text("step_0000005")
    else:
        (root / "latest").write_text(POINTERS[pointer](run, outside))
    with pytest.raises(CheckpointError, match="latest") as info:
        _resume(run, cache)
    assert "write the name" in str(info.value).lower() or "resume=" in str(info.value)
    assert not marker.exists()


# -- videos ---------------------------------------------------------------------------------------------------------


def _video_bytes():
    import numpy as np

    from hyvideo_core.video_io import write_mp4

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        write_mp4(np.zeros((9, 32, 32, 3), np.uint8), os.path.join(d, "v.mp4"))
        return Path(d, "v.mp4").read_bytes()


BAD_VIDEOS = {
    "random-bytes": lambda: os.urandom(5000),
    "empty": lambda: b"",
    "truncated": lambda: _video_bytes()[:200],
}


@pytest.mark.parametrize("kind", sorted(BAD_VIDEOS))
def test_bad_video_files(tmp_path, kind):
    from hyvideo_core.errors import InputError
    from hyvideo_core.video_io import load_frames, read_metadata

    path = tmp_path / "clip.mp4"
    path.write_bytes(BAD_VIDEOS[kind]())
    with pytest.raises(InputError, match="could not read|no frames"):
        load_frames(path)
    if kind != "truncated":       # a cut file may keep its header, and with it its metadata
        with pytest.raises(InputError, match="could not read"):
            read_metadata(path)
