"""The compiler's intermediate representation: small frozen dataclasses with TFLite semantics.

A :class:`Graph` holds tensors (activations and constants, with shapes and int8 quantization
parameters) and ops in topological order. An op's fields mirror the TFLite builtin options, and
:meth:`Op.lower` computes the fixed-point constants of its quantization exactly as TFLite Micro's
``Prepare`` does (multipliers, shifts, offsets, clamps, window geometry). Nothing here knows the
target: kernel variants, flash layouts and scratch memory are the backend's
(:mod:`lwcnn_mcu.backend`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lwcnn_mcu import quant


@dataclass(frozen=True)
class QuantParams:
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0


@dataclass(frozen=True, eq=False)
class Tensor:
    id: int  # index of the tensor in the .tflite subgraph (used by traces)
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8" | "int32"
    quant: QuantParams | None
    data: np.ndarray | None = None  # constants only

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * (4 if self.dtype == "int32" else 1)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def scale(self) -> float:
        assert self.quant is not None
        return self.quant.scale[0]

    @property
    def zero_point(self) -> int:
        assert self.quant is not None
        return self.quant.zero_point[0]

    @property
    def nhwc(self) -> tuple[int, int, int]:
        """(H, W, C) of a 4-D batch-1 tensor, or (1, 1, N) of a 2-D one."""
        if len(self.shape) == 4:
            return self.shape[1], self.shape[2], self.shape[3]
        return 1, 1, self.size


@dataclass(frozen=True)
class Op:
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    lowered: Mapping[str, Any] = field(default_factory=dict, compare=False)
    opcode: str = ""  # the TFLite builtin it came from
    tflite_name: str = ""  # its output tensor's name in the .tflite (the converter's fused names)

    kind: ClassVar[str] = ""
    tflite_ops: ClassVar[tuple[str, ...]] = ()
    #: the output may be written over this input (index into inputs) when the input dies here
    INPLACE_INPUT: ClassVar[int | None] = None
    #: a binary op whose two inputs may be swapped without changing a byte (the frontend orders them)
    COMMUTATIVE: ClassVar[bool] = False

    def lower(self, g: Graph) -> Op:
        """Return a copy with the fixed-point constants of the C kernel computed."""
        return self

    def macs(self, g: Graph) -> int:
        """Multiply-accumulates (convolutions and dense layers only, as MLPerf Tiny counts them)."""
        return 0

    def params(self, g: Graph) -> int:
        return sum(g.t(i).size for i in self.inputs[1:] if i >= 0 and g.t(i).is_const)

    def _io(self, g: Graph) -> tuple[Tensor, Tensor]:
        return g.t(self.inputs[0]), g.t(self.outputs[0])


def _same_or_valid_pad(padding: str, in_size: int, k: int, stride: int, dil: int, out_size: int) -> int:
    """TFLite ComputePaddingHeightWidth: padding before (top/left); the extra goes after."""
    if padding == "VALID":
        return 0
    eff = (k - 1) * dil + 1
    pad = ((out_size - 1) * stride + eff - in_size) // 2
    return max(pad, 0)


def _window_lowering(g: Graph, op: Any, k_h: int, k_w: int, dil_h: int = 1, dil_w: int = 1) -> dict[str, int]:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    ih, iw, ic = x.nhwc
    oh, ow, oc = y.nhwc
    return {
        "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc,
        "k_h": k_h, "k_w": k_w, "stride_h": op.stride[0], "stride_w": op.stride[1],
        "pad_top": _same_or_valid_pad(op.padding, ih, k_h, op.stride[0], dil_h, oh),
        "pad_left": _same_or_valid_pad(op.padding, iw, k_w, op.stride[1], dil_w, ow),
    }


def _act(g: Graph, out: int, activation: str) -> dict[str, int]:
    y = g.t(out)
    lo, hi = quant.activation_range(activation, y.scale, y.zero_point)
    return {"act_min": lo, "act_max": hi}


@dataclass(frozen=True)
class Conv2D(Op):
    """CONV_2D: inputs (x, filter OHWI, bias int32 | -1)."""

    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    activation: str = "NONE"

    kind: ClassVar[str] = "conv"
    tflite_ops: ClassVar[tuple[str, ...]] = ("CONV_2D",)

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        w = g.t(self.inputs[1])
        oc, kh, kw, _ic = w.shape
        lw = _window_lowering(g, self, kh, kw, *self.dilation)
        mults, shifts = quant.conv_multipliers(x.scale, list(w.quant.scale), y.scale, oc)
        lw.update(dil_h=self.dilation[0], dil_w=self.dilation[1], in_offset=-x.zero_point,
                  out_offset=y.zero_point, mult=mults, shift=shifts, **_act(g, self.outputs[0], self.activation))
        return dataclasses.replace(self, lowered=lw)

    def macs(self, g: Graph) -> int:
        w = g.t(self.inputs[1])
        oh, ow, oc = g.t(self.outputs[0]).nhwc
        return oh * ow * oc * w.shape[1] * w.shape[2] * w.shape[3]


@dataclass(frozen=True)
class DepthwiseConv2D(Op):
    """DEPTHWISE_CONV_2D: inputs (x, filter 1HW(C*M), bias)."""

    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    activation: str = "NONE"
    depth_multiplier: int = 1

    kind: ClassVar[str] = "dwconv"
    tflite_ops: ClassVar[tuple[str, ...]] = ("DEPTHWISE_CONV_2D",)

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        w = g.t(self.inputs[1])
        _, kh, kw, oc = w.shape
        lw = _window_lowering(g, self, kh, kw, *self.dilation)
        mults, shifts = quant.conv_multipliers(x.scale, list(w.quant.scale), y.scale, oc)
        lw.update(dil_h=self.dilation[0], dil_w=self.dilation[1], depth_mult=oc // x.nhwc[2],
                  in_offset=-x.zero_point, out_offset=y.zero_point, mult=mults, shift=shifts,
                  **_act(g, self.outputs[0], self.activation))
        return dataclasses.replace(self, lowered=lw)

    def macs(self, g: Graph) -> int:
        w = g.t(self.inputs[1])
        oh, ow, oc = g.t(self.outputs[0]).nhwc
        return oh * ow * oc * w.shape[1] * w.shape[2]


@dataclass(frozen=True)
class FullyConnected(Op):
    """FULLY_CONNECTED: inputs (x, weights [out, in], bias | -1)."""

    activation: str = "NONE"

    kind: ClassVar[str] = "fc"
    tflite_ops: ClassVar[tuple[str, ...]] = ("FULLY_CONNECTED",)

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        w = g.t(self.inputs[1])
        mults, shifts = quant.conv_multipliers(x.scale, list(w.quant.scale), y.scale, w.shape[0])
        lw = {"in_n": w.shape[1], "out_n": w.shape[0], "in_offset": -x.zero_point,
              "out_offset": y.zero_point, "mult": mults, "shift": shifts,
              **_act(g, self.outputs[0], self.activation)}
        return dataclasses.replace(self, lowered=lw)

    def macs(self, g: Graph) -> int:
        w = g.t(self.inputs[1])
        return w.shape[0] * w.shape[1]


@dataclass(frozen=True)
class MaxPool2D(Op):
    filter: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: str = "VALID"
    activation: str = "NONE"

    kind: ClassVar[str] = "maxpool"
    tflite_ops: ClassVar[tuple[str, ...]] = ("MAX_POOL_2D",)

    def lower(self, g: Graph) -> Op:
        lw = _window_lowering(g, self, *self.filter)
        lw.update(_act(g, self.outputs[0], self.activation))
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class AvgPool2D(MaxPool2D):
    kind: ClassVar[str] = "avgpool"
    tflite_ops: ClassVar[tuple[str, ...]] = ("AVERAGE_POOL_2D",)


@dataclass(frozen=True)
class ConvPool(Op):
    """A CONV_2D whose only consumer is a MAX_POOL_2D or AVERAGE_POOL_2D, fused (made by the
    ``fuse_pooling`` pass): each pooled output is computed straight from the convolution outputs
    in its window, so the full-size convolution output never exists in RAM. Bit-exact: pooling
    sees exactly the requantized, clamped int8 values the separate ops would have produced."""

    conv: Conv2D | None = None
    pool: MaxPool2D | None = None

    kind: ClassVar[str] = "convpool"

    def lower(self, g: Graph) -> Op:
        assert self.conv is not None and self.pool is not None
        c, p = dict(self.conv.lowered), self.pool.lowered
        c.update(pool_avg=1 if isinstance(self.pool, AvgPool2D) else 0, pool_h=p["k_h"], pool_w=p["k_w"],
                 pool_stride_h=p["stride_h"], pool_stride_w=p["stride_w"], pool_pad_top=p["pad_top"],
                 pool_pad_left=p["pad_left"], pool_out_h=p["out_h"], pool_out_w=p["out_w"],
                 pool_act_min=p["act_min"], pool_act_max=p["act_max"])
        return dataclasses.replace(self, lowered=c)

    def macs(self, g: Graph) -> int:
        lw = self.lowered
        return lw["out_h"] * lw["out_w"] * lw["out_c"] * lw["k_h"] * lw["k_w"] * lw["in_c"]


@dataclass(frozen=True)
class Mean(Op):
    """MEAN over H and W of a 4-D tensor (GlobalAveragePooling2D)."""

    axes: tuple[int, ...] = (1, 2)

    kind: ClassVar[str] = "mean"
    tflite_ops: ClassVar[tuple[str, ...]] = ("MEAN",)

    def lower(self, g: Graph) -> Op:
        # TFLite Micro's EvalIntegerMean always takes QuantizedMeanOrSum (even for equal params).
        x, y = self._io(g)
        h, w, c = x.nhwc
        mult, shift = quant.mean_params(x.scale, y.scale, h * w)
        lw = {"count": h * w, "channels": c, "in_zp": x.zero_point, "out_zp": y.zero_point,
              "mult": mult, "shift": shift}
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class ReduceMax(Op):
    """REDUCE_MAX over H and W of a 4-D tensor (GlobalMaxPooling2D)."""

    axes: tuple[int, ...] = (1, 2)

    kind: ClassVar[str] = "reducemax"
    tflite_ops: ClassVar[tuple[str, ...]] = ("REDUCE_MAX",)

    def lower(self, g: Graph) -> Op:
        h, w, c = g.t(self.inputs[0]).nhwc
        return dataclasses.replace(self, lowered={"count": h * w, "channels": c})


#: loops of a broadcasting elementwise kernel (lw_add_s8, lw_mul_s8, lw_maxmin_s8)
BROADCAST_LOOPS = 4


def broadcast_loops(a: tuple[int, ...], b: tuple[int, ...], y: tuple[int, ...]) -> dict[str, int]:
    """NumPy broadcasting of inputs shaped ``a`` and ``b`` to the output ``y``, as the elementwise
    kernels run it: four nested loops over the output in memory order, n0 outermost, n3 innermost
    (``n3`` elements per row), and per loop how far each input's pointer moves per step
    (``in1_s0..in1_s3``, ``in2_s0..in2_s3``, in elements; 0 where that input is broadcast).

    Shapes are right-aligned (missing leading dimensions are 1), and neighbouring dimensions are merged
    into one loop where both inputs step through them alike (both contiguously, or both not at all),
    as TFLite Micro's BroadcastBinaryOpSimple merges them: same-shape inputs are one row of the whole
    size with strides 1 (the contiguous path), a scalar is stride 0, ``[1,1,1,C] x [1,H,W,C]`` is H*W
    rows of C. Which loop an element is computed in does not change its value: every output element
    is the same function of its two input elements. Raises ValueError when the shapes do not broadcast
    to ``y`` or need more than BROADCAST_LOOPS loops."""
    rank = max(len(a), len(b), len(y))
    ea, eb, ey = ((1,) * (rank - len(s)) + tuple(s) for s in (a, b, y))
    for i in range(rank):
        if any(d not in (1, ey[i]) for d in (ea[i], eb[i])) or ey[i] != max(ea[i], eb[i]):
            raise ValueError(f"shapes {list(a)} and {list(b)} do not broadcast to {list(y)}")
    loops: list[list[int]] = []  # [extent, stride of a, stride of b], innermost first
    acc_a = acc_b = 1
    for i in reversed(range(rank)):
        if ey[i] == 1:
            continue  # an extent-1 dimension is no loop at all
        sa = 0 if ea[i] == 1 else acc_a
        sb = 0 if eb[i] == 1 else acc_b
        if loops:
            n, la, lb = loops[-1]
            if sa == la * n and sb == lb * n:  # a continues the last loop (both 0 included)
                loops[-1][0] *= ey[i]
                acc_a, acc_b = acc_a * ea[i], acc_b * eb[i]
                continue
        loops.append([ey[i], sa, sb])
        acc_a, acc_b = acc_a * ea[i], acc_b * eb[i]
    if len(loops) > BROADCAST_LOOPS:
        raise ValueError(f"broadcasting {list(a)} with {list(b)} needs {len(loops)} nested loops; the kernels "
                         f"run at most {BROADCAST_LOOPS}")
    loops += [[1, 0, 0]] * (BROADCAST_LOOPS - len(loops))
    out: dict[str, int] = {"size": int(np.prod(ey)) if ey else 1}
    for k, (n, sa, sb) in enumerate(reversed(loops)):
        out.update({f"n{k}": n, f"in1_s{k}": sa, f"in2_s{k}": sb})
    return out


def _broadcast(g: Graph, op: Op) -> dict[str, int]:
    return broadcast_loops(g.t(op.inputs[0]).shape, g.t(op.inputs[1]).shape, g.t(op.outputs[0]).shape)


@dataclass(frozen=True)
class Add(Op):
    """ADD, with broadcasting (:func:`broadcast_loops`): both inputs rescaled to twice the larger input
    scale with 20 bits of headroom, summed, requantized (TFLite Micro's AddFunc, the same function on
    its same-shape and broadcast paths); Prepare computes the multipliers in double."""

    activation: str = "NONE"

    kind: ClassVar[str] = "add"
    tflite_ops: ClassVar[tuple[str, ...]] = ("ADD",)
    INPLACE_INPUT: ClassVar[int | None] = 0
    COMMUTATIVE: ClassVar[bool] = True  # the frontend may swap the inputs (same bytes)

    def lower(self, g: Graph) -> Op:
        a, b, y = g.t(self.inputs[0]), g.t(self.inputs[1]), g.t(self.outputs[0])
        lw: dict[str, Any] = quant.add_params(a.scale, b.scale, y.scale)
        lw.update(in1_offset=-a.zero_point, in2_offset=-b.zero_point, out_offset=y.zero_point,
                  subtract=int(isinstance(self, Sub)), **_broadcast(g, self),
                  **_act(g, self.outputs[0], self.activation))
        return dataclasses.replace(self, lowered=lw)

    def params(self, g: Graph) -> int:
        return 0


@dataclass(frozen=True)
class Sub(Add):
    """SUB: ADD's arithmetic with the second scaled input subtracted (TFLite Micro's SubElementwise /
    BroadcastQuantSubSlow), and ADD's Prepare: the multipliers computed in double. (One tflite-micro
    version's sub_common.cc computes them in float32; the pinned package does not, checked on all 65536
    input code pairs: tests/test_ops.py::test_binary_all_code_pairs.)"""

    tflite_ops: ClassVar[tuple[str, ...]] = ("SUB",)
    COMMUTATIVE: ClassVar[bool] = False


@dataclass(frozen=True)
class Mul(Op):
    """MUL, with broadcasting (:func:`broadcast_loops`): (a + offset1) * (b + offset2) requantized by
    s1*s2/so (TFLite Micro's MulElementwise and BroadcastMul6DSlow compute the same function).
    Rescaling with an offset becomes MUL + ADD; a squeeze-and-excitation block ends in a MUL of the
    feature map by a per-channel [1,1,1,C] gate."""

    activation: str = "NONE"

    kind: ClassVar[str] = "mul"
    tflite_ops: ClassVar[tuple[str, ...]] = ("MUL",)
    INPLACE_INPUT: ClassVar[int | None] = 0
    COMMUTATIVE: ClassVar[bool] = True

    def lower(self, g: Graph) -> Op:
        a, b, y = g.t(self.inputs[0]), g.t(self.inputs[1]), g.t(self.outputs[0])
        mult, shift = quant.quantize_multiplier(float(a.scale) * float(b.scale) / float(y.scale))
        lw = {"in1_offset": -a.zero_point, "in2_offset": -b.zero_point, "out_offset": y.zero_point,
              "mult": mult, "shift": shift, **_broadcast(g, self), **_act(g, self.outputs[0], self.activation)}
        return dataclasses.replace(self, lowered=lw)

    def params(self, g: Graph) -> int:
        return 0


@dataclass(frozen=True)
class Maximum(Op):
    """MAXIMUM, with broadcasting (:func:`broadcast_loops`). TFLite Micro compares the int8 codes and
    writes the larger one, with no Prepare and no requantization: that is the larger value only when
    both inputs have the output's scale and zero point (the frontend refuses anything else)."""

    kind: ClassVar[str] = "maxmin"
    tflite_ops: ClassVar[tuple[str, ...]] = ("MAXIMUM",)
    INPLACE_INPUT: ClassVar[int | None] = 0
    COMMUTATIVE: ClassVar[bool] = True

    def lower(self, g: Graph) -> Op:
        return dataclasses.replace(self, lowered={"maximum": int(not isinstance(self, Minimum)),
                                                  **_broadcast(g, self)})

    def params(self, g: Graph) -> int:
        return 0


@dataclass(frozen=True)
class Minimum(Maximum):
    """MINIMUM: as MAXIMUM, the smaller code."""

    tflite_ops: ClassVar[tuple[str, ...]] = ("MINIMUM",)


@dataclass(frozen=True)
class Concatenation(Op):
    """CONCATENATION along any axis: each input copies its chunk into every outer slice."""

    axis: int = -1

    kind: ClassVar[str] = "concat"
    tflite_ops: ClassVar[tuple[str, ...]] = ("CONCATENATION",)

    def lower(self, g: Graph) -> Op:
        y = g.t(self.outputs[0])
        axis = self.axis % len(y.shape)
        outer = int(np.prod(y.shape[:axis])) if axis else 1
        inner = int(np.prod(y.shape[axis + 1:])) if axis + 1 < len(y.shape) else 1
        chunks = [g.t(i).shape[axis] * inner for i in self.inputs]
        offsets = [sum(chunks[:k]) for k in range(len(chunks))]
        return dataclasses.replace(self, lowered={"outer": outer, "out_chunk": sum(chunks), "chunks": chunks,
                                                  "offsets": offsets})


@dataclass(frozen=True)
class Pad(Op):
    """PAD / PADV2 of a 4-D NHWC tensor (batch and channel padding included)."""

    paddings: tuple[tuple[int, int], ...] = ()
    value: int | None = None  # None: the output zero point

    kind: ClassVar[str] = "pad"
    tflite_ops: ClassVar[tuple[str, ...]] = ("PAD", "PADV2")

    def params(self, g: Graph) -> int:
        return 0

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        p = list(self.paddings)
        while len(p) < 4:
            p.insert(0, (0, 0))
        ih, iw, ic = x.nhwc
        oh, ow, oc = y.nhwc
        lw = {"in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc,
              "pad_top": p[1][0], "pad_left": p[2][0], "pad_front": p[3][0],
              "value": y.zero_point if self.value is None else self.value}
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class Reshape(Op):
    """RESHAPE: the same bytes under another shape; the planner makes it free."""

    kind: ClassVar[str] = "reshape"
    tflite_ops: ClassVar[tuple[str, ...]] = ("RESHAPE",)

    def params(self, g: Graph) -> int:
        return 0

    def lower(self, g: Graph) -> Op:
        return dataclasses.replace(self, lowered={"size": g.t(self.outputs[0]).size})


@dataclass(frozen=True)
class Softmax(Op):
    beta: float = 1.0

    kind: ClassVar[str] = "softmax"
    tflite_ops: ClassVar[tuple[str, ...]] = ("SOFTMAX",)
    INPLACE_INPUT: ClassVar[int | None] = 0

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        mult, left_shift, diff_min = quant.softmax_params(self.beta, x.scale)
        depth = x.shape[-1]
        lw = {"rows": x.size // depth, "depth": depth, "mult": mult, "left_shift": left_shift,
              "diff_min": diff_min}
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class Requantize(Op):
    """QUANTIZE int8 -> int8 (new scale and zero point)."""

    kind: ClassVar[str] = "requant"
    tflite_ops: ClassVar[tuple[str, ...]] = ("QUANTIZE",)
    INPLACE_INPUT: ClassVar[int | None] = 0

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        mult, shift = quant.quantize_multiplier(float(x.scale) / float(y.scale))
        lw = {"size": x.size, "in_zp": x.zero_point, "out_zp": y.zero_point, "mult": mult, "shift": shift,
              "act_min": -128, "act_max": 127}
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class Relu(Requantize):
    """RELU / RELU6 as a separate op.

    RELU (TFLite Micro's ReluQuantized): a requantization from the input to the output scale, clamped
    at the output's zero. RELU6 (Relu6Quantized) does not requantize at all: it clamps the input codes
    to [input zero point, FloatToQuantizedType(6, input scale, input zero point)] and writes them as
    they are, whatever the output's quantization says; here that is an identity requantization
    (multiplier 1.0: 2^30 with shift 1, offsets 0) with that clamp."""

    max_value: float | None = None  # 6.0 for RELU6

    tflite_ops: ClassVar[tuple[str, ...]] = ("RELU", "RELU6")

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        lowered = dict(super().lower(g).lowered)
        if self.max_value is None:
            lowered["act_min"] = max(-128, y.zero_point + quant.round_half_away(float(quant.f32(0.0))))
            return dataclasses.replace(self, lowered=lowered)
        six = x.zero_point + quant.round_half_away(float(quant.f32(self.max_value) / quant.f32(x.scale)))
        lowered.update(in_zp=0, out_zp=0, mult=1 << 30, shift=1, act_min=max(-128, min(127, x.zero_point)),
                       act_max=max(-128, min(127, six)))
        return dataclasses.replace(self, lowered=lowered)


#: Every op the compiler accepts, in one list: frontend, templates, docs and tests are built from it.
OP_CLASSES: tuple[type[Op], ...] = (Conv2D, DepthwiseConv2D, FullyConnected, MaxPool2D, AvgPool2D, ConvPool, Mean,
                                    ReduceMax, Add, Sub, Mul, Maximum, Minimum, Concatenation, Pad, Reshape, Softmax,
                                    Requantize, Relu)


@dataclass(frozen=True)
class Graph:
    name: str
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    model_hash: str = ""
    keras_layers: tuple[str, ...] = ()  # the Keras model's layer names, when it came from one

    def t(self, tid: int) -> Tensor:
        return self._index[tid]

    @property
    def _index(self) -> dict[int, Tensor]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {t.id: t for t in self.tensors}
            object.__setattr__(self, "_idx", idx)
        return idx

    @property
    def input(self) -> Tensor:
        return self.t(self.inputs[0])

    @property
    def output(self) -> Tensor:
        return self.t(self.outputs[0])

    def consumers(self, tid: int) -> list[int]:
        return [i for i, op in enumerate(self.ops) if tid in op.inputs]

    def producer(self, tid: int) -> int | None:
        for i, op in enumerate(self.ops):
            if tid in op.outputs:
                return i
        return None

    def replace(self, **kw: Any) -> Graph:
        return dataclasses.replace(self, **kw)
