"""accelerate FSDP (the shipped accelerate_configs/fsdp.yaml, FSDP2) on 2 real CPU processes over gloo,
against one process: the same 10-step loss trajectory, really sharded parameters, and checkpoints in the
single-process format (full tensors), so runs move between one process and FSDP in both directions."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from hyvideo_core.finetune.checkpoint import STATE_FILE, load_training_state

from hyvideo_core.finetune.trainer import train

ROOT = Path(__file__).resolve().parents[2]
FSDP_CONFIG = ROOT / "hyvideo_core" / "finetune" / "accelerate_configs" / "fsdp.yaml"
STEPS = 10


def _launch_fsdp(cfg, tmp_path, **overrides):
    """``accelerate launch --config_file fsdp.yaml --num_processes 2`` of the trainer CLI (the file's
    own settings otherwise: FSDP2, full shard per double/single block, full state dicts)."""
    path = tmp_path / "fsdp_cfg.json"
    path.write_text(json.dumps(dict(cfg.__dict__, **overrides)))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
           "--num_processes", "2", "--main_process_port", "0",
           "-m", "hyvideo_core.finetune", "train", "--config", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]


def _records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def _state(run_dir):
    root = Path(run_dir) / "checkpoints"
    folder = root / (root / "latest").read_text()
    return folder, load_training_state(folder / STATE_FILE)


def test_fsdp_two_processes_match_one_full_finetune(train_cfg, tmp_path):
    """Full fine-tuning with the trainer's gradient checkpointing, as the 13B recipe runs it."""
    one = train(train_cfg(output_dir=str(tmp_path / "one"), steps=STEPS, gradient_checkpointing=True))
    cfg = train_cfg(output_dir=str(tmp_path / "two"), steps=STEPS, gradient_checkpointing=True)
    _launch_fsdp(cfg, tmp_path)
    records = _records(tmp_path / "two")
    # sharded for real: each process holds half of the parameters (DDP would hold all of them)
    assert [(r["processes"], r["sharded"]) for r in records] == [(2, True)] * STEPS
    assert abs(records[0]["param_share"] - 0.5) < 0.01, records[0]
    two = np.array([r["loss"] for r in records])
    assert np.abs(two - np.array(one.losses)).max() <= 1e-5, (two, one.losses)

    # the FSDP checkpoint holds full tensors in the single-process layout
    folder_one, a = _state(tmp_path / "one")
    folder_two, b = _state(tmp_path / "two")
    assert a["trainable"].keys() == b["trainable"].keys()
    assert all(b["trainable"][k].shape == a["trainable"][k].shape and
               torch.allclose(b["trainable"][k], a["trainable"][k], atol=1e-4) for k in a["trainable"])
    assert b["optimizer"]["param_groups"] == a["optimizer"]["param_groups"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    exported_one, exported_two = (load_file(str(f / "model.safetensors")) for f in (folder_one, folder_two))
    assert exported_one.keys() == exported_two.keys()
    assert all(torch.allclose(exported_one[k], exported_two[k], atol=1e-4) for k in exported_one)


def test_fsdp_lora_resumes_a_single_process_checkpoint(train_cfg, tmp_path):
    """LoRA (frozen base, trainable adapters inside the same shard units): one process trains to step 5,
    FSDP on 2 processes resumes its checkpoint (full tensors scattered into shards) and finishes; the
    10-step trajectory and the exported LoRA equal the uninterrupted single-process run."""
    lora = dict(mode="lora", lora_rank=4, lr=2e-2)
    one = train(train_cfg(output_dir=str(tmp_path / "one"), steps=STEPS, **lora))
    train(train_cfg(output_dir=str(tmp_path / "fsdp"), steps=STEPS, stop_after=5, **lora))
    _launch_fsdp(train_cfg(output_dir=str(tmp_path / "fsdp"), steps=STEPS, **lora), tmp_path)
    records = _records(tmp_path / "fsdp")
    assert [(r["step"], r["sharded"]) for r in records] == [(s, s > 5) for s in range(1, STEPS + 1)]
    folder, resumed = _state(tmp_path / "fsdp")
    assert len(resumed["losses"]) == STEPS
    assert np.abs(np.array(resumed["losses"]) - np.array(one.losses)).max() <= 1e-5, (resumed["losses"], one.losses)
    a = load_file(str(Path(one.checkpoint) / "lora.safetensors"))
    b = load_file(str(folder / "lora.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
