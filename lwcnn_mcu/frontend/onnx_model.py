"""Read an ``.onnx`` model (NCHW, as ``torch.onnx.export`` writes it), convert it to the equivalent Keras
model in NHWC, and quantize that to a full-int8 ``.tflite`` like any ``.keras`` model.

Why a converter of our own and not onnx2tf: no onnx2tf release installs beside this project's pins
(2.x needs Python 3.12 and pins numpy 2.2, onnxruntime 1.26, ai-edge-litert 2.1 and pytest 9.0; the last
1.x for Python 3.11 pins TensorFlow 2.19, numpy 1.26 and protobuf 4), it downloads calibration images
when asked for an int8 model without its own, and what it writes for a PyTorch ``Flatten`` is a
TRANSPOSE, which the int8 compiler does not have. The op set a microcontroller classifier uses is
small; converting it here keeps every step checked: each ONNX node becomes standard Keras layers with
the node's name, and the result is compared with onnxruntime on the calibration inputs before it is
quantized (a difference is a bug here, reported as an internal error).

Layout: every 4-D activation is held as the NHWC transpose of its ONNX NCHW tensor, so convolution
weights are transposed once and no TRANSPOSE reaches the int8 model. A ``Flatten`` of a C x H x W map
keeps the data in H x W x C order and records the permutation; the ``Gemm``/``MatMul`` that reads it
takes its weight rows in that order. Batch normalization and per-channel ``Mul``/``Add``/``Sub``/``Div``
by constants are folded into the convolution or Gemm before them (else they become a 1x1 depthwise
convolution). Nothing here touches the network: the calibration data is the user's (or a local dataset).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lwcnn_mcu.errors import LwcnnError
from lwcnn_mcu.util import capture_fd2, quiet_tensorflow

MIN_OPSET = 13

#: ONNX ops the converter maps to Keras layers (on computed tensors), and how.
SUPPORTED_OPS: dict[str, str] = {
    "Conv": "2-D, group 1 or depthwise (group = input channels); any stride, dilation and padding",
    "BatchNormalization": "inference mode; folded into the Conv/Gemm before it, else a 1x1 depthwise conv",
    "Relu": "", "Clip": "min 0 and max 6 or none (ReLU6 / ReLU)",
    "MaxPool": "padding as TF 'same', none, or any when the input is non-negative (after a ReLU)",
    "AveragePool": "padding as TF 'same' or none (count_include_pad=1: any)",
    "GlobalAveragePool": "", "GlobalMaxPool": "",
    "ReduceMean": "over H and W (x.mean((2, 3)))", "ReduceMax": "over H and W",
    "Add": "two tensors of the same shape, or a tensor and a per-channel constant",
    "Mul": "two tensors of the same shape, or a tensor and a per-channel constant",
    "Sub": "a tensor minus a per-channel constant", "Div": "a tensor divided by a per-channel constant",
    "Gemm": "transA=0, constant B (torch.nn.Linear)", "MatMul": "2-D tensor times a constant matrix",
    "Flatten": "axis 1", "Reshape": "to (N, -1) (a flatten) or to the same shape",
    "Squeeze": "of the 1x1 spatial axes of a pooled map", "Concat": "along channels",
    "Softmax": "over channels / features", "Pad": "constant zero padding of H and W",
    "Dropout": "identity", "Identity": "",
}
#: ops accepted only when every input is a constant (shape arithmetic: evaluated at conversion time)
CONSTANT_OPS: tuple[str, ...] = (
    "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Range", "ConstantOfShape",
    "Expand", "ReduceProd", "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "Sqrt", "Pow", "Neg", "Floor",
    "Ceil", "Equal", "Where", "Identity", "Size",
)


def supported_ops() -> str:
    return ", ".join(SUPPORTED_OPS)


@dataclass
class OnnxInfo:
    """What verify needs of the original model: its bytes (for onnxruntime) and its layout."""

    path: Path
    proto: bytes = field(repr=False)
    input_name: str
    input_shape: tuple[int, ...]  # ONNX layout, without the batch dimension
    batch_dynamic: bool
    output_rank: int
    opset: int
    producer: str
    nodes: int
    conversion_max_abs_diff: float | None = None

    @property
    def nchw(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def c_shape(self) -> tuple[int, ...]:
        """The input shape the compiled model takes (NHWC for an image model)."""
        if self.nchw:
            c, h, w = self.input_shape
            return (h, w, c)
        return self.input_shape

    def to_c_layout(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if self.nchw else x

    def to_onnx_layout(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.nchw else x

    def report(self) -> dict[str, Any]:
        return {"source": str(self.path), "opset": self.opset, "producer": self.producer, "nodes": self.nodes,
                "input_layout": "NCHW" if self.nchw else "NF",
                "onnx_input_shape": [1, *self.input_shape], "c_input_shape": [1, *self.c_shape],
                "c_input_layout": "NHWC" if self.nchw else "NF",
                "conversion_max_abs_diff": self.conversion_max_abs_diff}


@dataclass
class Converted:
    keras: Any
    info: OnnxInfo
    layers: tuple[str, ...]


@dataclass
class _Act:
    """A computed tensor: its Keras tensor (NHWC for 4-D), its ONNX shape (batch 1), and for a 2-D tensor
    made by flattening a map, ``order[j]`` = the ONNX feature index that Keras feature j holds."""

    t: Any
    shape: tuple[int, ...]
    order: np.ndarray | None = None
    nonneg: bool = False


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def load(path: Path) -> tuple[Any, OnnxInfo]:
    """Parse and check an .onnx file: a valid model, opset >= 13, one float input (N, C, H, W) or (N, F)
    whose dimensions other than the batch are fixed, one output, only supported ops."""
    import onnx

    src = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LwcnnError(f"model file {path} cannot be read ({exc.strerror})") from None
    try:
        m = onnx.load_model_from_string(data)
    except Exception:  # protobuf raises DecodeError and friends on anything that is not a ModelProto
        raise LwcnnError(f"{src}: not an ONNX model (the file is not an ONNX protobuf); export it with "
                         "torch.onnx.export") from None
    if m.ir_version <= 0 or not m.graph.node or not m.graph.output:
        raise LwcnnError(f"{src}: not an ONNX model (no graph in it); export it with torch.onnx.export")
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in m.graph.initializer):
        try:
            onnx.load_external_data_for_model(m, str(path.parent))
            data = m.SerializeToString()  # weights inside: what onnxruntime is given
        except Exception as exc:
            raise LwcnnError(f"{src}: its external weight data could not be read ({str(exc)[:200]})") from None
    try:
        onnx.checker.check_model(m)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise LwcnnError(f"{src}: the ONNX model is invalid ({msg})") from None
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        raise LwcnnError(f"{src}: ONNX opset {opset}; lwcnn-mcu reads opset {MIN_OPSET} or later: export with "
                         f"torch.onnx.export(..., opset_version={MIN_OPSET}) or newer")
    for k, node in enumerate(m.graph.node):
        if node.domain not in ("", "ai.onnx") or (node.op_type not in SUPPORTED_OPS
                                                  and node.op_type not in CONSTANT_OPS):
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            raise LwcnnError(f"{src}: ONNX op {op} (node '{node.name or f'#{k}'}') is not supported. "
                             f"Supported ops: {supported_ops()}")
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(m.graph.output) != 1:
        raise LwcnnError(f"{src}: the model has {len(inputs)} inputs and {len(m.graph.output)} outputs; "
                         "lwcnn-mcu compiles single-input, single-output classifiers")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or tt.elem_type != onnx.TensorProto.FLOAT:
        raise LwcnnError(f"{src}: the input '{inp.name}' is not a float32 tensor")
    dims = [(d.dim_value if d.HasField("dim_value") else None, d.dim_param) for d in tt.shape.dim]
    if len(dims) not in (2, 4):
        raise LwcnnError(f"{src}: the input '{inp.name}' has {len(dims)} dimensions; lwcnn-mcu takes images "
                         "(N, C, H, W) or feature vectors (N, F)")
    names = ("batch", "channels", "height", "width") if len(dims) == 4 else ("batch", "features")
    for i, (v, p) in enumerate(dims[1:], start=1):
        if not v:
            raise LwcnnError(f"{src}: the input '{inp.name}' has a dynamic {names[i]} dimension "
                             f"('{p or '?'}' at position {i}); only the batch may be dynamic: export with a "
                             "fixed input size (no dynamic_axes other than the batch)")
    if dims[0][0] not in (None, 0, 1):
        raise LwcnnError(f"{src}: the input '{inp.name}' has a fixed batch of {dims[0][0]}; export with a batch-1 "
                         "example input or a dynamic batch")
    out_rank = len(m.graph.output[0].type.tensor_type.shape.dim)
    info = OnnxInfo(path=path, proto=data, input_name=inp.name, input_shape=tuple(int(v) for v, _ in dims[1:]),
                    batch_dynamic=not dims[0][0], output_rank=out_rank, opset=opset,
                    producer=f"{m.producer_name} {m.producer_version}".strip(), nodes=len(m.graph.node))
    return m, info


def _same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis (the extra one at the end)."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


class _Converter:
    def __init__(self, m: Any, info: OnnxInfo) -> None:
        from onnx import numpy_helper

        quiet_tensorflow()
        import keras

        self.keras = keras
        self.L = keras.layers
        self.m, self.info, self.src = m, info, str(info.path)
        self.consts: dict[str, np.ndarray] = {}
        for init in m.graph.initializer:
            a = numpy_helper.to_array(init)
            self.consts[init.name] = a.astype(np.float32) if a.dtype.kind == "f" else a
        self.acts: dict[str, _Act] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in m.graph.node:
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)
        self.graph_outputs = {o.name for o in m.graph.output}
        self.absorbed: set[str] = set()  # nodes folded into the one before them (by their first output)
        self.used_names: set[str] = {"input"}  # the Keras input layer's
        self.layer_names: list[str] = []

    # -- helpers ---------------------------------------------------------------------------------------
    def fail(self, node: Any, what: str) -> LwcnnError:
        return LwcnnError(f"{self.src}: ONNX op {node.op_type} (node '{node.name or '?'}'): {what}")

    def name(self, node: Any, suffix: str = "") -> str:
        segs = [s for s in node.name.split("/") if s]  # torch: '/layer1/layer1.0/conv1/Conv'
        if len(segs) > 1 and segs[-1].split("_")[0] == node.op_type:
            segs = segs[:-1]
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", "_".join(segs)).strip("_.-")
        base = (base or node.op_type.lower()) + suffix
        if not base[0].isalnum():
            base = "n" + base
        name, k = base, 1
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        self.layer_names.append(name)
        return name

    def act(self, node: Any, i: int = 0) -> _Act:
        n = node.input[i] if i < len(node.input) else ""
        if n not in self.acts:
            raise self.fail(node, f"input {i} '{n}' must be a computed tensor, not a constant")
        return self.acts[n]

    def const(self, node: Any, i: int, what: str, required: bool = True) -> np.ndarray | None:
        n = node.input[i] if i < len(node.input) else ""
        if not n:
            if required:
                raise self.fail(node, f"its {what} is missing")
            return None
        if n not in self.consts:
            raise self.fail(node, f"its {what} ('{n}') must be a constant (an initializer), not a computed tensor")
        return self.consts[n]

    def set(self, node: Any, a: _Act, out: str | None = None) -> None:
        self.acts[out or node.output[0]] = a

    @staticmethod
    def flatten_order(shape: tuple[int, ...]) -> np.ndarray | None:
        """Keras feature j of a flattened NHWC map holds ONNX (C, H, W)-flattened feature order[j]."""
        _, c, h, w = shape
        if h == 1 and w == 1:
            return None
        return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()

    def per_channel(self, node: Any, c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
        """A constant broadcast against an activation of ONNX ``shape`` as one value per channel (axis 1),
        or None when it varies along another axis or does not broadcast."""
        c = np.asarray(c, np.float32)
        if c.ndim > len(shape):
            return None
        try:
            full = np.broadcast_to(c, shape)
        except ValueError:
            return None
        per = full.reshape(shape[0], shape[1], -1)[0, :, 0]
        expect = per.reshape((1, shape[1]) + (1,) * (len(shape) - 2))
        return per.copy() if np.array_equal(np.broadcast_to(expect, shape), full) else None

    def affine_of(self, node: Any, x: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """``node`` (reading tensor ``x`` of ONNX ``shape``) as y = x * scale + shift per channel, or None."""
        op = node.op_type
        if op == "BatchNormalization":
            if (len(node.output) > 1 and any(node.output[1:])) or _attrs(node).get("training_mode", 0):
                raise self.fail(node, "training mode is not supported; export the model in eval() mode")
            if node.input[0] != x or any(n not in self.consts for n in node.input[1:5]):
                return None
            gamma, beta, mean, var = (self.consts[n].astype(np.float64).ravel() for n in node.input[1:5])
            eps = float(_attrs(node).get("epsilon", 1e-5))
            s = gamma / np.sqrt(var + eps)
            return s.astype(np.float32), (beta - mean * s).astype(np.float32)
        if op not in ("Add", "Mul", "Sub", "Div") or len(node.input) != 2:
            return None
        a, b = node.input
        if (a == x) == (b == x):
            return None
        other = b if a == x else a
        if other not in self.consts:
            return None
        v = self.per_channel(node, self.consts[other], shape)
        if v is None:
            return None
        ones, zeros = np.ones_like(v), np.zeros_like(v)
        if op == "Add":
            return ones, v
        if op == "Mul":
            return v, zeros
        if op == "Sub":
            return (ones, -v) if a == x else (-ones, v)
        if a != x or np.any(v == 0):
            return None
        return 1.0 / v, zeros

    def fold(self, node: Any, w: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray,
                                                                                             str, list[Any]]:
        """Fold the per-channel affine nodes that follow ``node`` (each its output's only reader) into its
        weights ``w`` (output channel first) and bias ``b``; returns them, the last output and the folded nodes."""
        out, folded = node.output[0], []
        w, b = w.astype(np.float64), b.astype(np.float64)
        while out not in self.graph_outputs and len(self.consumers.get(out, [])) == 1:
            nxt = self.consumers[out][0]
            aff = self.affine_of(nxt, out, shape)
            if aff is None:
                break
            s, t = aff
            w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
            b = b * s + t
            self.absorbed.add(nxt.output[0])
            folded.append(nxt)
            out = nxt.output[0]
        return w.astype(np.float32), b.astype(np.float32), out, folded

    def padding(self, node: Any, a: dict[str, Any], hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
                d: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) padding of a Conv/pool node."""
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            p = [_same_pads(hw[i], k[i], s[i], d[i]) for i in range(2)]
            if auto == "SAME_LOWER":
                p = [(e, b) for b, e in p]
            return p[0][0], p[1][0], p[0][1], p[1][1]
        if auto == "VALID":
            return 0, 0, 0, 0
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or min(pads) < 0:
            raise self.fail(node, f"pads {pads} are not supported (four non-negative values, as a 2-D operation has)")
        return pads[0], pads[1], pads[2], pads[3]

    @staticmethod
    def tf_mode(hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
                pads: tuple[int, int, int, int]) -> str | None:
        if not any(pads):
            return "valid"
        same = [_same_pads(hw[i], k[i], s[i], d[i]) for i in range(2)]
        if (pads[0], pads[2]) == same[0] and (pads[1], pads[3]) == same[1]:
            return "same"
        return None

    def zero_pad(self, node: Any, x: _Act, pads: tuple[int, int, int, int], suffix: str = "_pad") -> Any:
        t, lft, b, r = pads
        return self.L.ZeroPadding2D(((t, b), (lft, r)), name=self.name(node, suffix))(x.t)

    def spatial(self, node: Any, x: _Act, a: dict[str, Any], k: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        if len(x.shape) != 4:
            raise self.fail(node, f"a {len(x.shape)}-D input is not supported (2-D operations on (N, C, H, W) are)")
        if len(k) != 2:
            raise self.fail(node, f"a {len(k)}-D kernel is not supported (2-D kernels are)")
        s = tuple(a.get("strides", [1, 1]))
        d = tuple(a.get("dilations", [1, 1]))
        return (x.shape[2], x.shape[3]), k, s, d

    # -- the ops -----------------------------------------------------------------------------------------
    def op_Conv(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        w = self.const(node, 1, "weight")
        b = self.const(node, 2, "bias", required=False)
        a = _attrs(node)
        hw, k, s, d = self.spatial(node, x, a, tuple(w.shape[2:]))
        if max(s) > 1 and max(d) > 1:
            raise self.fail(node, f"strides {list(s)} together with dilations {list(d)} are not supported")
        cin, cout, group = x.shape[1], w.shape[0], int(a.get("group", 1))
        depthwise = group > 1 and group == cin and w.shape[1] == 1
        if group != 1 and not depthwise:
            raise self.fail(node, f"grouped convolution with group={group} is not supported (group 1 or "
                                  f"group = input channels ({cin}), a depthwise convolution, are)")
        if w.shape[1] * group != cin or cout % group or (b is not None and b.size != cout):
            raise self.fail(node, f"weight {list(w.shape)} (group {group}) does not fit an input of {cin} channels")
        b = np.zeros(cout, np.float32) if b is None else b.ravel()
        pads = self.padding(node, a, hw, k, s, d)
        oh = (hw[0] + pads[0] + pads[2] - (k[0] - 1) * d[0] - 1) // s[0] + 1
        ow = (hw[1] + pads[1] + pads[3] - (k[1] - 1) * d[1] - 1) // s[1] + 1
        shape = (1, cout, oh, ow)
        w, b, out, _ = self.fold(node, w, b, shape)
        mode = self.tf_mode(hw, k, s, d, pads)
        xt = x.t if mode is not None else self.zero_pad(node, x, pads)
        if depthwise:
            layer = self.L.DepthwiseConv2D(k, strides=s, padding=mode or "valid", depth_multiplier=cout // cin,
                                           dilation_rate=d, name=self.name(node))
            y = layer(xt)
            layer.set_weights([w.reshape(cin, cout // cin, *k).transpose(2, 3, 0, 1), b])
        else:
            layer = self.L.Conv2D(cout, k, strides=s, padding=mode or "valid", dilation_rate=d, name=self.name(node))
            y = layer(xt)
            layer.set_weights([w.transpose(2, 3, 1, 0), b])
        self.set(node, _Act(y, shape), out)

    def dense(self, node: Any, x: _Act, w: np.ndarray, b: np.ndarray) -> None:
        """y = x @ w + b, w shaped (K, M)."""
        if len(x.shape) != 2:
            raise self.fail(node, f"a {len(x.shape)}-D input is not supported (flatten it to (N, F) first)")
        if w.ndim != 2 or w.shape[0] != x.shape[1]:
            raise self.fail(node, f"weight shape {list(w.shape)} does not match the input's {x.shape[1]} features")
        m = w.shape[1]
        wt, b, out, _ = self.fold(node, w.T, np.broadcast_to(b, (m,)).astype(np.float32), (1, m))
        kernel = wt.T if x.order is None else wt.T[x.order]  # Keras feature j is ONNX feature order[j]
        layer = self.L.Dense(m, name=self.name(node))
        y = layer(x.t)
        layer.set_weights([np.ascontiguousarray(kernel), b])
        self.set(node, _Act(y, (1, m)), out)

    def op_Gemm(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        a = _attrs(node)
        if a.get("transA", 0):
            raise self.fail(node, "transA=1 is not supported")
        w = self.const(node, 1, "weight (B)").astype(np.float32)
        w = w.T if a.get("transB", 0) else w
        c = self.const(node, 2, "bias (C)", required=False)
        m = w.shape[1] if w.ndim == 2 else 0
        bias = np.zeros(m, np.float32) if c is None else float(a.get("beta", 1.0)) * c.astype(np.float32)
        if bias.size not in (1, m) or (bias.ndim == 2 and bias.shape[0] != 1):
            raise self.fail(node, f"bias C of shape {list(bias.shape)} is not one value per output")
        self.dense(node, x, float(a.get("alpha", 1.0)) * w, bias.ravel())

    def op_MatMul(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        self.dense(node, x, self.const(node, 1, "second operand").astype(np.float32),
                   np.zeros(1, np.float32))

    def affine_layer(self, node: Any, x: _Act, s: np.ndarray, t: np.ndarray) -> None:
        """A per-channel y = x * s + t that could not be folded: a 1x1 depthwise convolution (a diagonal
        Dense on features), with the affine nodes right after it folded in."""
        s, t, out, _ = self.fold(node, s, t, x.shape)
        if len(x.shape) == 4:
            layer = self.L.DepthwiseConv2D(1, name=self.name(node))
            y = layer(x.t)
            layer.set_weights([s.reshape(1, 1, -1, 1), t])
        elif len(x.shape) == 2:
            order = x.order if x.order is not None else np.arange(x.shape[1])
            layer = self.L.Dense(x.shape[1], name=self.name(node))
            y = layer(x.t)
            layer.set_weights([np.diag(s[order]).astype(np.float32), t[order]])
        else:
            raise self.fail(node, f"a {len(x.shape)}-D input is not supported")
        self.set(node, _Act(y, x.shape, x.order, False), out)

    def op_BatchNormalization(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        aff = self.affine_of(node, node.input[0], x.shape)
        if aff is None:
            raise self.fail(node, "its scale, bias, mean and variance must be constants")
        self.affine_layer(node, x, *aff)

    def binary(self, node: Any, merge: Any) -> None:
        a, b = node.input
        if a in self.acts and b in self.acts:
            xa, xb = self.acts[a], self.acts[b]
            if xa.shape != xb.shape:
                raise self.fail(node, f"broadcasting between computed tensors {list(xa.shape)} and {list(xb.shape)} "
                                      "is not supported; both must have the same shape")
            if (xa.order is None) != (xb.order is None) or (xa.order is not None
                                                            and not np.array_equal(xa.order, xb.order)):
                raise self.fail(node, "its inputs are flattened in different orders; flatten after the "
                                      f"{node.op_type}, not before")
            y = merge(name=self.name(node))([xa.t, xb.t])
            self.set(node, _Act(y, xa.shape, xa.order, xa.nonneg and xb.nonneg and node.op_type != "Sub"))
            return
        x = self.acts[a] if a in self.acts else self.acts[b]
        aff = self.affine_of(node, a if a in self.acts else b, x.shape)
        if aff is None:
            raise self.fail(node, "only a constant with one value per channel (or a scalar) is supported as "
                                  "its other operand")
        self.affine_layer(node, x, *aff)

    def op_Add(self, node: Any) -> None:  # noqa: N802
        self.binary(node, self.L.Add)

    def op_Mul(self, node: Any) -> None:  # noqa: N802
        self.binary(node, self.L.Multiply)

    def op_Sub(self, node: Any) -> None:  # noqa: N802
        if all(i in self.acts for i in node.input):
            raise self.fail(node, "the difference of two computed tensors is not supported (a tensor minus a "
                                  "constant is)")
        self.binary(node, None)

    def op_Div(self, node: Any) -> None:  # noqa: N802
        if node.input[1] in self.acts:
            raise self.fail(node, "dividing by a computed tensor is not supported (by a constant is)")
        self.binary(node, None)

    def op_Relu(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        self.set(node, _Act(self.L.ReLU(name=self.name(node))(x.t), x.shape, x.order, True))

    def op_Clip(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        lo = self.const(node, 1, "min", required=False)
        hi = self.const(node, 2, "max", required=False)
        lo = -math.inf if lo is None else float(lo)
        hi = math.inf if hi is None else float(hi)
        if lo != 0.0 or hi not in (6.0, math.inf):
            raise self.fail(node, f"Clip({lo:g}, {hi:g}) is not supported (Clip(0, 6) = ReLU6 and Clip(0) = ReLU are)")
        layer = self.L.ReLU(max_value=6.0 if hi == 6.0 else None, name=self.name(node))
        self.set(node, _Act(layer(x.t), x.shape, x.order, True))

    def pool(self, node: Any, avg: bool) -> None:
        x = self.act(node)
        a = _attrs(node)
        hw, k, s, d = self.spatial(node, x, a, tuple(a.get("kernel_shape", [])))
        if max(d) > 1:
            raise self.fail(node, f"dilations {list(d)} are not supported")
        pads = self.padding(node, a, hw, k, s, d)
        out = [(hw[i] + pads[i] + pads[i + 2] - k[i]) // s[i] + 1 for i in range(2)]
        if a.get("ceil_mode", 0):
            ceil = [-(-(hw[i] + pads[i] + pads[i + 2] - k[i]) // s[i]) + 1 for i in range(2)]
            if ceil != out:
                raise self.fail(node, f"ceil_mode=1 changes the output size here ({ceil} instead of {out}); "
                                      "it is not supported: use ceil_mode=False or an input size it divides")
        mode = self.tf_mode(hw, k, s, d, pads)
        explicit = mode is None or (avg and mode == "same" and a.get("count_include_pad", 0))
        if explicit:
            if avg and not a.get("count_include_pad", 0):
                raise self.fail(node, f"padding {list(pads)} with count_include_pad=0 is not supported (none, "
                                      "TensorFlow's 'same' padding, or count_include_pad=1 are)")
            if not avg and not x.nonneg:
                raise self.fail(node, f"padding {list(pads)} differs from TensorFlow's 'same' and the input may be "
                                      "negative; supported after a ReLU, or with no padding")
            xt, mode = self.zero_pad(node, x, pads), "valid"
        else:
            xt = x.t
        cls = self.L.AveragePooling2D if avg else self.L.MaxPooling2D
        y = cls(k, strides=s, padding=mode, name=self.name(node))(xt)
        self.set(node, _Act(y, (1, x.shape[1], out[0], out[1]), None, x.nonneg))

    def op_MaxPool(self, node: Any) -> None:  # noqa: N802
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "the Indices output is not supported")
        self.pool(node, avg=False)

    def op_AveragePool(self, node: Any) -> None:  # noqa: N802
        self.pool(node, avg=True)

    def global_pool(self, node: Any, cls: Any) -> None:
        x = self.act(node)
        if len(x.shape) != 4:
            raise self.fail(node, f"a {len(x.shape)}-D input is not supported")
        y = cls(keepdims=True, name=self.name(node))(x.t)
        self.set(node, _Act(y, (1, x.shape[1], 1, 1), None, x.nonneg))

    def op_GlobalAveragePool(self, node: Any) -> None:  # noqa: N802
        self.global_pool(node, self.L.GlobalAveragePooling2D)

    def op_GlobalMaxPool(self, node: Any) -> None:  # noqa: N802
        self.global_pool(node, self.L.GlobalMaxPooling2D)

    def reduce(self, node: Any, cls: Any) -> None:
        x = self.act(node)
        a = _attrs(node)
        axes = a.get("axes")  # an attribute up to opset 17, an input from opset 18
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes").ravel()
        r = len(x.shape)
        if r != 4 or axes is None or sorted(int(v) % r for v in axes) != [2, 3]:
            raise self.fail(node, f"reducing axes {None if axes is None else [int(v) for v in axes]} of "
                                  f"{list(x.shape)} is not supported (over H and W, axes [2, 3], of (N, C, H, W) is)")
        keep = bool(a.get("keepdims", 1))
        y = cls(keepdims=keep, name=self.name(node))(x.t)
        self.set(node, _Act(y, (1, x.shape[1], 1, 1) if keep else (1, x.shape[1]), None, x.nonneg))

    def op_ReduceMean(self, node: Any) -> None:  # noqa: N802
        self.reduce(node, self.L.GlobalAveragePooling2D)

    def op_ReduceMax(self, node: Any) -> None:  # noqa: N802
        self.reduce(node, self.L.GlobalMaxPooling2D)

    def to_2d(self, node: Any, x: _Act) -> None:
        if len(x.shape) == 2:
            self.set(node, x)
            return
        if len(x.shape) != 4:
            raise self.fail(node, f"flattening a {len(x.shape)}-D tensor is not supported")
        n = int(np.prod(x.shape[1:]))
        y = self.L.Reshape((n,), name=self.name(node))(x.t)
        self.set(node, _Act(y, (1, n), self.flatten_order(x.shape), x.nonneg))

    def op_Flatten(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        axis = int(_attrs(node).get("axis", 1))
        if len(x.shape) < 2 or axis % len(x.shape) != 1:
            raise self.fail(node, f"axis {axis} is not supported (axis 1, keeping the batch, is)")
        self.to_2d(node, x)

    def op_Reshape(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        target = [int(v) for v in self.const(node, 1, "shape").ravel()]
        if not _attrs(node).get("allowzero", 0):
            target = [x.shape[i] if v == 0 and i < len(x.shape) else v for i, v in enumerate(target)]
        size = int(np.prod(x.shape))
        if target.count(-1) == 1:
            known = int(np.prod([v for v in target if v != -1]))
            target[target.index(-1)] = size // known if known else 0
        if int(np.prod(target)) != size:
            raise self.fail(node, f"shape {target} does not hold the input's {size} values")
        if len(target) == 2 and target[0] == 1:
            self.to_2d(node, x)
        elif tuple(target) == x.shape:
            self.set(node, x)
        else:
            raise self.fail(node, f"reshaping {list(x.shape)} to {target} is not supported (only flattening to "
                                  "(N, -1) is)")

    def op_Squeeze(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        axes = self.const(node, 1, "axes", required=False)
        axes = sorted(int(v) % len(x.shape) for v in axes.ravel()) if axes is not None else \
            [i for i, v in enumerate(x.shape) if v == 1 and i > 0]
        if len(x.shape) == 4 and axes == [2, 3] and x.shape[2:] == (1, 1):
            self.to_2d(node, x)
        else:
            raise self.fail(node, f"squeezing axes {axes} of {list(x.shape)} is not supported (the 1x1 spatial "
                                  "axes of a pooled map are)")

    def op_Concat(self, node: Any) -> None:  # noqa: N802
        xs = [self.act(node, i) for i in range(len(node.input))]
        r = len(xs[0].shape)
        axis = int(_attrs(node)["axis"]) % r
        if axis != 1 or any(len(x.shape) != r for x in xs) or (r == 2 and any(x.order is not None for x in xs)):
            raise self.fail(node, f"concatenating along axis {axis} is not supported (along channels, axis 1, of "
                                  "(N, C, H, W) or (N, F) tensors is)")
        if any(x.shape[2:] != xs[0].shape[2:] for x in xs):
            raise self.fail(node, "its inputs differ in height or width")
        y = self.L.Concatenate(axis=-1, name=self.name(node))([x.t for x in xs])
        c = sum(x.shape[1] for x in xs)
        self.set(node, _Act(y, (1, c, *xs[0].shape[2:]), None, all(x.nonneg for x in xs)))

    def op_Softmax(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        axis = int(_attrs(node).get("axis", -1)) % len(x.shape)
        if len(x.shape) not in (2, 4) or axis != 1:
            raise self.fail(node, f"softmax over axis {axis} of {list(x.shape)} is not supported (over the "
                                  "features of (N, F), or the channels of (N, C, H, W), is)")
        y = self.L.Softmax(axis=-1, name=self.name(node))(x.t)
        self.set(node, _Act(y, x.shape, x.order, True))

    def op_Pad(self, node: Any) -> None:  # noqa: N802
        x = self.act(node)
        a = _attrs(node)
        if a.get("mode", "constant") != "constant":
            raise self.fail(node, f"mode '{a['mode']}' is not supported (constant zero padding is)")
        pads = [int(v) for v in self.const(node, 1, "pads").ravel()]
        value = self.const(node, 2, "constant value", required=False)
        axes = self.const(node, 3, "axes", required=False)
        r = len(x.shape)
        full = [0] * (2 * r)
        ax = [int(v) % r for v in axes.ravel()] if axes is not None else list(range(r))
        for j, axis in enumerate(ax):
            full[axis], full[axis + r] = pads[j], pads[j + len(ax)]
        if value is not None and value.size and float(value.ravel()[0]) != 0.0:
            raise self.fail(node, f"padding with {float(value.ravel()[0]):g} is not supported (with zeros is)")
        if r != 4 or any(full[i] or full[i + 4] for i in (0, 1)) or min(full) < 0:
            raise self.fail(node, f"pads {pads} are not supported (non-negative padding of H and W of "
                                  "(N, C, H, W) is)")
        y = self.zero_pad(node, x, (full[2], full[3], full[6], full[7]), suffix="")
        self.set(node, _Act(y, (1, x.shape[1], x.shape[2] + full[2] + full[6], x.shape[3] + full[3] + full[7]),
                            None, x.nonneg))

    def op_Identity(self, node: Any) -> None:  # noqa: N802
        self.set(node, self.act(node))

    def op_Dropout(self, node: Any) -> None:  # noqa: N802
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "the mask output is not supported; export the model in eval() mode")
        self.set(node, self.act(node))

    # -- the walk --------------------------------------------------------------------------------------
    def evaluate(self, node: Any) -> None:
        """A node whose inputs are all constants: computed now (onnx's reference implementation)."""
        from onnx.reference import ReferenceEvaluator

        ins = [i for i in node.input if i]
        try:
            ev = ReferenceEvaluator(node, opsets={"": self.info.opset})
            outs = ev.run(None, {n: self.consts[n] for n in ins})
        except Exception as exc:
            raise self.fail(node, f"its constant inputs could not be evaluated ({str(exc)[:200]})") from None
        for name, v in zip(node.output, outs, strict=False):
            if name:
                v = np.asarray(v)
                self.consts[name] = v.astype(np.float32) if v.dtype.kind == "f" else v

    def run(self) -> Converted:
        keras = self.keras
        shape = self.info.c_shape
        inp = keras.Input(shape, name="input")
        self.acts[self.info.input_name] = _Act(inp, (1, *self.info.input_shape))
        for node in self.m.graph.node:  # constants first: a folded BatchNormalization may read one made later
            if node.op_type == "Constant":
                self.evaluate(node)
        for node in self.m.graph.node:
            if node.op_type == "Constant":
                continue
            if node.output[0] in self.absorbed:
                continue
            ins = [i for i in node.input if i]
            if node.op_type == "Shape" and ins and ins[0] in self.acts:
                a = _attrs(node)
                dims = np.array(self.acts[ins[0]].shape, np.int64)
                self.consts[node.output[0]] = dims[a.get("start", 0):a.get("end", len(dims))]
            elif node.op_type == "Size" and ins and ins[0] in self.acts:
                self.consts[node.output[0]] = np.array(int(np.prod(self.acts[ins[0]].shape)), np.int64)
            elif all(i in self.consts for i in ins):
                self.evaluate(node)
            elif node.op_type in SUPPORTED_OPS:
                getattr(self, f"op_{node.op_type}")(node)
            else:
                raise self.fail(node, "is supported only on constants (shape arithmetic), not on computed tensors. "
                                      f"Supported ops: {supported_ops()}")
        out_name = self.m.graph.output[0].name
        if out_name not in self.acts:
            raise LwcnnError(f"{self.src}: the output '{out_name}' is a constant; there is nothing to compile")
        y = self.acts[out_name]
        if len(y.shape) == 2 and y.order is not None:
            raise LwcnnError(f"{self.src}: the output '{out_name}' is a flattened C x H x W map, which lwcnn-mcu "
                             "keeps in H x W x C order; end the model with a Linear (Gemm) layer or output the map")
        if len(y.shape) not in (2, 4):
            raise LwcnnError(f"{self.src}: the output '{out_name}' has {len(y.shape)} dimensions (2 or 4 are "
                             "supported)")
        name = re.sub(r"[^A-Za-z0-9_]", "_", self.info.path.stem) or "onnx_model"
        model = keras.Model(inp, y.t, name=name if name[0].isalpha() else f"m_{name}")
        return Converted(model, self.info, tuple(self.layer_names))


def convert(path: Path) -> Converted:
    """The ONNX model at ``path`` as an equivalent Keras model (NHWC), with every check done first."""
    m, info = load(path)
    with capture_fd2():
        return _Converter(m, info).run()


def session(info: OnnxInfo) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(info.proto, so, providers=["CPUExecutionProvider"])


def predict(info: OnnxInfo, x: np.ndarray, sess: Any = None) -> np.ndarray:
    """onnxruntime on the float ONNX model. ``x`` is in the compiled model's layout (NHWC images); the
    result is (N, outputs) in the compiled model's output order (NHWC for a 4-D output)."""
    sess = sess or session(info)
    xo = info.to_onnx_layout(np.asarray(x, np.float32))
    step = 256 if info.batch_dynamic else 1
    outs = []
    for i in range(0, len(xo), step):
        y = np.asarray(sess.run(None, {info.input_name: xo[i:i + step]})[0])
        if y.ndim == 4:
            y = y.transpose(0, 2, 3, 1)
        outs.append(y.reshape(len(xo[i:i + step]), -1))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def check_conversion(conv: Converted, x: np.ndarray, n: int = 16) -> float:
    """The converted Keras model against onnxruntime on ``n`` inputs (NHWC); a difference beyond float
    rounding is a bug in this converter."""
    x = x[:n]
    want = predict(conv.info, x)
    got = np.asarray(conv.keras(x, training=False)).reshape(len(x), -1)
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    tol = 1e-3 * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    if not diff <= tol:
        raise RuntimeError(f"{conv.info.path}: the Keras model converted from ONNX differs from onnxruntime by "
                           f"{diff:g} (tolerance {tol:g}) on the calibration inputs: a bug in lwcnn-mcu's ONNX "
                           "converter")
    return diff


def data_to_c_layout(x: Any, c_shape: tuple[int, ...], source: str, what: str = "calibration data") -> np.ndarray:
    """Inputs given for an .onnx model, in the model's own layout ((N, C, H, W) or (N, F), float32), checked
    and returned in the compiled model's layout (``c_shape``: (H, W, C) or (F,))."""
    from lwcnn_mcu.frontend import keras_model

    if len(c_shape) != 3:
        return keras_model.check_data(x, c_shape, source, what)
    h, w, c = c_shape
    if isinstance(x, np.ndarray) and x.ndim == 4 and tuple(x.shape[1:]) == (h, w, c) and (h, w, c) != (c, h, w):
        raise LwcnnError(f"{source}: {what} has shape {list(x.shape)}, which is NHWC; an .onnx model takes its "
                         f"inputs as it was exported, NCHW (N, {c}, {h}, {w}): give x.transpose(0, 3, 1, 2)")
    x = keras_model.check_data(x, (c, h, w), source, what)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def quantize(conv: Converted, calib: np.ndarray) -> bytes:
    """Check the conversion on the calibration inputs (NHWC) and quantize to a full-int8 .tflite."""
    from lwcnn_mcu.frontend import keras_model

    conv.info.conversion_max_abs_diff = check_conversion(conv, calib)
    return keras_model.quantize(conv.keras, calib)
