"""The image-to-video API is exported from hyvideo_core like the rest of the README's API, lazily."""
import subprocess
import sys
from pathlib import Path

import pytest

import hyvideo_core

I2V_API = {"image_to_video": "hyvideo_core.apps.i2v", "I2VRequest": "hyvideo_core.apps.i2v",
           "encode_image_prompt": "hyvideo_core.text_encoders.llava_image",
           "load_image_encoder": "hyvideo_core.text_encoders.llava_image"}


@pytest.mark.parametrize("name", sorted(I2V_API))
def test_exported_from_the_package(name):
    import importlib

    assert name in hyvideo_core.__all__
    assert getattr(hyvideo_core, name) is getattr(importlib.import_module(I2V_API[name]), name)


def test_import_stays_lazy():
    """`import hyvideo_core` does not load the image-to-video modules until a name is used."""
    code = ("import sys, hyvideo_core; mods = set(I2V.values());"
            "assert not mods & set(sys.modules), mods & set(sys.modules);"
            "from hyvideo_core import image_to_video, load_image_encoder;"
            "assert mods <= set(sys.modules)")
    out = subprocess.run([sys.executable, "-c", f"I2V = {I2V_API!r}\n{code}"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
