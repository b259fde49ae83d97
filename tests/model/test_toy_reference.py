"""The shipped toy model gives bit-identical outputs to those recorded in ``toy_reference.safetensors``
(T2V with embedded guidance, true CFG, I2V token replacement, TeaCache, First-Block-Cache)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from toy_reference import FIXTURE, toy_outputs  # noqa: E402


@pytest.fixture(scope="module")
def outputs():
    return toy_outputs()


@pytest.mark.parametrize("name", sorted(load_file(str(FIXTURE))))
def test_toy_outputs_bit_identical(outputs, name):
    expected = load_file(str(FIXTURE))[name]
    got = outputs[name]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected), f"{name}: max abs diff {(got - expected).abs().max():.3e}"
