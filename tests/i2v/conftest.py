import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_llava  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llava_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava")
    tk = tiny_llava.llama_tokenizer_with_image()
    model = tiny_llava.build_llava(tk)
    return dict(llava=tiny_llava.write_llava_folder(model, tk, root / "text_encoder_i2v"),
                clip=tiny_llava.write_clip_folder(root / "text_encoder_2"), model=model, tokenizer=tk)


@pytest.fixture(scope="session")
def llava_encoders(tiny_llava_files):
    from hyvideo_core.text_encoders import load_text_encoders

    return load_text_encoders(tiny_llava_files["llava"], tiny_llava_files["clip"])
