"""The frontend never trusts the file: mutated and hand-made hostile .tflite files are refused with one clear
message (LwcnnError, exit 2), never an internal error; a file that still parses compiles to C."""

from __future__ import annotations

import copy
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwcnn_mcu import compiler, models
from lwcnn_mcu.errors import LwcnnError
from lwcnn_mcu.frontend import tflite

BASE = models.shipped_tflite("mnist").read_bytes()


def _compile(buf: bytes) -> str:
    """'ok' or 'refused'; anything else than an LwcnnError propagates (and fails the test)."""
    try:
        g = tflite.read_tflite(buf, "fuzzed.tflite")
        compiler.compile_graph(Path("fuzzed.tflite"), g, buf)
        return "ok"
    except LwcnnError as exc:
        assert exc.message.startswith("fuzzed.tflite") or "fuzzed.tflite" in exc.message, exc.message
        assert "\n" not in exc.message and "Traceback" not in exc.message
        return "refused"


def _mutate(buf: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(buf)
    kind = int(rng.integers(0, 4))
    if kind == 0:  # a few random bytes
        for _ in range(int(rng.integers(1, 8))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 1:  # truncated
        b = b[:int(rng.integers(0, len(b)))]
    elif kind == 2:  # a random 32-bit word (offsets, lengths, indices, scales)
        p = int(rng.integers(0, len(b) - 4))
        b[p:p + 4] = rng.integers(0, 256, 4).astype(np.uint8).tobytes()
    else:  # a word in the flatbuffer's tables (past the weights), set to an extreme
        p = int(rng.integers(len(b) // 2, len(b) - 4)) & ~3
        b[p:p + 4] = int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000])).to_bytes(4, "little")
    return bytes(b)


def test_mutated_files_are_refused_cleanly():
    rng = np.random.default_rng(2026)
    seen = {"ok": 0, "refused": 0}
    for _ in range(250):
        seen[_compile(_mutate(BASE, rng))] += 1
    assert seen["refused"] > 100  # the mutations do hit the structure, not only the weights


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_hypothesis_byte_edits(edits):  # noqa: ANN001
    b = bytearray(BASE)
    for pos, val in edits:
        b[pos] = val
    _compile(bytes(b))


def _edit(fn) -> bytes:  # noqa: ANN001
    """The shipped model with one field changed through the flatbuffer object API."""
    m = fb.ModelT.InitFromPackedBuf(bytearray(BASE), 0)
    m = copy.deepcopy(m)
    fn(m)
    builder = flatbuffers.Builder(len(BASE) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _first(m, code: int):  # noqa: ANN001, ANN202
    sg = m.subgraphs[0]
    return next(op for op in sg.operators if m.operatorCodes[op.opcodeIndex].builtinCode == code)


HOSTILE = {
    "name not utf-8": (lambda m: setattr(m.subgraphs[0].tensors[0], "name", b"\xff\xfe"), "not UTF-8"),
    "tensor index out of range": (lambda m: setattr(_first(m, fb.BuiltinOperator.CONV_2D), "inputs",
                                                    [10_000, 1, 2]), "do not exist"),
    "buffer index out of range": (lambda m: setattr(m.subgraphs[0].tensors[1], "buffer", 99_999), "corrupt"),
    "opcode index out of range": (lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 77),
                                  "operator code"),
    "options of another op": (lambda m: (setattr(_first(m, fb.BuiltinOperator.CONV_2D), "builtinOptions",
                                                 fb.SoftmaxOptionsT())), "corrupt"),
    "conv output shape": (lambda m: setattr(
        m.subgraphs[0].tensors[_first(m, fb.BuiltinOperator.CONV_2D).outputs[0]], "shape", np.array([1, 5, 5, 3])),
        "is inconsistent"),
    "weights for other channels": (lambda m: setattr(
        m.subgraphs[0].tensors[_first(m, fb.BuiltinOperator.CONV_2D).inputs[1]], "shape", np.array([1, 1, 1, 1])),
        "corrupt"),
    "zero scale": (lambda m: setattr(m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].quantization, "scale",
                                     np.array([0.0], np.float32)), "scale"),
    "negative stride": (lambda m: setattr(_first(m, fb.BuiltinOperator.CONV_2D).builtinOptions, "strideH", -1),
                        "inconsistent"),
    "bad padding enum": (lambda m: setattr(_first(m, fb.BuiltinOperator.CONV_2D).builtinOptions, "padding", 9),
                         "padding"),
    "not a flatbuffer": (None, "TFL3"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_refused(case, tmp_path, capsys):  # noqa: ANN001
    from tests.test_errors import assert_clean_error, run

    fn, words = HOSTILE[case]
    buf = b"\x00" * 64 if fn is None else _edit(fn)
    path = tmp_path / "hostile.tflite"
    path.write_bytes(buf)
    code, _, err = run(["compile", str(path), "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, "hostile.tflite", words)
    assert not (tmp_path / "out").exists()
