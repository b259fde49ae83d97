"""GGUF transformers in ComfyUI-GGUF's layout: torch dequantisation against gguf's numpy
reference for every supported type, exact float loads, quantised loads against their
dequantised reference, and clear errors."""
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize as np_dequantize, quantize as np_quantize

from hyvideo_core import load_transformer
from hyvideo_core.errors import CheckpointError, IncompatibleWeightsError, UnknownCheckpointError
from hyvideo_core.quant.gguf import (SUPPORTED_QUANT_TYPES, GGUFLinear, GGUFSource, UnsupportedQuantTypeError,
                                     dequantize, write_gguf)
from hyvideo_core.variants import VARIANTS
from tests.quant.helpers import Q32, Q256, random_kquant_blocks, random_state, register
from tests.reference_models import dit_inputs, official_state_dict, diffusers_transformer, save

K_QUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def _raw_blocks(qtype: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    if qtype in K_QUANTS:
        return random_kquant_blocks(qtype, rows * cols // 256, seed).reshape(rows, -1)
    data = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    return np_quantize(data, Q[qtype])


@pytest.mark.parametrize("qtype", SUPPORTED_QUANT_TYPES)
def test_torch_dequant_matches_gguf_numpy_reference(qtype):
    raw = _raw_blocks(qtype, 6, 512)
    expected = np_dequantize(raw, Q[qtype])
    got = dequantize(torch.from_numpy(raw), qtype, (6, 512))
    assert got.dtype == torch.float32 and got.shape == (6, 512)
    torch.testing.assert_close(got, torch.from_numpy(expected.reshape(6, 512)), rtol=1e-6, atol=0)
    assert dequantize(torch.from_numpy(raw), qtype, (6, 512), torch.bfloat16).dtype == torch.bfloat16


def _forward(model, cfg):
    with torch.no_grad():
        return model(*dit_inputs(cfg))


@pytest.mark.parametrize("float_type", ["BF16", "F16"])
def test_float_gguf_loads_exactly_like_safetensors(tmp_path, float_type):
    cfg = VARIANTS["tiny"].transformer
    dtype = {"BF16": torch.bfloat16, "F16": torch.float16}[float_type]
    state = {k: v.to(dtype) for k, v in official_state_dict(diffusers_transformer(cfg)).items()}
    st = load_transformer(save(state, str(tmp_path / "m.safetensors")))
    gg = load_transformer(write_gguf(state, tmp_path / "m.gguf", qtype=float_type, float_type=float_type))
    assert gg.variant == "tiny"
    assert gg.img_in.proj.weight.shape == st.img_in.proj.weight.shape  # 5-D restored from orig_shape
    for (k, a), b in zip(st.state_dict().items(), gg.state_dict().values()):
        assert torch.equal(a.float(), b.float()), k
    assert torch.equal(_forward(st, cfg), _forward(gg, cfg))


def _dequantized_reference(path):
    """Every tensor of a GGUF file dequantised with gguf's numpy reference."""
    src = GGUFSource(str(path))
    out = {}
    for key in src.keys():
        e = src._entries[key]
        arr = np_dequantize(np.asarray(e.tensor.data), Q[e.qtype]) if src.is_quantized(key) else \
            src.get(key).float().numpy()
        out[key] = torch.from_numpy(np.array(arr, dtype=np.float32).reshape(e.shape))
    return out


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_1"])
def test_quantized_gguf_stays_packed_and_matches_dequantized_reference(tmp_path, monkeypatch, qtype):
    name = register(monkeypatch, "gguf-q32", Q32)
    state = random_state(Q32)
    path = write_gguf({f"model.diffusion_model.{k}": v for k, v in state.items()}, tmp_path / "q.gguf", qtype=qtype)
    model = load_transformer(path)
    assert model.variant == name
    layer = model.double_blocks[0].img_attn_qkv
    assert isinstance(layer, GGUFLinear) and layer.quant_type == qtype and layer.weight.dtype == torch.uint8
    assert layer.weight.numel() < 0.6 * 2 * layer.in_features * layer.out_features  # < 0.6x bf16 bytes
    packed = [m for m in model.modules() if isinstance(m, GGUFLinear)]
    assert len(packed) >= 10
    reference = load_transformer(save(_dequantized_reference(path), str(tmp_path / "ref.safetensors")))
    got, expected = _forward(model, Q32), _forward(reference, Q32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # and the quantisation error against the original weights is small but nonzero
    original = load_transformer(save(state, str(tmp_path / "orig.safetensors")))
    err = (got - _forward(original, Q32)).abs().max() / _forward(original, Q32).abs().max()
    assert 0 < err < {"Q8_0": 0.02, "Q4_0": 0.3, "Q5_1": 0.15}[qtype]


def test_quantized_weights_stay_packed_behind_a_renaming_view(tmp_path, monkeypatch):
    """A prefix the GGUF reader does not strip ("transformer.") is stripped by the loader's renaming
    view, which must pass the packed tensors through under the new names."""
    from hyvideo_core.checkpoints.layouts import RenamedView

    register(monkeypatch, "gguf-q32", Q32)
    path = write_gguf({f"transformer.{k}": v for k, v in random_state(Q32).items()}, tmp_path / "p.gguf",
                      qtype="Q8_0")
    view = RenamedView.without_prefix(GGUFSource(path), "transformer.")
    packed = view.packed_tensors()
    assert "double_blocks.0.img_attn_qkv.weight" in packed and not any(k.startswith("transformer.") for k in packed)
    assert isinstance(load_transformer(path).double_blocks[0].img_attn_qkv, GGUFLinear)


@pytest.mark.parametrize("qtype", ["Q4_K", "Q6_K", "Q5_K"])
def test_kquant_model_matches_dequantized_reference(tmp_path, monkeypatch, qtype):
    register(monkeypatch, "gguf-q256", Q256)
    state = random_state(Q256)
    raw = {k: random_kquant_blocks(qtype, v.numel() // 256, seed=i).reshape(v.shape[0], -1)
           for i, (k, v) in enumerate(state.items())
           if v.dim() == 2 and v.shape[-1] % 256 == 0 and "blocks" in k}
    path = write_gguf(state, tmp_path / "k.gguf", qtype=qtype, raw_blocks=raw)
    model = load_transformer(path)
    assert model.single_blocks[0].linear1.quant_type == qtype
    reference = load_transformer(save(_dequantized_reference(path), str(tmp_path / "ref.safetensors")))
    torch.testing.assert_close(_forward(model, Q256), _forward(reference, Q256), atol=1e-5, rtol=1e-5)


def test_gguf_linear_dequantizes_in_input_dtype(tmp_path, monkeypatch):
    register(monkeypatch, "gguf-q32", Q32)
    model = load_transformer(write_gguf(random_state(Q32), tmp_path / "q.gguf", qtype="Q8_0"))
    layer = model.single_blocks[0].linear2
    x = torch.randn(3, layer.in_features)
    w = layer.dequantized_weight(torch.float32)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, w, layer.bias))
    assert layer(x.bfloat16()).dtype == torch.bfloat16


def test_wrong_architecture_is_refused(tmp_path):
    state = official_state_dict(diffusers_transformer(VARIANTS["tiny"].transformer))
    path = write_gguf(state, tmp_path / "flux.gguf", qtype="F16", float_type="F16", arch="flux")
    with pytest.raises(UnknownCheckpointError, match="'flux'.*expected 'hyvid'"):
        load_transformer(path)


def test_unsupported_quant_type_names_type_and_supported_list(tmp_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), "hyvid")
    w.add_tensor("double_blocks.0.img_attn_qkv.weight", np.zeros((4, 18), dtype=np.uint8), raw_dtype=Q.IQ4_NL)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(UnsupportedQuantTypeError, match=r"IQ4_NL.*Supported: .*Q8_0.*Q4_K"):
        load_transformer(tmp_path / "iq.gguf")


def test_bad_orig_shape_metadata_and_mismatched_shapes(tmp_path, monkeypatch):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "bad.gguf"), "hyvid")
    w.add_tensor("img_in.proj.weight", np.zeros((48, 16), dtype=np.float32))
    w.add_array("comfy.gguf.orig_shape.img_in.proj.weight", [48, 4, 1, 2, 3])
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(CheckpointError, match="element counts differ"):
        GGUFSource(str(tmp_path / "bad.gguf"))

    register(monkeypatch, "gguf-q32", Q32)
    state = random_state(Q32)
    state["single_blocks.1.linear2.weight"] = state["single_blocks.1.linear2.weight"][:, :256]
    with pytest.raises(IncompatibleWeightsError, match="wrong shape"):
        load_transformer(write_gguf(state, tmp_path / "short.gguf", qtype="Q8_0"))


def test_source_reports_logical_shapes_and_types(tmp_path, monkeypatch):
    state = random_state(Q32)
    src = GGUFSource(write_gguf(state, tmp_path / "q.gguf", qtype="Q8_0"))
    assert src.shape("img_in.proj.weight") == (64, 4, 1, 2, 2)
    assert src.qtype("double_blocks.0.img_mlp.fc1.weight") == "Q8_0"
    assert src.qtype("double_blocks.0.img_attn_q_norm.weight") == "F32"
    assert src.shape("double_blocks.0.img_mlp.fc1.weight") == (256, 64)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K"])
def test_cpu_forward_dequantizes_row_blocks_with_the_same_result(tmp_path, monkeypatch, qtype):
    """On the CPU a large layer is dequantised a few rows at a time (bounded peak memory)."""
    from hyvideo_core.quant.gguf import layers

    cfg = Q32 if qtype == "Q8_0" else Q256
    register(monkeypatch, "gguf-chunks", cfg)
    state = random_state(cfg)
    raw = ({k: random_kquant_blocks(qtype, v.numel() // 256, seed=i).reshape(v.shape[0], -1)
            for i, (k, v) in enumerate(state.items()) if v.dim() == 2 and v.shape[-1] % 256 == 0 and "blocks" in k}
           if qtype == "Q4_K" else None)
    model = load_transformer(write_gguf(state, tmp_path / "q.gguf", qtype=qtype, raw_blocks=raw))
    layer = model.single_blocks[0].linear1
    x = torch.randn(2, 5, layer.in_features)
    whole = torch.nn.functional.linear(x, layer.dequantized_weight(torch.float32), layer.bias)
    monkeypatch.setattr(layers, "CPU_DEQUANT_ELEMENTS", 3 * layer.in_features)   # 3 rows per block
    assert layer._rows_per_chunk(x.device) == 3
    torch.testing.assert_close(layer(x), whole, atol=1e-5, rtol=1e-5)
