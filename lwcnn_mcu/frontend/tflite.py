"""Read a full-int8 ``.tflite`` flatbuffer into the IR.

Each supported TFLite builtin has one handler in ``HANDLERS`` that turns the operator and its
builtin options into an IR op; anything else is refused with a message that names the op.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from lwcnn_mcu import ir, quant
from lwcnn_mcu.errors import LwcnnError
from lwcnn_mcu.frontend import checks

_OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
_ACT_NAMES = {v: k for k, v in vars(fb.ActivationFunctionType).items() if not k.startswith("_")}
_PAD_NAMES = {v: k for k, v in vars(fb.Padding).items() if not k.startswith("_")}
_DTYPES = {fb.TensorType.INT8: ("int8", np.int8), fb.TensorType.INT32: ("int32", np.int32),
           fb.TensorType.UINT8: ("uint8", np.uint8), fb.TensorType.FLOAT32: ("float32", np.float32),
           fb.TensorType.INT64: ("int64", np.int64)}


def _act(opts: Any) -> str:
    name = _ACT_NAMES.get(opts.fusedActivationFunction, "?")
    if name not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise LwcnnError(f"fused activation {name} is not supported (NONE, RELU, RELU6, RELU_N1_TO_1 are)")
    return name


def _pad(opts: Any) -> str:
    if opts.padding not in _PAD_NAMES:
        raise LwcnnError(f"padding {opts.padding} is not a TFLite padding (SAME, VALID)")
    return _PAD_NAMES[opts.padding]


Handler = Callable[[str, tuple[int, ...], tuple[int, ...], Any, dict[int, ir.Tensor]], ir.Op]


def _conv(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    return ir.Conv2D(name, ins, outs, stride=(o.strideH, o.strideW),
                     dilation=(o.dilationHFactor, o.dilationWFactor), padding=_pad(o), activation=_act(o))


def _dwconv(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    return ir.DepthwiseConv2D(name, ins, outs, stride=(o.strideH, o.strideW),
                              dilation=(o.dilationHFactor, o.dilationWFactor), padding=_pad(o),
                              activation=_act(o), depth_multiplier=o.depthMultiplier)


def _fc(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    if o is not None and getattr(o, "weightsFormat", 0) != 0:
        raise LwcnnError(f"op {name}: FULLY_CONNECTED with shuffled weights is not supported")
    return ir.FullyConnected(name, ins, outs, activation=_act(o) if o is not None else "NONE")


def _pool(cls: type[ir.MaxPool2D]) -> Handler:
    def h(name, ins, outs, o, t):  # noqa: ANN001, ANN202
        return cls(name, ins, outs, filter=(o.filterHeight, o.filterWidth), stride=(o.strideH, o.strideW),
                   padding=_pad(o), activation=_act(o))
    return h


def _const(t: dict[int, ir.Tensor], tid: int, what: str, op: str) -> np.ndarray:
    if tid < 0 or t[tid].data is None:
        raise LwcnnError(f"op {op}: its {what} must be a constant tensor")
    return t[tid].data


def _reduce(cls: type[ir.Op]) -> Handler:
    def h(name, ins, outs, o, t):  # noqa: ANN001, ANN202
        x = t[ins[0]]
        rank = len(x.shape)
        raw = _const(t, ins[1], "axis", name).ravel()
        if any(not -rank <= int(a) < rank for a in raw):
            raise LwcnnError(f"op {name}: {cls.tflite_ops[0]} axis {raw.tolist()} is out of range for a {rank}-D input")
        axes = tuple(sorted({int(a) % rank for a in raw}))
        ext = ir.reduce_extents(x.shape, axes)
        if rank > 4 or ext is None:
            raise LwcnnError(f"op {name}: {cls.tflite_ops[0]} over axes {list(axes)} of a {rank}-D tensor "
                             f"{list(x.shape)} is not supported (the reduced axes must be one contiguous block, "
                             "as global poolings and means over the channels produce)")
        if ext[0] * ext[2] != t[outs[0]].size:
            raise LwcnnError(f"op {name}: {cls.tflite_ops[0]} of {list(x.shape)} over axes {list(axes)} cannot give "
                             f"the output {list(t[outs[0]].shape)}; the file is corrupt")
        if cls is ir.ReduceMax and (x.scale, x.zero_point) != (t[outs[0]].scale, t[outs[0]].zero_point):
            raise LwcnnError(f"op {name}: REDUCE_MAX with different input and output quantization is not supported "
                             "(TFLite Micro requires them equal)")
        return cls(name, (ins[0],), outs, axes=axes)
    return h


def _binary(cls: type[ir.Op]) -> Handler:
    """ADD, SUB, MUL, MAXIMUM, MINIMUM: two int8 inputs that broadcast to the output (NumPy rules), at
    most one of them a constant (stored in flash). A commutative op gets its constant second, and an
    input of the output's shape first (so the output may be written over it: same bytes, less RAM)."""

    def h(name, ins, outs, o, t):  # noqa: ANN001, ANN202
        opname = cls.tflite_ops[0]
        a, b, y = t[ins[0]], t[ins[1]], t[outs[0]]
        if a.data is not None and b.data is not None:
            raise LwcnnError(f"op {name}: {opname} of two constants is not supported")
        for c in (a, b):
            if c.data is not None and (c.dtype != "int8" or c.quant is None):
                raise LwcnnError(f"op {name}: {opname} with a {c.dtype} constant '{c.name}' is not supported "
                                 "(an int8 quantized one is)")
        if cls.COMMUTATIVE and (a.data is not None or (b.data is None and a.shape != y.shape and b.shape == y.shape)):
            ins, a, b = (ins[1], ins[0]), b, a
        try:
            ir.broadcast_loops(a.shape, b.shape, y.shape)
        except ValueError as exc:
            raise LwcnnError(f"op {name}: {opname} of shapes {list(a.shape)} and {list(b.shape)} into "
                             f"{list(y.shape)} is not supported: {exc}") from None
        if issubclass(cls, ir.Maximum):
            for c in (a, b):
                if (c.scale, c.zero_point) != (y.scale, y.zero_point):
                    raise LwcnnError(f"op {name}: {opname} input '{c.name}' is quantized with scale {c.scale:.6g} "
                                     f"and zero point {c.zero_point}, its output with {y.scale:.6g} and "
                                     f"{y.zero_point}; TFLite Micro compares the int8 codes, so they must be equal "
                                     "(re-convert the model so the converter gives all three one quantization)")
            return cls(name, tuple(ins), outs)
        return cls(name, tuple(ins), outs, activation=_act(o) if o is not None else "NONE")

    return h


def _concat(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    y = t[outs[0]]
    for i in ins:
        if t[i].data is not None:
            raise LwcnnError(f"op {name}: CONCATENATION of a constant is not supported")
        if (t[i].scale, t[i].zero_point) != (y.scale, y.zero_point):
            raise LwcnnError(f"op {name}: CONCATENATION inputs with quantization different from the output "
                             "are not supported (TFLite Micro requires them equal)")
    if o is not None and _act(o) != "NONE":
        raise LwcnnError(f"op {name}: CONCATENATION with a fused activation is not supported")
    return ir.Concatenation(name, ins, outs, axis=o.axis if o is not None else -1)


def _padop(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    rank = len(t[ins[0]].shape)
    p = _const(t, ins[1], "paddings", name).reshape(-1, 2)
    value = None
    if len(ins) > 2 and ins[2] >= 0:
        value = int(_const(t, ins[2], "constant value", name).ravel()[0])
    if rank not in (3, 4) or p.shape[0] != rank or tuple(p[0]) != (0, 0):
        raise LwcnnError(f"op {name}: PAD is supported on 4-D NHWC and 3-D (N, T, C) tensors without batch padding")
    return ir.Pad(name, (ins[0],), outs, paddings=tuple((int(a), int(b)) for a, b in p), value=value)


def _reshape(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    """RESHAPE, SQUEEZE, EXPAND_DIMS: the output tensor's shape is the new shape (their shape/axis
    inputs and options only say how the converter computed it)."""
    if t[ins[0]].size != t[outs[0]].size:
        raise LwcnnError(f"op {name}: reshaping {list(t[ins[0]].shape)} to {list(t[outs[0]].shape)} changes the "
                         "number of values; the file is corrupt")
    return ir.Reshape(name, (ins[0],), outs)


def _slice_input(t: dict[int, ir.Tensor], tid: int, what: str, op: str, rank: int) -> tuple[int, ...]:
    v = _const(t, tid, what, op).ravel()
    if v.size != rank:
        raise LwcnnError(f"op {op}: its {what} has {v.size} values for a {rank}-D input")
    return tuple(int(a) for a in v)


def _check_window(op: ir.StridedSlice, t: dict[int, ir.Tensor]) -> ir.StridedSlice:
    x, y = t[op.inputs[0]], t[op.outputs[0]]
    counts = [c for _, c, _ in op.window(x.shape)]
    if int(np.prod(counts)) != y.size or 0 in counts:
        raise LwcnnError(f"op {op.name}: the slice of {list(x.shape)} is {counts} but the output is {list(y.shape)}; "
                         "empty or inconsistent slices are not supported")
    return op


def _strided_slice(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    rank = len(t[ins[0]].shape)
    if rank > 4:
        raise LwcnnError(f"op {name}: STRIDED_SLICE of a {rank}-D tensor is not supported (rank <= 4 is)")
    if o is not None and (o.ellipsisMask or o.newAxisMask):
        raise LwcnnError(f"op {name}: STRIDED_SLICE with an ellipsis or new-axis mask is not supported; "
                         "slice with plain begin/end/strides")
    strides = _slice_input(t, ins[3], "strides", name, rank) if len(ins) > 3 else (1,) * rank
    if any(s <= 0 for s in strides):
        raise LwcnnError(f"op {name}: STRIDED_SLICE with strides {list(strides)} is not supported (positive "
                         "strides only)")
    op = ir.StridedSlice(name, (ins[0],), outs, begin=_slice_input(t, ins[1], "begin", name, rank),
                         end=_slice_input(t, ins[2], "end", name, rank), strides=strides,
                         begin_mask=int(o.beginMask) if o is not None else 0,
                         end_mask=int(o.endMask) if o is not None else 0,
                         shrink_axis_mask=int(o.shrinkAxisMask) if o is not None else 0,
                         offset=bool(getattr(o, "offset", False)) if o is not None else False)
    return _check_window(op, t)


def _slice(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    x = t[ins[0]]
    rank = len(x.shape)
    if rank > 4:
        raise LwcnnError(f"op {name}: SLICE of a {rank}-D tensor is not supported (rank <= 4 is)")
    begin = _slice_input(t, ins[1], "begin", name, rank)
    size = _slice_input(t, ins[2], "size", name, rank)
    end = tuple(d if n == -1 else b + n for b, n, d in zip(begin, size, x.shape, strict=True))
    if any(not 0 <= b < e <= d for b, e, d in zip(begin, end, x.shape, strict=True)):
        raise LwcnnError(f"op {name}: SLICE begin {list(begin)} size {list(size)} is outside the input "
                         f"{list(x.shape)}")
    return _check_window(ir.Slice(name, (ins[0],), outs, begin=begin, end=end, strides=(1,) * rank), t)


def _softmax(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    y = t[outs[0]]
    if y.zero_point != -128 or abs(y.scale - 1.0 / 256) > 1e-9:
        raise LwcnnError(f"op {name}: int8 SOFTMAX needs output scale 1/256 and zero point -128")
    beta = float(o.beta) if o is not None else 1.0
    x = t[ins[0]]
    if x.quant is not None and quant.softmax_input_multiplier(beta, x.scale) < 0.5:
        raise LwcnnError(f"op {name}: int8 SOFTMAX input scale {x.scale:.3g} is too small (beta*scale*2^26 must "
                         "be at least 0.5 here, above 1 for TFLite Micro): the calibration data gave the softmax "
                         "input no range; calibrate with data that exercises the model, or train it")
    return ir.Softmax(name, ins, outs, beta=beta)


def _quantize(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    if t[ins[0]].dtype == t[outs[0]].dtype == "int8":
        return ir.Requantize(name, ins, outs)
    return ir.Quantize(name, ins, outs)  # at an edge: float32 / uint8 <-> int8 (checked by read_tflite)


def _dequantize(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    return ir.Dequantize(name, ins, outs)


def _relu(max_value: float | None) -> Handler:
    def h(name, ins, outs, o, t):  # noqa: ANN001, ANN202
        return ir.Relu(name, ins, outs, max_value=max_value)
    return h


def _unary(cls: type[ir.Op]) -> Handler:
    def h(name, ins, outs, o, t):  # noqa: ANN001, ANN202
        return cls(name, (ins[0],), outs)
    return h


def _logistic(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    if t[outs[0]].zero_point != -128:
        raise LwcnnError(f"op {name}: int8 LOGISTIC needs output zero point -128 (scale 1/256), as TFLite Micro "
                         f"requires; it has {t[outs[0]].zero_point}. Re-quantize the model with the TFLite converter")
    return ir.Logistic(name, (ins[0],), outs)


def _hard_swish(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    x, y = t[ins[0]], t[outs[0]]
    try:
        quant.hard_swish_params(x.scale, y.scale)
    except ValueError:
        raise LwcnnError(f"op {name}: HARD_SWISH with input scale {x.scale:g} and output scale {y.scale:g} is "
                         "refused by TFLite Micro (input scale must be below 128 x output scale); re-quantize the "
                         "model") from None
    return ir.HardSwish(name, (ins[0],), outs)


def _leaky_relu(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    return ir.LeakyRelu(name, (ins[0],), outs, alpha=float(o.alpha) if o is not None else 0.0)  # schema default


def _prelu(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    x, y = t[ins[0]], t[outs[0]]
    alpha = t[ins[1]] if ins[1] >= 0 else None
    if alpha is None or alpha.data is None or alpha.dtype != "int8" or alpha.quant is None:
        raise LwcnnError(f"op {name}: PRELU needs a constant int8 alpha (as Keras PReLU gives)")
    if len(alpha.quant.scale) != 1:
        raise LwcnnError(f"op {name}: PRELU with a per-channel quantized alpha is not supported (one scale is)")
    xs = (1,) * (4 - len(x.shape)) + tuple(x.shape)
    als = (1,) * max(0, 4 - len(alpha.shape)) + tuple(alpha.shape)
    if (len(x.shape) > 4 or len(alpha.shape) > 4 or x.shape != y.shape or als[0] != 1
            or any(a not in (1, d) for a, d in zip(als, xs, strict=True))):
        raise LwcnnError(f"op {name}: PRELU of a {list(x.shape)} input with alpha {list(alpha.shape)} is not "
                         "supported (alpha must broadcast against the input, at most 4-D, batch 1)")
    return ir.Prelu(name, (ins[0], ins[1]), outs)

def _tconv(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    if o is None or len(ins) not in (3, 4):
        raise LwcnnError(f"op {name}: TRANSPOSE_CONV without its options or with {len(ins)} inputs (3 or 4 expected); "
                         "the file is corrupt")
    x, y = t[ins[2]], t[outs[0]]
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise LwcnnError(f"op {name}: TRANSPOSE_CONV is supported on 4-D NHWC tensors")
    bias = ins[3] if len(ins) > 3 else -1
    act = _act(o) if hasattr(o, "fusedActivationFunction") else "NONE"
    return ir.TransposeConv(name, (ins[2], ins[1], bias), outs, stride=(o.strideH, o.strideW), padding=_pad(o),
                            activation=act)


def _resize_nearest(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    if o is None:
        raise LwcnnError(f"op {name}: RESIZE_NEAREST_NEIGHBOR without its options; the file is corrupt")
    x, y = t[ins[0]], t[outs[0]]
    size = [int(v) for v in _const(t, ins[1], "size", name).ravel()]
    if len(x.shape) != 4 or len(y.shape) != 4 or size != list(y.shape[1:3]):
        raise LwcnnError(f"op {name}: RESIZE_NEAREST_NEIGHBOR is supported on 4-D NHWC tensors with a constant "
                         f"size equal to the output's height and width (size {size}, output {list(y.shape)})")
    return ir.ResizeNearest(name, (ins[0],), outs, align_corners=bool(o.alignCorners),
                            half_pixel_centers=bool(o.halfPixelCenters))


#: the index of an op's data input in the .tflite, where it is not the first (the others are its constants)
DATA_INPUT: dict[str, int] = {"TRANSPOSE_CONV": 2}

HANDLERS: dict[str, Handler] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _dwconv,
    "FULLY_CONNECTED": _fc,
    "MAX_POOL_2D": _pool(ir.MaxPool2D),
    "AVERAGE_POOL_2D": _pool(ir.AvgPool2D),
    "MEAN": _reduce(ir.Mean),
    "REDUCE_MAX": _reduce(ir.ReduceMax),
    "ADD": _binary(ir.Add),
    "SUB": _binary(ir.Sub),
    "MUL": _binary(ir.Mul),
    "MAXIMUM": _binary(ir.Maximum),
    "MINIMUM": _binary(ir.Minimum),
    "CONCATENATION": _concat,
    "PAD": _padop,
    "PADV2": _padop,
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "EXPAND_DIMS": _reshape,
    "STRIDED_SLICE": _strided_slice,
    "SLICE": _slice,
    "SOFTMAX": _softmax,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "RELU": _relu(None),
    "RELU6": _relu(6.0),
    "LOGISTIC": _logistic,
    "TANH": _unary(ir.Tanh),
    "HARD_SWISH": _hard_swish,
    "LEAKY_RELU": _leaky_relu,
    "PRELU": _prelu,
    "TRANSPOSE_CONV": _tconv,
    "RESIZE_NEAREST_NEIGHBOR": _resize_nearest,
}
assert set(HANDLERS) == {n for c in ir.OP_CLASSES + ir.EDGE_CLASSES for n in c.tflite_ops}


def supported_ops() -> str:
    return ", ".join(HANDLERS)


def parse_model(buf: bytes, source: str) -> Any:
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise LwcnnError(f"{source}: not a TFLite flatbuffer (no 'TFL3' identifier at byte 4); "
                         "give a .keras model or an int8 .tflite")
    try:
        model = fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)
        if not model.subgraphs:
            raise ValueError("no subgraph")
        sg = model.subgraphs[0]
        for tensor in sg.tensors:
            b = model.buffers[tensor.buffer]
            if b.data is not None and b.offset:
                raise ValueError("external buffers")
    except LwcnnError:
        raise
    except Exception as exc:  # the flatbuffer library raises assorted errors on corrupt data
        raise LwcnnError(f"{source}: the TFLite flatbuffer is corrupt or truncated ({type(exc).__name__}); "
                         "re-export the model") from None
    return model


def _fold(opname: str, ins: tuple[int, ...], outs: tuple[int, ...], o: Any,
          t: dict[int, ir.Tensor]) -> np.ndarray | None:
    """The value of an op that computes a shape from static shapes and constants, or None.

    The converter's default export (batch -1) computes a Flatten's target shape at run time:
    SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE. With the batch fixed at 1 (as TFLite Micro runs
    it) those are constants, folded here so the RESHAPE gets a constant shape."""
    y = t[outs[0]]
    if y.dtype not in ("int32", "int64") or len(outs) != 1:
        return None
    dtype = np.int64 if y.dtype == "int64" else np.int32
    if opname == "SHAPE":
        return np.array(t[ins[0]].shape, dtype)
    args = [t[i].data if i >= 0 else None for i in ins]
    if not args or any(a is None for a in args):
        return None
    if opname == "PACK":
        return np.stack(args, axis=int(o.axis)).astype(dtype)
    if opname == "CONCATENATION":
        return np.concatenate([a.reshape(-1) if a.ndim == 0 else a for a in args], axis=int(o.axis)).astype(dtype)
    if opname in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CAST") and args[0].size == y.size:
        return args[0].reshape(y.shape).astype(dtype)
    if opname == "STRIDED_SLICE" and args[0].ndim == 1 and len(args) == 4 and not (o.ellipsisMask or o.newAxisMask):
        b, e, st = (int(a.reshape(-1)[0]) for a in args[1:])
        if st == 0:
            return None
        if o.shrinkAxisMask & 1:
            return np.array(args[0][b], dtype) if -len(args[0]) <= b < len(args[0]) else None
        return args[0][slice(None if o.beginMask & 1 else b, None if o.endMask & 1 else e, st)].astype(dtype)
    return None


def _float_model_error(source: str, float_ops: list[str]) -> LwcnnError:
    return LwcnnError(f"{source}: ops {', '.join(dict.fromkeys(float_ops))} compute in float (a float or "
                      "dynamic-range/hybrid model); lwcnn-mcu compiles full-integer models: convert with "
                      "optimizations=[tf.lite.Optimize.DEFAULT] and a representative_dataset (int8 inside; float32, "
                      "uint8 or int8 input and output are all fine), or give the .keras model")


def read_tflite(buf: bytes, source: str) -> ir.Graph:
    """Parse an int8 .tflite into an :class:`ir.Graph` (not yet lowered).

    The model's own input and output may be int8, or float32 / uint8 converted by a QUANTIZE /
    DEQUANTIZE at the edge (what the converter writes by default); everything between is int8.
    Batch -1 (``shape_signature``) runs as batch 1, as in TFLite Micro."""
    model = parse_model(buf, source)
    if len(model.subgraphs) != 1:
        raise LwcnnError(f"{source}: {len(model.subgraphs)} subgraphs; only single-subgraph models are supported")
    sg = model.subgraphs[0]
    tensors: dict[int, ir.Tensor] = {}
    for tid, tt in enumerate(sg.tensors):
        try:
            name = tt.name.decode() if isinstance(tt.name, bytes) else str(tt.name or "")
        except UnicodeDecodeError:
            raise LwcnnError(f"{source}: tensor #{tid}'s name is not UTF-8 text; the file is corrupt") from None
        shape = tuple(int(d) for d in (tt.shape if tt.shape is not None else []))
        if not 0 <= tt.buffer < len(model.buffers or []):
            raise LwcnnError(f"{source}: tensor #{tid} '{name}' names buffer {tt.buffer}, which the file does not "
                             "have; the file is corrupt")
        b = model.buffers[tt.buffer]
        raw = None if b is None or b.data is None or len(b.data) == 0 else bytes(bytearray(b.data))
        dtype = _DTYPES.get(tt.type)
        data = None
        if raw is not None and dtype is not None:
            if len(raw) % np.dtype(dtype[1]).itemsize:
                raise LwcnnError(f"{source}: constant tensor '{name}' has {len(raw)} bytes, not a whole number of "
                                 f"{dtype[0]} values; the file is corrupt")
            arr = np.frombuffer(raw, dtype=dtype[1])
            if arr.size != (int(np.prod(shape)) if shape else 1):
                raise LwcnnError(f"{source}: constant tensor '{name}' holds {arr.size} values for shape "
                                 f"{list(shape)}; the file is corrupt")
            data = arr.reshape(shape).copy()
        q = tt.quantization
        qp = None
        if q is not None and q.scale is not None and len(q.scale):
            zps = q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale)
            qp = ir.QuantParams(tuple(float(s) for s in q.scale), tuple(int(z) for z in zps), int(q.quantizedDimension))
        tensors[tid] = ir.Tensor(tid, name, shape, dtype[0] if dtype else _TYPE_NAMES.get(tt.type, "?").lower(),
                                 qp, data)

    ins, outs = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
    if len(ins) != 1 or len(outs) != 1:
        raise LwcnnError(f"{source}: {len(ins)} inputs and {len(outs)} outputs; lwcnn-mcu compiles "
                         "single-input, single-output classifiers")
    for role, tid in (("input", ins[0]), ("output", outs[0])):
        t = tensors[tid]
        sig = sg.tensors[tid].shapeSignature
        dims = [int(d) for d in (sig if sig is not None and len(sig) else t.shape)]
        # batch -1 (what TFLiteConverter.from_keras_model writes) runs as batch 1, as in TFLite Micro
        if any(d < 0 for d in dims[1:]) or not t.shape or t.shape[0] != 1 or any(d < 1 for d in t.shape):
            raise LwcnnError(f"{source}: the {role} shape {dims} is dynamic beyond the batch or has a batch of "
                             f"{t.shape[0] if t.shape else 0}; lwcnn-mcu compiles batch-1 models (batch -1 runs as 1) "
                             "with fixed other dimensions")

    raw_ops = []
    for k, op in enumerate(sg.operators or []):
        if not 0 <= op.opcodeIndex < len(model.operatorCodes or []):
            raise LwcnnError(f"{source}: op #{k} names operator code {op.opcodeIndex}, which the file does not "
                             "have; the file is corrupt")
        oc = model.operatorCodes[op.opcodeIndex]
        opname = _OP_NAMES.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), f"CUSTOM({oc.customCode})")
        op_ins = tuple(int(i) for i in (op.inputs if op.inputs is not None else []))
        op_outs = tuple(int(i) for i in (op.outputs if op.outputs is not None else []))
        if not op_outs or any(i >= len(tensors) or i < -1 for i in op_ins + op_outs) or -1 in op_outs:
            raise LwcnnError(f"{source}: op #{k} {opname} refers to tensors that do not exist; the file is corrupt")
        try:
            folded = _fold(opname, op_ins, op_outs, op.builtinOptions, tensors)
        except (ValueError, IndexError, TypeError, AttributeError, OverflowError):
            raise LwcnnError(f"{source}: op #{k} {opname} computes a shape from inconsistent inputs or options; "
                             "the file is corrupt") from None
        if folded is not None:  # a shape computation: its output becomes a constant
            y = tensors[op_outs[0]]
            if y.shape and tuple(folded.shape) != y.shape:
                raise LwcnnError(f"{source}: op #{k} {opname} ('{y.name}') computes shape {list(folded.shape)}, "
                                 f"its output tensor says {list(y.shape)}; the file is inconsistent")
            tensors[y.id] = dataclasses.replace(y, data=folded.reshape(y.shape) if y.shape else folded)
            continue
        raw_ops.append((k, opname, op_ins, op_outs, op.builtinOptions))

    # the edges: float32 / uint8 I/O converted by one QUANTIZE / DEQUANTIZE next to the int8 core
    is_act = lambda tid: tid >= 0 and tensors[tid].data is None  # noqa: E731
    float_ops = [name for _, name, i, o, _ in raw_ops
                 if name not in ("QUANTIZE", "DEQUANTIZE")
                 and any(tensors[x].dtype == "float32" for x in i + o if is_act(x))]
    if float_ops:
        raise _float_model_error(source, float_ops)
    edge: dict[int, str] = {}  # raw op index -> "in" | "out"
    for role, tid in (("input", ins[0]), ("output", outs[0])):
        t = tensors[tid]
        if t.dtype == "int8":
            if t.quant is None:
                raise LwcnnError(f"{source}: the model's {role} '{t.name}' is int8 without quantization parameters")
            continue
        if t.dtype not in ("float32", "uint8"):
            raise LwcnnError(f"{source}: the model's {role} '{t.name}' is {t.dtype}; lwcnn-mcu compiles models with "
                             "int8, uint8 or float32 input and output")
        users = [j for j, (_, _, i, o, _) in enumerate(raw_ops) if (tid in i if role == "input" else tid in o)]
        want = ("QUANTIZE",) if role == "input" else ("QUANTIZE", "DEQUANTIZE")
        if len(users) != 1 or raw_ops[users[0]][1] not in want:
            raise LwcnnError(f"{source}: the model's {t.dtype} {role} '{t.name}' is not converted by one "
                             f"{' or '.join(want)} to or from int8 next to it; lwcnn-mcu compiles int8 models "
                             "whose float32/uint8 edges are a QUANTIZE/DEQUANTIZE, as the converter writes them")
        j = users[0]
        core = tensors[raw_ops[j][3][0] if role == "input" else raw_ops[j][2][0]]
        if core.dtype != "int8" or core.quant is None or (t.dtype == "uint8" and t.quant is None):
            raise LwcnnError(f"{source}: the {raw_ops[j][1]} at the model's {role} converts {t.dtype} to "
                             f"{core.dtype}, not to the int8 core; not supported")
        if role == "input" and len([1 for _, _, i, _, _ in raw_ops if ins[0] in i]) != 1:
            raise LwcnnError(f"{source}: the model's {role} feeds more than its QUANTIZE; not supported")
        edge[j] = role

    ops: list[ir.Op] = []
    edge_ops: dict[str, ir.Op] = {}
    for j, (k, opname, op_ins, op_outs, opts) in enumerate(raw_ops):
        label = tensors[op_outs[0]].name
        if opname in ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"):
            raise LwcnnError(f"{source}: op #{k} {opname} ('{label}'): with a dynamic batch the converter writes a "
                             "dilated convolution as SPACE_TO_BATCH_ND -> CONV -> BATCH_TO_SPACE_ND with static "
                             "shapes that are wrong for batch 1, and TFLite Micro then computes a wrong result "
                             "(LiteRT does not). Re-export with a fixed batch of 1 (keras.Input(..., batch_size=1)) "
                             "or give the .keras model: the dilated convolution is then one CONV_2D")
        if opname == "TILE":
            raise LwcnnError(f"{source}: op #{k} TILE ('{label}') is not supported: TFLite Micro has no TILE kernel. "
                             "Keras 3 writes UpSampling1D/2D as RESHAPE + TILE; give the .keras model (lwcnn-mcu "
                             "quantizes UpSampling as RESIZE_NEAREST_NEIGHBOR) or use tf.image.resize nearest")
        if opname not in HANDLERS:
            raise LwcnnError(f"{source}: op #{k} {opname} (output '{label}') is not supported. "
                             f"Supported: {supported_ops()}")
        if j not in edge:
            data_in = op_ins[DATA_INPUT.get(opname, 0)] if len(op_ins) > DATA_INPUT.get(opname, 0) else -1
            for tid in ((data_in,) if data_in >= 0 else ()) + op_outs:
                if tensors[tid].dtype != "int8":
                    raise LwcnnError(f"{source}: op #{k} {opname} ('{label}') works on {tensors[tid].dtype} data "
                                     "inside the model; only int8 is supported between the model's edges")
        for tid in op_ins[1:]:
            t = tensors[tid] if tid >= 0 else None
            if t is not None and t.data is not None and t.dtype not in ("int8", "int32"):
                raise LwcnnError(f"{source}: op #{k} {opname} ('{label}') has a {t.dtype} constant "
                                 f"'{t.name}'; only int8 weights and int32 biases are supported")
        try:
            new = HANDLERS[opname](label, op_ins, op_outs, opts, tensors)
        except LwcnnError as exc:
            where = "" if exc.message.startswith("op ") else f"op #{k} {opname} ('{label}'): "
            raise LwcnnError(f"{source}: {where}{exc.message}") from None
        except (AttributeError, TypeError, ValueError, IndexError, KeyError, OverflowError):
            # options of another op's type (or none), operands missing: what a corrupt file gives
            raise LwcnnError(f"{source}: op #{k} {opname} ('{label}') has options of the wrong type or operands "
                             "missing; the file is corrupt or was not written by the TFLite converter") from None
        new = dataclasses.replace(new, opcode=opname, tflite_name=label)
        if j in edge:
            edge_ops[edge[j]] = new
        else:
            ops.append(new)

    for op in ops:
        if isinstance(op, ir.Conv2D | ir.DepthwiseConv2D | ir.FullyConnected | ir.TransposeConv):
            w = tensors[op.inputs[1]]
            if w.data is None or w.quant is None:
                raise LwcnnError(f"{source}: op '{op.name}' has non-constant or unquantized weights")
            if any(z != 0 for z in w.quant.zero_point):
                raise LwcnnError(f"{source}: op '{op.name}' has weights with a non-zero zero point; int8 "
                                 "weights must be symmetric")
    core_in = edge_ops["input"].outputs[0] if "input" in edge_ops else ins[0]
    core_out = edge_ops["output"].inputs[0] if "output" in edge_ops else outs[0]
    used = ({i for op in ops for i in op.inputs + op.outputs if i >= 0} | {core_in, core_out, ins[0], outs[0]})
    g = ir.Graph(name=Path(source).stem, tensors=tuple(tensors[i] for i in sorted(used)), ops=tuple(ops),
                 inputs=(core_in,), outputs=(core_out,), model_hash=hashlib.sha256(buf).hexdigest(),
                 edge_in=edge_ops.get("input"), edge_out=edge_ops.get("output"))
    checks.check_graph(g, source)
    return g
