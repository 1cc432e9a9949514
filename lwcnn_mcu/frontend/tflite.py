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

from lwcnn_mcu import ir
from lwcnn_mcu.errors import LwcnnError

_OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
_ACT_NAMES = {v: k for k, v in vars(fb.ActivationFunctionType).items() if not k.startswith("_")}
_PAD_NAMES = {v: k for k, v in vars(fb.Padding).items() if not k.startswith("_")}
_DTYPES = {fb.TensorType.INT8: ("int8", np.int8), fb.TensorType.INT32: ("int32", np.int32)}


def _act(opts: Any) -> str:
    name = _ACT_NAMES.get(opts.fusedActivationFunction, "?")
    if name not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise LwcnnError(f"fused activation {name} is not supported (NONE, RELU, RELU6, RELU_N1_TO_1 are)")
    return name


def _pad(opts: Any) -> str:
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
        axes = tuple(sorted(int(a) % len(x.shape) for a in _const(t, ins[1], "axis", name).ravel()))
        if len(x.shape) != 4 or axes != (1, 2):
            raise LwcnnError(f"op {name}: {cls.tflite_ops[0]} over axes {list(axes)} of a {len(x.shape)}-D "
                             "tensor is not supported (only over height and width of an NHWC tensor, as "
                             "GlobalAveragePooling2D/GlobalMaxPooling2D produce)")
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
    p = _const(t, ins[1], "paddings", name).reshape(-1, 2)
    value = None
    if len(ins) > 2 and ins[2] >= 0:
        value = int(_const(t, ins[2], "constant value", name).ravel()[0])
    if len(t[ins[0]].shape) != 4 or p.shape[0] != 4 or tuple(p[0]) != (0, 0):
        raise LwcnnError(f"op {name}: PAD is supported on 4-D NHWC tensors without batch padding")
    return ir.Pad(name, (ins[0],), outs, paddings=tuple((int(a), int(b)) for a, b in p), value=value)


def _reshape(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    return ir.Reshape(name, (ins[0],), outs)


def _softmax(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    y = t[outs[0]]
    if y.zero_point != -128 or abs(y.scale - 1.0 / 256) > 1e-9:
        raise LwcnnError(f"op {name}: int8 SOFTMAX needs output scale 1/256 and zero point -128")
    return ir.Softmax(name, ins, outs, beta=float(o.beta) if o is not None else 1.0)


def _quantize(name, ins, outs, o, t):  # noqa: ANN001, ANN202
    return ir.Requantize(name, ins, outs)


def _relu(max_value: float | None) -> Handler:
    def h(name, ins, outs, o, t):  # noqa: ANN001, ANN202
        return ir.Relu(name, ins, outs, max_value=max_value)
    return h


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
    "SOFTMAX": _softmax,
    "QUANTIZE": _quantize,
    "RELU": _relu(None),
    "RELU6": _relu(6.0),
}
assert set(HANDLERS) == {n for c in ir.OP_CLASSES for n in c.tflite_ops}


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


def read_tflite(buf: bytes, source: str) -> ir.Graph:
    """Parse an int8 .tflite into an :class:`ir.Graph` (not yet lowered)."""
    model = parse_model(buf, source)
    if len(model.subgraphs) != 1:
        raise LwcnnError(f"{source}: {len(model.subgraphs)} subgraphs; only single-subgraph models are supported")
    sg = model.subgraphs[0]
    tensors: dict[int, ir.Tensor] = {}
    for tid, tt in enumerate(sg.tensors):
        name = tt.name.decode() if isinstance(tt.name, bytes) else str(tt.name)
        shape = tuple(int(d) for d in (tt.shape if tt.shape is not None else []))
        data = None
        b = model.buffers[tt.buffer] if tt.buffer < len(model.buffers) else None
        raw = None if b is None or b.data is None else bytes(bytearray(b.data))
        dtype = _DTYPES.get(tt.type)
        if raw is not None and dtype is not None:
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
                                 qp, data if raw is not None else None)
        if raw is not None and dtype is None and tt.type == fb.TensorType.FLOAT32:
            tensors[tid] = ir.Tensor(tid, name, shape, "float32", qp, np.frombuffer(raw, np.float32).reshape(shape))

    ins, outs = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
    if len(ins) != 1 or len(outs) != 1:
        raise LwcnnError(f"{source}: {len(ins)} inputs and {len(outs)} outputs; lwcnn-mcu compiles "
                         "single-input, single-output classifiers")
    for role, tid in (("input", ins[0]), ("output", outs[0])):
        t = tensors[tid]
        if t.dtype != "int8" or t.quant is None:
            raise LwcnnError(f"{source}: the model's {role} '{t.name}' is {t.dtype}, not int8: this is not a "
                             "full-int8 model. Give the .keras model (lwcnn-mcu quantizes it) or convert with "
                             "inference_input_type/inference_output_type=tf.int8")
        sig = sg.tensors[tid].shapeSignature
        dims = [int(d) for d in (sig if sig is not None else t.shape)]
        # batch -1 (what TFLiteConverter.from_keras_model writes) runs as batch 1, as in TFLite Micro
        if any(d < 0 for d in dims[1:]) or not t.shape or t.shape[0] != 1:
            raise LwcnnError(f"{source}: the {role} shape {dims} is dynamic beyond the batch or has a batch of "
                             f"{t.shape[0] if t.shape else 0}; lwcnn-mcu compiles batch-1 models (batch -1 runs as 1) "
                             "with fixed other dimensions")

    ops: list[ir.Op] = []
    for k, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        opname = _OP_NAMES.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), f"CUSTOM({oc.customCode})")
        op_ins = tuple(int(i) for i in op.inputs)
        op_outs = tuple(int(i) for i in op.outputs)
        label = tensors[op_outs[0]].name if op_outs else f"op{k}"
        if opname not in HANDLERS:
            raise LwcnnError(f"{source}: op #{k} {opname} (output '{label}') is not supported. "
                             f"Supported: {supported_ops()}")
        for tid in op_ins[:1] + op_outs:
            if tensors[tid].dtype != "int8":
                raise LwcnnError(f"{source}: op #{k} {opname} ('{label}') works on {tensors[tid].dtype} data; "
                                 "only full-int8 models are supported")
        for tid in op_ins[1:]:
            t = tensors[tid] if tid >= 0 else None
            if t is not None and t.data is not None and t.dtype not in ("int8", "int32"):
                raise LwcnnError(f"{source}: op #{k} {opname} ('{label}') has a {t.dtype} constant "
                                 f"'{t.name}'; only int8 weights and int32 biases are supported")
        new = HANDLERS[opname](label, op_ins, op_outs, op.builtinOptions, tensors)
        ops.append(dataclasses.replace(new, opcode=opname, tflite_name=label))

    for op in ops:
        if isinstance(op, ir.Conv2D | ir.DepthwiseConv2D | ir.FullyConnected):
            w = tensors[op.inputs[1]]
            if w.data is None or w.quant is None:
                raise LwcnnError(f"{source}: op '{op.name}' has non-constant or unquantized weights")
            if any(z != 0 for z in w.quant.zero_point):
                raise LwcnnError(f"{source}: op '{op.name}' has weights with a non-zero zero point; int8 "
                                 "weights must be symmetric")
    used = {i for op in ops for i in op.inputs + op.outputs if i >= 0} | set(ins) | set(outs)
    return ir.Graph(name=Path(source).stem, tensors=tuple(tensors[i] for i in sorted(used)), ops=tuple(ops),
                    inputs=tuple(ins), outputs=tuple(outs), model_hash=hashlib.sha256(buf).hexdigest())
