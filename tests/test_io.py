"""Models as the TFLite converter exports them by default: batch -1, float32 (or uint8) input and output with
QUANTIZE/DEQUANTIZE around an int8 core. The C's entry point on the model's own types must equal TFLite Micro
bit for bit (float outputs compared as bit patterns)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lwcnn_mcu import compiler, hostrun, reference, verify
from lwcnn_mcu.errors import LwcnnError
from tests.conftest import randomize
from tests.fuzzgen import export_tflite


def _image_model(keras):  # noqa: ANN001, ANN202
    L = keras.layers
    inp = keras.Input((12, 10, 2))
    x = L.Conv2D(6, 3, strides=2, activation="relu")(inp)
    x = L.Flatten()(x)  # batch -1: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE, folded by the frontend
    return keras.Model(inp, L.Dense(7, activation="softmax")(x))


def _features_model(keras):  # noqa: ANN001, ANN202
    L = keras.layers
    inp = keras.Input((24,))
    x = L.Dense(16, activation="relu")(inp)
    return keras.Model(inp, L.Dense(24)(x))  # a float regression output (an autoencoder's shape)


MODELS = {"image": _image_model, "features": _features_model}


@pytest.fixture(scope="module")
def exports(keras, tmp_path_factory):  # noqa: ANN001, ANN201
    out = {}
    d = tmp_path_factory.mktemp("io")
    for name, build in MODELS.items():
        m = build(keras)
        randomize(m, seed=3)
        calib = np.random.default_rng(0).normal(0, 1, (32,) + tuple(m.inputs[0].shape[1:])).astype(np.float32)
        for kind in ("float", "uint8", "int8"):
            path = d / f"{name}_{kind}.tflite"
            path.write_bytes(export_tflite(m, kind, calib))
            out[name, kind] = path
    return out


def _inputs(c, n: int) -> np.ndarray:  # noqa: ANN001
    x = verify.model_inputs(c.graph, verify.TestData(None, None, "random"), n)
    if x.dtype == np.float32:  # values exactly halfway between two codes: the rounding is visible
        half = (np.random.default_rng(5).integers(-140, 140, x[:8].shape) + 0.5) * np.float32(c.graph.input.scale)
        x[:8] = half.astype(np.float32)
    return x


@pytest.mark.parametrize("kind", ["float", "uint8", "int8"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_converter_export_bitexact(exports, name, kind):  # noqa: ANN001
    c = compiler.compile_model(str(exports[name, kind]))
    want = {"float": "float32", "uint8": "uint8", "int8": "int8"}[kind]
    assert c.graph.io_dtypes == (want, want)
    assert c.report["io"] == {"input": want, "output": want}
    assert not any(op.opcode in ("SHAPE", "STRIDED_SLICE", "PACK") for op in c.graph.ops)
    x = _inputs(c, 64)
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    assert expect.dtype == np.dtype(want)
    for flags in ({}, {"simd": True}, {"sanitize": True, "opt": "-O1"}):
        got = hostrun.build_host(c.gen.files, io=True, **flags).run(x)
        assert got.dtype == expect.dtype and got.shape == expect.shape
        assert np.array_equal(got.view(np.uint8), expect.view(np.uint8)), f"{name} {kind} {flags}"
    # the int8 entry point is the core: fed the core's input, it gives the codes the edge converts
    core = hostrun.build_host(c.gen.files).run(verify.core_input(c.graph, x))
    if c.graph.edge_out is not None and "table" not in c.graph.edge_out.lowered:
        lw = c.graph.edge_out.lowered
        deq = ((core.astype(np.int32) - lw["zero_point"]).astype(np.float32) * np.float32(lw["scale"]))
        assert np.array_equal(deq.view(np.uint8), expect.view(np.uint8))
    # the header documents the new entry point, and it links with the int8 one
    if kind != "int8":
        header = c.gen.files[c.gen.header]
        suffix = "float" if kind == "float" else "u8"
        assert f"_invoke_{suffix}(const {'float' if kind == 'float' else 'uint8_t'} *input" in header


def test_verify_cli_float_model(exports, tmp_path):  # noqa: ANN001
    r = subprocess.run([sys.executable, "-m", "lwcnn_mcu", "verify", str(exports["image", "float"]), "--samples",
                        "50", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["io"] == {"input": "float32", "output": "float32"}
    assert d["c_vs_tflm_bitexact"] == d["samples"] == 50


@pytest.mark.parametrize("kind", ["none", "dynamic"])
def test_float_and_hybrid_models_refused(keras, tmp_path, kind):  # noqa: ANN001
    m = _image_model(keras)
    calib = np.zeros((4, 12, 10, 2), np.float32)
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(export_tflite(m, kind, calib))
    with pytest.raises(LwcnnError) as e:
        compiler.compile_model(str(path))
    msg = str(e.value)
    assert "compute in float" in msg and "CONV_2D" in msg and "representative_dataset" in msg


def test_dilated_conv_of_a_batch_minus_one_export_refused(keras, tmp_path):  # noqa: ANN001
    """With a dynamic batch the converter writes a dilated convolution as SPACE_TO_BATCH_ND -> CONV_2D ->
    BATCH_TO_SPACE_ND whose static shapes are wrong for batch 1: TFLite Micro then differs from LiteRT. Refused,
    with the way out (a fixed batch of 1, or the .keras model)."""
    m = keras.Sequential([keras.Input((11, 9, 3)), keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same")])
    randomize(m, seed=1)
    calib = np.random.default_rng(0).normal(0, 1, (16, 11, 9, 3)).astype(np.float32)
    buf = export_tflite(m, "int8", calib)
    x = np.random.default_rng(1).integers(-128, 128, (4, 11, 9, 3)).astype(np.int8)
    assert not np.array_equal(reference.tflm_run(buf, x, (1, 11, 9, 3)), reference.litert_run(buf, x, (1, 11, 9, 3)))
    path = tmp_path / "dilated.tflite"
    path.write_bytes(buf)
    with pytest.raises(LwcnnError, match="SPACE_TO_BATCH_ND.*batch_size=1"):
        compiler.compile_model(str(path))
