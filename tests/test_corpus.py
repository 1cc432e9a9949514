"""The "models from elsewhere" corpus (tests/corpus.py) x its three exports: each .tflite compiled as
``lwcnn-mcu compile X.tflite`` compiles it, run as host C and compared byte for byte with TFLite Micro.

The cases TFLite Micro itself cannot run (``REFUSED``) are not compared: a test of their own checks that
TFLite Micro really fails on them and that the compiler refuses them with the reason. benchmarks/corpus_ops.py
writes the op inventory of every case (benchmarks/results/corpus-ops.json).

Each case runs on the model's own I/O types (the float32 entry point `NAME_invoke_float` for a
converter_default export, every float compared as a bit pattern). One model of each family also runs on the
emulated Cortex-M4 (`qemu-m4`): every output of the board equal to the host C.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lwcnn_mcu import compiler, hostrun, reference, verify
from lwcnn_mcu.errors import LwcnnError
from tests import corpus
from tests.conftest import HAVE_ARM

N_INPUTS = 4
N_CALIB = 16

# What a case is refused for, by model, by export, or by "model/export" (a case is expected to fail with the
# compiler's clear refusal while any of its three keys is here; the reasons are joined).
_TILE = ("TILE: Keras 3 writes UpSampling2D as RESHAPE + TILE and TFLite Micro has no TILE kernel, so nothing can be "
         "held to it; the .keras path (int8_io) quantizes UpSampling as RESIZE_NEAREST_NEIGHBOR")
REFUSED: dict[str, str] = {"unet_small/converter_default": _TILE, "unet_small/mlperf_int8": _TILE}


#: The two MobileNetV3Large variants (4.2M and 2.6M parameters, 40M MACs) in lwcnn-mcu's own export only: the
#: batch -1 exports of the same layers are covered by MobileNetV3Small, and these four cases alone would add
#: minutes to `make test` (benchmarks/corpus_ops.py and benchmarks/corpus_table.py run every export).
ONE_EXPORT = {"mobilenet_v3_large", "mobilenet_v3_large_min"}


def _cases() -> list[object]:
    out = []
    for name in corpus.CORPUS:
        for export in corpus.EXPORTS[:1] if name in ONE_EXPORT else corpus.EXPORTS:
            if f"{name}/{export}" not in REFUSED:
                out.append(pytest.param(name, export, id=f"{name}-{export}"))
    return out


def test_registry() -> None:
    """Every model has a family and an input range, every family is used, every REFUSED key names a case."""
    assert set(corpus.FAMILY) == set(corpus.CORPUS) == set(corpus.INPUT_RANGE)
    assert set(corpus.FAMILY.values()) == set(corpus.FAMILIES)
    keys = set(corpus.CORPUS) | set(corpus.EXPORTS) | {f"{n}/{e}" for n in corpus.CORPUS for e in corpus.EXPORTS}
    assert not set(REFUSED) - keys, f"REFUSED keys that name no case: {sorted(set(REFUSED) - keys)}"


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


@pytest.mark.parametrize(("name", "export"), _cases())
def test_corpus_bitexact_with_tflm(name: str, export: str, corpus_tflite: Callable[[str, str], Path]) -> None:
    c = compiler.compile_model(str(corpus_tflite(name, export)))
    x = verify.model_inputs(c.graph, verify.TestData(None, None, "random"), N_INPUTS)  # the model's own type
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    # the SIMD build on lwcnn-mcu's own export; the converter's exports share its kernels and layouts
    for flags in ({}, {"simd": True})[:2 if export == "int8_io" else 1]:
        got = hostrun.build_host(c.gen.files, io=True, **flags).run(x)
        assert got.dtype == expect.dtype and got.shape == expect.shape
        bad = int((got.view(np.uint8) != expect.view(np.uint8)).sum())
        assert bad == 0, f"{name}/{export} {flags}: {bad} bytes differ"


#: One model of each family on the emulated board (the smallest of the family).
ON_BOARD = {"mobilenet": "mobilenet_v1_025", "mlperf": "mlperf_kws_dscnn", "1d": "conv1d_sensor",
            "unet": "unet_small", "se": "se_block"}


@pytest.mark.skipif(not HAVE_ARM or shutil.which("qemu-system-arm") is None, reason="needs arm-none-eabi-gcc and QEMU")
@pytest.mark.parametrize("family", sorted(ON_BOARD))
def test_corpus_family_on_qemu_m4(family: str, corpus_tflite: Callable[[str, str], Path], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Built for qemu-m4, benched on random inputs: every output of the emulated Cortex-M4 equals the host C
    (which the test above holds to TFLite Micro)."""
    from lwcnn_mcu import bench

    assert set(ON_BOARD) == set(corpus.FAMILIES)
    monkeypatch.chdir(tmp_path)
    name = ON_BOARD[family]
    r = bench.run_bench(board="qemu-m4", port=None, model=str(corpus_tflite(name, "int8_io")), dataset=None, data=None,
                        labels=None, samples=2, layers=False, device_timeout=60.0)
    assert r["agree_with_host"] == r["samples"] == 2, r
    assert r["instructions"]["median"] > 0


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_tflm_cannot_run_them_and_compile_says_why(case: str, corpus_tflite: Callable[[str, str], Path]) -> None:
    """TFLite Micro really cannot run the file (so there is nothing to hold the C to), and compile says why."""
    name, export = case.split("/")
    path = corpus_tflite(name, export)
    shape = (1, *corpus.CORPUS[name]().inputs[0].shape[1:])
    with pytest.raises(reference.ReferenceFailed, match="TILE"):
        reference.tflm_run(path.read_bytes(), np.zeros(shape, np.int8 if export != "converter_default" else np.float32),
                           shape)
    with pytest.raises(LwcnnError, match="TFLite Micro has no TILE kernel"):
        compiler.compile_model(str(path))
