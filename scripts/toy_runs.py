"""What every stage of scripts/train_toy.py and scripts/train_toy_avatar.py shares: the shipped weights folder,
the seed, the per-stage JSON log and a fine-tuning-engine run."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WEIGHTS = ROOT / "hyvideo_core" / "toy" / "weights"
SEED = 20250101


def log(work: Path, name: str, record: dict) -> None:
    record = dict(record, time=round(time.time(), 1))
    print(json.dumps(record), flush=True)
    with open(work / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def train_run(work: Path, name: str, threads: int = 1, cache: str = "cache", **kw):
    """A fine-tuning-engine run on ``work/cache`` into ``work/name``; ``kw`` are TrainConfig fields."""
    from hyvideo_core.finetune.trainer import TrainConfig, train

    cfg = TrainConfig(**{"cache_dir": str(work / cache), "output_dir": str(work / name), "seed": SEED, "log_every": 50,
                         "save_every": 250, "keep_checkpoints": 1, "threads": threads, **kw})
    r = train(cfg)
    log(work, name, {"step": r.step, "loss_first50": float(np.mean(r.losses[:50])),
                     "loss_last50": float(np.mean(r.losses[-50:])), "checkpoint": r.checkpoint})
    return r
