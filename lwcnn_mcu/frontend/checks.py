"""The frontend never trusts the file: every op's tensors are checked against the op's semantics
(ranks, shapes, quantization, options) before anything is lowered or generated.

A ``.tflite`` written by the converter passes all of these; a corrupt or hostile one fails with an
``LwcnnError`` that names the op, the tensor and what is wrong (the CLI exits 2). One check
function per IR class in ``CHECKS``; every op also gets the generic checks of ``_common``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lwcnn_mcu import ir
from lwcnn_mcu.errors import LwcnnError

#: Largest activation tensor accepted (bytes): far beyond any microcontroller, small enough that
#: no computation on shapes can blow up.
MAX_TENSOR_BYTES = 1 << 28


class Bad(Exception):
    """One inconsistency, turned into an LwcnnError naming the op by :func:`check_graph`."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise Bad(what)


def _out_size(padding: str, n: int, k: int, stride: int, dil: int) -> int:
    """TFLite ComputeOutSize."""
    eff = (k - 1) * dil + 1
    return (n + stride - 1) // stride if padding == "SAME" else (n - eff + stride) // stride


def _act_tensor(t: ir.Tensor, role: str) -> None:
    _need(t.dtype == "int8", f"its {role} '{t.name}' is {t.dtype}, not int8")
    _need(t.quant is not None and len(t.quant.scale) == 1 and len(t.quant.zero_point) == 1,
          f"its {role} '{t.name}' has no per-tensor quantization")
    s, z = t.quant.scale[0], t.quant.zero_point[0]
    _need(math.isfinite(s) and s > 0, f"its {role} '{t.name}' has scale {s}")
    _need(-128 <= z <= 127, f"its {role} '{t.name}' has zero point {z}, outside int8")


def _common(op: ir.Op, g: ir.Graph) -> None:
    for role, ids in (("input", op.inputs), ("output", op.outputs)):
        for tid in ids:
            if tid < 0:
                continue
            t = g.t(tid)
            _need(all(d >= 1 for d in t.shape), f"its {role} '{t.name}' has shape {list(t.shape)}")
            _need(t.nbytes <= MAX_TENSOR_BYTES, f"its {role} '{t.name}' of shape {list(t.shape)} is too large")
    _act_tensor(g.t(op.inputs[0]), "input")
    for tid in op.outputs:
        _act_tensor(g.t(tid), "output")


def _window(op: ir.Conv2D | ir.DepthwiseConv2D | ir.MaxPool2D, g: ir.Graph, k_h: int, k_w: int,
            dil: tuple[int, int], out_c: int) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(len(x.shape) == 4 and len(y.shape) == 4, f"input {list(x.shape)} and output {list(y.shape)} are not NHWC")
    _need(min(op.stride) >= 1 and min(dil) >= 1 and k_h >= 1 and k_w >= 1,
          f"stride {list(op.stride)}, dilation {list(dil)} or window {k_h}x{k_w} below 1")
    _need(op.padding in ("SAME", "VALID"), f"padding {op.padding}")
    want = [1, _out_size(op.padding, x.shape[1], k_h, op.stride[0], dil[0]),
            _out_size(op.padding, x.shape[2], k_w, op.stride[1], dil[1]), out_c]
    _need(list(y.shape) == want, f"output shape {list(y.shape)}; the input {list(x.shape)} with this window, "
                                 f"stride and padding gives {want}")


def _weights(op: ir.Op, g: ir.Graph, rank: int, channels: int, axis: int) -> ir.Tensor:
    w = g.t(op.inputs[1])
    _need(w.is_const and w.dtype == "int8", f"weights '{w.name}' are not constant int8")
    _need(len(w.shape) == rank, f"weights '{w.name}' of shape {list(w.shape)}, not rank {rank}")
    _need(w.quant is not None and len(w.quant.scale) in (1, channels)
          and all(math.isfinite(s) and s > 0 for s in w.quant.scale)
          and len(w.quant.zero_point) in (1, len(w.quant.scale)),
          f"weights '{w.name}' quantization does not match {channels} output channels")
    _need(len(w.quant.scale) == 1 or w.quant.axis == axis, f"weights '{w.name}' quantized along axis {w.quant.axis}")
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = g.t(op.inputs[2])
        _need(b.is_const and b.dtype == "int32" and b.size == channels,
              f"bias '{b.name}' is not {channels} constant int32 values")
    return w


def _conv(op: ir.Conv2D, g: ir.Graph) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(len(y.shape) == 4, f"output {list(y.shape)} is not NHWC")
    w = _weights(op, g, 4, y.shape[3], 0)
    _need(len(x.shape) == 4 and w.shape[3] == x.shape[3],
          f"weights {list(w.shape)} do not take the input's {x.shape[-1]} channels")
    _need(w.shape[0] == y.shape[3], f"weights {list(w.shape)} do not make the output's {y.shape[3]} channels")
    _window(op, g, w.shape[1], w.shape[2], op.dilation, y.shape[3])


def _dwconv(op: ir.DepthwiseConv2D, g: ir.Graph) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(len(x.shape) == 4 and len(y.shape) == 4, f"input {list(x.shape)} and output {list(y.shape)} are not NHWC")
    w = _weights(op, g, 4, y.shape[3], 3)
    _need(w.shape[0] == 1 and w.shape[3] == y.shape[3] and y.shape[3] % x.shape[3] == 0,
          f"weights {list(w.shape)} do not map {x.shape[3]} input to {y.shape[3]} output channels")
    _window(op, g, w.shape[1], w.shape[2], op.dilation, y.shape[3])


def _fc(op: ir.FullyConnected, g: ir.Graph) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    w = _weights(op, g, 2, y.shape[-1] if y.shape else 0, 0)
    _need(x.size == w.shape[1] and y.size == w.shape[0],
          f"weights {list(w.shape)} do not map the input's {x.size} values to the output's {y.size} (batch 1)")


def _pool(op: ir.MaxPool2D, g: ir.Graph) -> None:
    x = g.t(op.inputs[0])
    _window(op, g, op.filter[0], op.filter[1], (1, 1), x.shape[-1] if x.shape else 0)


def _reduce(op: ir.Mean, g: ir.Graph) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(all(-len(x.shape) <= a < len(x.shape) for a in op.axes),
          f"axes {list(op.axes)} of a rank-{len(x.shape)} input")
    ext = ir.reduce_extents(x.shape, tuple(sorted(a % len(x.shape) for a in op.axes)))
    _need(ext is not None and y.size == ext[0] * ext[2],
          f"output {list(y.shape)} is not the input {list(x.shape)} reduced over axes {list(op.axes)}")


def _same_size(op: ir.Op, g: ir.Graph) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(x.size == y.size, f"input {list(x.shape)} and output {list(y.shape)} differ in size")


def _softmax(op: ir.Softmax, g: ir.Graph) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(x.shape == y.shape and x.shape, f"input {list(x.shape)} and output {list(y.shape)} differ")


def _concat(op: ir.Concatenation, g: ir.Graph) -> None:
    y = g.t(op.outputs[0])
    _need(-len(y.shape) <= op.axis < len(y.shape), f"axis {op.axis} of a rank-{len(y.shape)} output")
    axis = op.axis % len(y.shape)
    shapes = [g.t(i).shape for i in op.inputs]
    _need(all(len(s) == len(y.shape) and all(a == b for j, (a, b) in enumerate(zip(s, y.shape, strict=True))
                                             if j != axis) for s in shapes)
          and sum(s[axis] for s in shapes) == y.shape[axis],
          f"inputs {[list(s) for s in shapes]} do not concatenate to {list(y.shape)} along axis {axis}")


def _pad(op: ir.Pad, g: ir.Graph) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    p = list(op.paddings)
    _need(len(p) == len(x.shape) == len(y.shape) and all(a >= 0 and b >= 0 for a, b in p)
          and all(xd + a + b == yd for xd, (a, b), yd in zip(x.shape, p, y.shape, strict=True)),
          f"paddings {p} do not take {list(x.shape)} to {list(y.shape)}")
    _need(op.value is None or -128 <= op.value <= 127, f"pad value {op.value}")


CHECKS: dict[type[ir.Op], Callable[..., None]] = {
    ir.Conv2D: _conv, ir.DepthwiseConv2D: _dwconv, ir.FullyConnected: _fc, ir.MaxPool2D: _pool,
    ir.AvgPool2D: _pool, ir.Mean: _reduce, ir.ReduceMax: _reduce, ir.Concatenation: _concat, ir.Pad: _pad,
    ir.Reshape: _same_size, ir.Softmax: _softmax, ir.Requantize: _same_size, ir.Relu: _same_size,
}


def check_graph(g: ir.Graph, source: str) -> None:
    """Refuse the first op whose tensors do not fit its semantics."""
    for k, op in enumerate(g.ops):
        try:
            _common(op, g)
            fn = CHECKS.get(type(op))
            if fn is not None:
                fn(op, g)
        except Bad as exc:
            raise LwcnnError(f"{source}: op #{k} {op.opcode} ('{op.tflite_name or op.name}') is inconsistent: {exc}; "
                             "the file is corrupt or was not written by the TFLite converter") from None
