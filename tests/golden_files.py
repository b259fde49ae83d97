"""Golden fixtures recorded from official code (tests/*/make_*_fixture.py): a safetensors file of inputs, weights and
outputs whose metadata names the official commit."""
from safetensors import safe_open


def read_fixture(path):
    """(tensors by key, metadata) of the fixture file at ``path``."""
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
