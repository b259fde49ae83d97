import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_text_models import write_all_formats  # noqa: E402


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """Every supported text-encoder format of one tiny Llama + CLIP pair."""
    return write_all_formats(tmp_path_factory.mktemp("text_encoders"))


@pytest.fixture(scope="session")
def hf_encoders(tiny_files):
    from hyvideo_core.text_encoders import load_text_encoders

    return load_text_encoders(tiny_files["llm_hf"], tiny_files["clip_hf"])


@pytest.fixture(scope="session")
def reference_llama(tiny_files):
    from transformers import LlamaModel

    return LlamaModel.from_pretrained(str(tiny_files["llm_hf"])).eval()


@pytest.fixture(scope="session")
def reference_clip(tiny_files):
    from transformers import CLIPTextModel

    return CLIPTextModel.from_pretrained(str(tiny_files["clip_hf"])).eval()
