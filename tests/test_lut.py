"""The 256-entry tables of the int8 activations (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU), computed by
lwcnn_mcu.quant's integer emulation, against TFLite Micro itself: one-op models with random
quantization, every input code run through the interpreter, the whole table compared."""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb

from lwcnn_mcu import quant, reference


def _tensor(name: str, scale: float, zp: int) -> fb.TensorT:
    t = fb.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), [1, 256], fb.TensorType.INT8, 0
    t.quantization = fb.QuantizationParametersT()
    t.quantization.scale, t.quantization.zeroPoint = [float(scale)], [int(zp)]
    return t


def one_op_model(opcode: int, in_q: tuple[float, int], out_q: tuple[float, int], alpha: float | None = None) -> bytes:
    """A .tflite of a single int8 op on a [1, 256] tensor."""
    code = fb.OperatorCodeT()
    code.builtinCode = opcode
    code.deprecatedBuiltinCode = min(opcode, 127)
    code.version = 1
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    if alpha is not None:
        op.builtinOptionsType = fb.BuiltinOptions.LeakyReluOptions
        op.builtinOptions = fb.LeakyReluOptionsT()
        op.builtinOptions.alpha = float(alpha)
    sg = fb.SubGraphT()
    sg.tensors = [_tensor("x", *in_q), _tensor("y", *out_q)]
    sg.inputs, sg.outputs, sg.operators = [0], [1], [op]
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [sg], [fb.BufferT()]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def tflm_table(buf: bytes) -> np.ndarray:
    x = quant.INT8_CODES.astype(np.int8).reshape(1, 1, 256)
    return reference.tflm_run(buf, x, (1, 256))[0].astype(np.int64)


def _random_q(rng: np.random.Generator, lo: float = -5.0, hi: float = 0.0) -> tuple[float, int]:
    """A float32 scale 10^u (u uniform in [lo, hi]) and a zero point in int8."""
    return float(np.float32(10.0 ** rng.uniform(lo, hi))), int(rng.integers(-128, 128))


N = 100  # random quantizations per op (each one TFLite Micro interpreter, a few milliseconds)


def test_logistic_table_equals_tflm():
    rng = np.random.default_rng(1)
    for _ in range(N):
        s, zp = _random_q(rng, -3.5, 0.5)
        expect = tflm_table(one_op_model(fb.BuiltinOperator.LOGISTIC, (s, zp), (1 / 256, -128)))
        assert np.array_equal(quant.logistic_table(s, zp), expect), (s, zp)


def test_tanh_table_equals_tflm():
    rng = np.random.default_rng(2)
    for _ in range(N):
        s, zp = _random_q(rng, -3.5, 0.5)
        out = _random_q(rng)  # TFLite Micro's int8 TANH ignores the output quantization
        expect = tflm_table(one_op_model(fb.BuiltinOperator.TANH, (s, zp), out))
        assert np.array_equal(quant.tanh_table(s, zp), expect), (s, zp)


def test_hard_swish_table_equals_tflm():
    rng = np.random.default_rng(3)
    done = 0
    while done < N:
        (si, zi), (so, zo) = _random_q(rng, -3, 0), _random_q(rng, -3, 0)
        if si / (128 * so) >= 1:  # TFLite Micro refuses these (output multiplier exponent > 0)
            continue
        expect = tflm_table(one_op_model(fb.BuiltinOperator.HARD_SWISH, (si, zi), (so, zo)))
        assert np.array_equal(quant.hard_swish_table(si, zi, so, zo), expect), (si, zi, so, zo)
        done += 1


@pytest.mark.parametrize("alpha_range", [(0.0, 1.0), (1.0, 5.0), (-1.0, 0.0)])
def test_leaky_relu_table_equals_tflm(alpha_range):  # noqa: ANN001
    rng = np.random.default_rng(4)
    for _ in range(N):
        (si, zi), (so, zo) = _random_q(rng, -3, 0), _random_q(rng, -3, 0)
        alpha = float(np.float32(rng.uniform(*alpha_range)))
        expect = tflm_table(one_op_model(fb.BuiltinOperator.LEAKY_RELU, (si, zi), (so, zo), alpha=alpha))
        assert np.array_equal(quant.leaky_relu_table(si, zi, so, zo, alpha), expect), (si, zi, so, zo, alpha)


def test_typical_scales_exercise_both_saturations():
    """The random cases above are not vacuous: a typical input scale reaches both saturated ends
    and the fixed-point middle of the sigmoid."""
    table = quant.logistic_table(0.06, 3)
    assert table.min() == -128 and table.max() == 127 and len(np.unique(table)) > 100


def test_what_tflm_refuses_is_refused_with_a_clear_message():
    """A LOGISTIC whose output zero point is not -128 and a HARD_SWISH whose output multiplier would
    need a left shift: TFLite Micro fails to prepare them, the frontend names the op and the fix."""
    from lwcnn_mcu.errors import LwcnnError
    from lwcnn_mcu.frontend import tflite

    cases = [(one_op_model(fb.BuiltinOperator.LOGISTIC, (0.05, 3), (1 / 256, 0)), "output zero point -128"),
             (one_op_model(fb.BuiltinOperator.HARD_SWISH, (0.5, 3), (0.001, 0)), "below 128 x output scale")]
    for buf, needle in cases:
        with pytest.raises(reference.ReferenceFailed, match="failed to allocate"):
            tflm_table(buf)
        with pytest.raises(LwcnnError, match=needle):
            tflite.read_tflite(buf, "one_op.tflite")
