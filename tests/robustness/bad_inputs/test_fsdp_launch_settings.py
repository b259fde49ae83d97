"""Launch settings the trainer cannot honour are refused up front with a one-line error, before any data
is read or anything is written. The process is started with the variables ``accelerate launch`` exports
from an FSDP (or DeepSpeed) config: one CPU process that accelerate sees as a distributed launch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.robustness

ROOT = Path(__file__).resolve().parents[3]

FSDP_LAUNCH = dict(ACCELERATE_USE_FSDP="true", FSDP_VERSION="2", FSDP_AUTO_WRAP_POLICY="TRANSFORMER_BASED_WRAP",
                   FSDP_TRANSFORMER_CLS_TO_WRAP="DoubleStreamBlock,SingleStreamBlock", RANK="0", LOCAL_RANK="0",
                   WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="0")


@pytest.mark.parametrize("options, env, message", [
    (dict(ema_decay=0.9), {}, "ema_decay is not supported with FSDP"),
    ({}, dict(FSDP_VERSION="1"), "needs fsdp_version: 2"),
    ({}, dict(ACCELERATE_USE_FSDP="false", ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_ZERO_STAGE="2"),
     "DeepSpeed is not supported by this trainer"),
], ids=["ema-with-fsdp", "fsdp1-on-cpu", "deepspeed-launch"])
def test_refused_before_anything_is_written(tmp_path, options, env, message):
    config = dict(cache_dir=str(tmp_path / "cache"), output_dir=str(tmp_path / "run"), variant="tiny", steps=1,
                  global_batch=2, threads=1, **options)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(config))
    launch_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    launch_env.update(FSDP_LAUNCH)
    launch_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "hyvideo_core.finetune", "train", "--config", str(path)],
                          env=launch_env, capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()
