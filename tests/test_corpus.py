"""The "models from elsewhere" corpus (tests/corpus.py) x its three exports: each .tflite compiled as
``lwcnn-mcu compile X.tflite`` compiles it, run as host C and compared byte for byte with TFLite Micro.

Cases that cannot pass yet are ``xfail(strict=True, raises=LwcnnError)``, driven by ``XFAIL`` alone: when
an op lands, delete its entries (a case that then passes while still listed fails the run, and one that
fails in any other way than the compiler's refusal fails it too). benchmarks/corpus_ops.py writes the
inventory these entries come from (benchmarks/results/corpus-ops.json).

A float32-I/O export (converter_default) is compared on its int8 core: the C gets int8 codes q, TFLite
Micro gets the floats its QUANTIZE maps back to q, and its float outputs are mapped back to the int8 codes
its DEQUANTIZE came from (checked exactly both ways).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lwcnn_mcu import compiler, hostrun, reference
from lwcnn_mcu.errors import LwcnnError
from tests import corpus

N_INPUTS = 4
N_CALIB = 16

# What is missing for a case, by model, by export, or by "model/export" (a case is expected to fail while
# any of its three keys is here; the reasons are joined). From benchmarks/results/corpus-ops.json.
_BATCH = "SHAPE, STRIDED_SLICE, PACK: a Flatten/Reshape at batch -1 (fold them: the batch is 1)"
XFAIL: dict[str, str] = {
    # float32 edges: QUANTIZE in, DEQUANTIZE out
    "converter_default": "DEQUANTIZE (float32 input and output, QUANTIZE/DEQUANTIZE at the edges)",
    # the core ops
    "mobilenet_v3_small_075": "HARD_SWISH; MUL with broadcasting (squeeze-and-excitation)",
    "mobilenet_v3_large": "HARD_SWISH; MUL with broadcasting (squeeze-and-excitation)",
    "conv1d_sensor": "MEAN over the time axis of a 3-D tensor (GlobalAveragePooling1D)",
    "unet_small": "TILE (UpSampling2D: and TFLite Micro has no TILE kernel), TRANSPOSE_CONV, LOGISTIC",
    "se_block": "MUL with broadcasting ([1, H, W, C] x [1, 1, 1, C])",
    # batch -1: the shape arithmetic the converter writes for Flatten/Reshape, Conv1D and UpSampling2D
    "mobilenet_v1_025/converter_default": _BATCH,
    "mobilenet_v1_025/mlperf_int8": _BATCH,
    "mobilenet_v3_small_075/converter_default": _BATCH,
    "mobilenet_v3_small_075/mlperf_int8": _BATCH,
    "mobilenet_v3_small_min/converter_default": _BATCH,
    "mobilenet_v3_small_min/mlperf_int8": _BATCH,
    "mobilenet_v3_large/converter_default": _BATCH,
    "mobilenet_v3_large/mlperf_int8": _BATCH,
    "mobilenet_v3_large_min/converter_default": _BATCH,
    "mobilenet_v3_large_min/mlperf_int8": _BATCH,
    "mlperf_kws_dscnn/converter_default": _BATCH,
    "mlperf_kws_dscnn/mlperf_int8": _BATCH,
    "mlperf_ic_resnet8/converter_default": _BATCH,
    "mlperf_ic_resnet8/mlperf_int8": _BATCH,
    "mlperf_vww_mobilenet/converter_default": _BATCH,
    "mlperf_vww_mobilenet/mlperf_int8": _BATCH,
    "conv1d_sensor/converter_default": "EXPAND_DIMS (Conv1D at batch -1)",
    "conv1d_sensor/mlperf_int8": "EXPAND_DIMS (Conv1D at batch -1)",
    "unet_small/converter_default": "EXPAND_DIMS; " + _BATCH + "; CONCATENATION of int32 shapes",
    "unet_small/mlperf_int8": "EXPAND_DIMS; " + _BATCH + "; CONCATENATION of int32 shapes",
}


def _cases() -> list[object]:
    out = []
    for name in corpus.CORPUS:
        for export in corpus.EXPORTS:
            reasons = [XFAIL[k] for k in (name, export, f"{name}/{export}") if k in XFAIL]
            marks = [pytest.mark.xfail(strict=True, raises=LwcnnError, reason="; ".join(reasons))] if reasons else []
            out.append(pytest.param(name, export, marks=marks, id=f"{name}-{export}"))
    return out


def test_registry() -> None:
    """Every model has a family and an input range, every family is used, every XFAIL key names a case."""
    assert set(corpus.FAMILY) == set(corpus.CORPUS) == set(corpus.INPUT_RANGE)
    assert set(corpus.FAMILY.values()) == set(corpus.FAMILIES)
    keys = set(corpus.CORPUS) | set(corpus.EXPORTS) | {f"{n}/{e}" for n in corpus.CORPUS for e in corpus.EXPORTS}
    assert not set(XFAIL) - keys, f"XFAIL keys that name no model, export or case: {sorted(set(XFAIL) - keys)}"


@pytest.fixture(scope="session")
def corpus_tflite(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """(model, export) -> its .tflite, each model built once and each export converted once per session."""
    root = tmp_path_factory.mktemp("corpus")
    models: dict[str, object] = {}

    def get(name: str, export: str) -> Path:
        path = root / f"{name}_{export}.tflite"
        if not path.is_file():
            if name not in models:
                models[name] = corpus.CORPUS[name]()
            model = models[name]
            shape = tuple(int(d) for d in model.inputs[0].shape[1:])  # type: ignore[attr-defined]
            calib = corpus.calibration(name, N_CALIB, seed=0, shape=shape)
            path.write_bytes(corpus.EXPORTERS[export](model, calib))
        return path

    return get


def _dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's DEQUANTIZE: float(double(scale) * (q - zero_point))."""
    return (np.float64(np.float32(scale)) * (q.astype(np.int64) - zero_point)).astype(np.float32)


def tflm_on_codes(buf: bytes, info: corpus.TfliteInfo, x: np.ndarray) -> np.ndarray:
    """TFLite Micro on int8 codes of the model's core input; returns int8 codes of its core output."""
    if info.input_dtype == "int8":
        return reference.tflm_run(buf, x, tuple(info.input_shape))
    assert info.input_dtype == "float32" and info.output_dtype == "float32", (info.input_dtype, info.output_dtype)
    (si, zi), (so, zo) = info.core_input, info.core_output
    xf = _dequantize(x, si, zi)
    assert np.array_equal(reference.quantize_input(xf, si, zi), x), "the float inputs do not quantize back to x"
    interp = reference._tflm(buf)
    codes = []
    for i in range(len(x)):
        interp.set_input(xf[i].reshape(info.input_shape), 0)
        interp.invoke()
        y = np.asarray(interp.get_output(0), np.float32).reshape(-1)
        q = np.clip(np.round(y.astype(np.float64) / np.float32(so)) + zo, -128, 127).astype(np.int8)
        assert np.array_equal(_dequantize(q, so, zo), y), "TFLite Micro's float output is not DEQUANTIZE of codes"
        codes.append(q)
    return np.stack(codes)


@pytest.mark.parametrize(("name", "export"), _cases())
def test_corpus_bitexact_with_tflm(name: str, export: str, corpus_tflite: Callable[[str, str], Path]) -> None:
    path = corpus_tflite(name, export)
    c = compiler.compile_model(str(path))
    info = corpus.analyze(c.tflite)
    x = np.random.default_rng(1).integers(-128, 128, (N_INPUTS, *info.input_shape[1:])).astype(np.int8)
    expect = tflm_on_codes(c.tflite, info, x)
    got = hostrun.build_host(c.gen.files).run(x)
    assert got.shape == expect.shape
    assert np.array_equal(got, expect), f"{name}/{export}: {(got != expect).sum()} bytes differ"
    simd = hostrun.build_host(c.gen.files, simd=True).run(x)
    assert np.array_equal(simd, expect), f"{name}/{export} (SIMD path): {(simd != expect).sum()} bytes differ"
