"""`python -m hyvideo_core convert` round trips between layouts without changing the model."""
import subprocess
import sys

import torch

from hyvideo_core import load_transformer
from hyvideo_core.checkpoints.io import open_weights
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.variants import VARIANTS
from tests.reference_models import dit_inputs, save


def _run(*args):
    return subprocess.run([sys.executable, "-m", "hyvideo_core", *args], capture_output=True, text=True, timeout=300)


def test_convert_official_to_diffusers_and_back(tmp_path):
    torch.manual_seed(0)
    sd = HunyuanVideoTransformer(VARIANTS["tiny"].transformer).state_dict()
    src = save(sd, str(tmp_path / "official.pt"))  # saved inside a DeepSpeed "module" wrapper
    out = _run("convert", src, str(tmp_path / "diffusers.safetensors"), "--layout", "diffusers")
    assert out.returncode == 0, out.stderr
    assert "x_embedder.proj.weight" in open_weights(tmp_path / "diffusers.safetensors").keys()
    out = _run("convert", str(tmp_path / "diffusers.safetensors"), str(tmp_path / "back.safetensors"))
    assert out.returncode == 0, out.stderr
    back = open_weights(tmp_path / "back.safetensors")
    assert sorted(back.keys()) == sorted(sd)
    assert all(torch.equal(back.get(k), v) for k, v in sd.items())
    a, b = load_transformer(src), load_transformer(tmp_path / "back.safetensors")
    inputs = dit_inputs(a.config)
    with torch.no_grad():
        torch.testing.assert_close(a(*inputs), b(*inputs), atol=0, rtol=0)


def test_info_and_clear_cli_errors(tmp_path):
    torch.manual_seed(0)
    sd = HunyuanVideoTransformer(VARIANTS["tiny"].transformer).state_dict()
    path = save({f"model.model.{k}": v for k, v in sd.items()}, str(tmp_path / "comfy.safetensors"))
    out = _run("info", path)
    assert out.returncode == 0 and '"variant": "tiny"' in out.stdout
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    out = _run("convert", str(tmp_path / "bad.safetensors"), str(tmp_path / "x.safetensors"))
    assert out.returncode == 2 and out.stderr.startswith("error:") and "Traceback" not in out.stderr
    assert not (tmp_path / "x.safetensors").exists()
