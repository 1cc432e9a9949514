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
import math
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
    dtype: str  # "int8" | "int32" | "uint8" | "float32" (the last two only at a model's edges)
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
        """(H, W, C) of a 4-D batch-1 tensor, (1, T, C) of a 3-D (N, T, C) one (a 1-D signal is a
        one-row image, as the converter reshapes it for Conv1D), or (1, 1, N) of a 2-D one."""
        if len(self.shape) == 4:
            return self.shape[1], self.shape[2], self.shape[3]
        if len(self.shape) == 3:
            return 1, self.shape[1], self.shape[2]
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


def reduce_extents(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(outer, count, inner) of a reduction over ``axes`` (resolved, sorted): the input read as
    outer x count x inner with the reduced values of one output ``inner`` apart. None when the
    reduced axes are not one contiguous block once dimensions of size 1 are left out."""
    kept = [a for a in range(len(shape)) if shape[a] != 1]
    red = [a for a in kept if a in axes]
    if red and [a for a in kept if red[0] <= a <= red[-1]] != red:
        return None
    first = red[0] if red else len(shape)
    last = red[-1] if red else len(shape) - 1
    return (int(np.prod(shape[:first], dtype=np.int64)), int(np.prod([shape[a] for a in red], dtype=np.int64)),
            int(np.prod(shape[last + 1:], dtype=np.int64)))


@dataclass(frozen=True)
class Mean(Op):
    """MEAN over any axes that form one contiguous block of the input (H and W of NHWC for
    GlobalAveragePooling2D, T of (N, T, C) for GlobalAveragePooling1D, the channels for a
    channels_first pooling), with or without keep_dims (the output's shape says which)."""

    axes: tuple[int, ...] = (1, 2)

    kind: ClassVar[str] = "mean"
    tflite_ops: ClassVar[tuple[str, ...]] = ("MEAN",)

    def lower(self, g: Graph) -> Op:
        # TFLite Micro's EvalIntegerMean takes QuantizedMeanOrSum for every int8 MEAN (whatever the
        # axes, keep_dims, or equal input and output quantization; checked against the package):
        # sum, remove count * zero point, one requantization with 1/count folded into the multiplier.
        x, y = self._io(g)
        ext = reduce_extents(x.shape, self.axes)
        assert ext is not None, "the frontend refuses non-contiguous reduction axes"
        outer, count, inner = ext
        mult, shift = quant.mean_params(x.scale, y.scale, count)
        lw = {"outer": outer, "count": count, "channels": inner, "in_zp": x.zero_point, "out_zp": y.zero_point,
              "mult": mult, "shift": shift}
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class ReduceMax(Op):
    """REDUCE_MAX over any axes that form one contiguous block of the input (GlobalMaxPooling1D/2D,
    channels_first too); input and output share scale and zero point (TFLite Micro requires it)."""

    axes: tuple[int, ...] = (1, 2)

    kind: ClassVar[str] = "reducemax"
    tflite_ops: ClassVar[tuple[str, ...]] = ("REDUCE_MAX",)

    def lower(self, g: Graph) -> Op:
        ext = reduce_extents(g.t(self.inputs[0]).shape, self.axes)
        assert ext is not None, "the frontend refuses non-contiguous reduction axes"
        outer, count, inner = ext
        return dataclasses.replace(self, lowered={"outer": outer, "count": count, "channels": inner})


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
    """RESHAPE, SQUEEZE, EXPAND_DIMS: the same bytes under another shape; the planner makes it free."""

    kind: ClassVar[str] = "reshape"
    tflite_ops: ClassVar[tuple[str, ...]] = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")

    def params(self, g: Graph) -> int:
        return 0

    def lower(self, g: Graph) -> Op:
        return dataclasses.replace(self, lowered={"size": g.t(self.outputs[0]).size})


@dataclass(frozen=True)
class StridedSlice(Op):
    """STRIDED_SLICE with constant begin/end/strides (positive strides; begin, end and
    shrink_axis masks; offset) of a tensor of rank <= 4: the output is a strided window of the
    input, copied byte for byte (TFLite Micro requantizes nothing). ``lower`` resolves every axis
    as TFLite's StridedSliceStartForAxis / StridedSliceEndForAxis do and turns the window into a
    start offset plus four (count, step) pairs over the input's bytes."""

    begin: tuple[int, ...] = ()
    end: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    begin_mask: int = 0
    end_mask: int = 0
    shrink_axis_mask: int = 0
    offset: bool = False

    kind: ClassVar[str] = "slice"
    tflite_ops: ClassVar[tuple[str, ...]] = ("STRIDED_SLICE",)

    def params(self, g: Graph) -> int:
        return 0

    def window(self, shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """(start, count, stride) of every axis."""
        out = []
        for a, size in enumerate(shape):
            stride = self.strides[a]
            start = self.begin[a] + size if self.begin[a] < 0 else self.begin[a]
            start = min(max(start, 0), size)
            if self.begin_mask >> a & 1:
                start = 0
            if self.shrink_axis_mask >> a & 1:
                stop = start if start >= size else start + 1
            else:
                stop = self.end[a] + (start if self.offset else 0)
                stop = stop + size if stop < 0 else stop
                stop = min(max(stop, 0), size)
                if self.end_mask >> a & 1:
                    stop = size
            out.append((start, max(0, -(-(stop - start) // stride)), stride))
        return out

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        win = self.window(x.shape)
        elem = [int(np.prod(x.shape[a + 1:], dtype=np.int64)) for a in range(len(x.shape))]
        counts = [c for _, c, _ in win]
        assert int(np.prod(counts)) == y.size, "the frontend checks that the window fills the output"
        steps = [s * e for (_, _, s), e in zip(win, elem, strict=True)]
        counts, steps = [1] * (4 - len(counts)) + counts, [0] * (4 - len(steps)) + steps
        lw: dict[str, int] = {"start": sum(b * e for (b, _, _), e in zip(win, elem, strict=True))}
        lw.update({f"size{a}": counts[a] for a in range(4)})
        lw.update({f"step{a}": steps[a] for a in range(4)})
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class Slice(StridedSlice):
    """SLICE (constant begin and size; size -1: to the end of the axis), as TFLite Micro's
    GetBeginAndSizeVectors reads it: a StridedSlice with unit strides and no masks."""

    tflite_ops: ClassVar[tuple[str, ...]] = ("SLICE",)


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


@dataclass(frozen=True)
class Lut(Op):
    """An int8 activation of one input: 256 input codes, 256 output codes. ``lower()`` runs TFLite
    Micro's int8 kernel (emulated exactly in :mod:`lwcnn_mcu.quant`) on every code once and keeps the
    answers as ``table`` (outputs for inputs -128..127); the target only looks them up."""

    kind: ClassVar[str] = "lut"
    INPLACE_INPUT: ClassVar[int | None] = 0
    #: the TFLite Micro function the table reproduces (for the flash array's comment)
    FUNCTION: ClassVar[str] = ""

    def table(self, x: Tensor, y: Tensor) -> np.ndarray:
        raise NotImplementedError

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        table = [int(v) for v in self.table(x, y)]
        return dataclasses.replace(self, lowered={"size": x.size, "table": table})

    def params(self, g: Graph) -> int:
        return 0


@dataclass(frozen=True)
class Logistic(Lut):
    """LOGISTIC (sigmoid): gemmlowp fixed-point logistic on the input rescaled to Q4.27; the output is
    always scale 1/256, zero point -128 (TFLite Micro checks the zero point)."""

    tflite_ops: ClassVar[tuple[str, ...]] = ("LOGISTIC",)
    FUNCTION: ClassVar[str] = "reference_integer_ops::Logistic"

    def table(self, x: Tensor, y: Tensor) -> np.ndarray:
        return quant.logistic_table(x.scale, x.zero_point)


@dataclass(frozen=True)
class Tanh(Lut):
    """TANH: gemmlowp fixed-point tanh on the input rescaled to Q4.27; the output is scale 1/128,
    zero point 0 whatever the output tensor says (TFLite Micro's int8 kernel ignores it)."""

    tflite_ops: ClassVar[tuple[str, ...]] = ("TANH",)
    FUNCTION: ClassVar[str] = "reference_integer_ops::Tanh"

    def table(self, x: Tensor, y: Tensor) -> np.ndarray:
        return quant.tanh_table(x.scale, x.zero_point)


@dataclass(frozen=True)
class HardSwish(Lut):
    """HARD_SWISH (hard_silu): x * relu6(x + 3) / 6 in int16 fixed point (reference_ops::HardSwish)."""

    tflite_ops: ClassVar[tuple[str, ...]] = ("HARD_SWISH",)
    FUNCTION: ClassVar[str] = "reference_ops::HardSwish"

    def table(self, x: Tensor, y: Tensor) -> np.ndarray:
        return quant.hard_swish_table(x.scale, x.zero_point, y.scale, y.zero_point)


@dataclass(frozen=True)
class LeakyRelu(Lut):
    """LEAKY_RELU: requantized by in_scale/out_scale at or above the input zero point, by
    in_scale*alpha/out_scale below (reference_ops::QuantizeLeakyRelu)."""

    alpha: float = 0.0  # LeakyReluOptions.alpha (the schema default when absent)

    tflite_ops: ClassVar[tuple[str, ...]] = ("LEAKY_RELU",)
    FUNCTION: ClassVar[str] = "reference_ops::QuantizeLeakyRelu"

    def table(self, x: Tensor, y: Tensor) -> np.ndarray:
        return quant.leaky_relu_table(x.scale, x.zero_point, y.scale, y.zero_point, self.alpha)


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Element strides of a tensor of ``shape`` broadcast against ``out_shape`` (both at most 4-D,
    batch 1), for the output's last three dimensions (H, W, C): 0 where the tensor has size 1."""
    s = (1,) * (4 - len(shape)) + tuple(shape)
    o = (1,) * (4 - len(out_shape)) + tuple(out_shape)
    strides, step = [], 1
    for d in (3, 2, 1):
        strides.append(step if s[d] == o[d] else 0)
        step *= s[d]
    return strides[2], strides[1], strides[0]


@dataclass(frozen=True)
class Prelu(Op):
    """PRELU: inputs (x, alpha int8 constant broadcast against x). At or above the input zero point
    the input is requantized by in_scale/out_scale; below, (x - in_zp) * (alpha - alpha_zp) by
    in_scale*alpha_scale/out_scale (TFLite Micro's reference_ops::BroadcastPrelu4DSlow)."""

    kind: ClassVar[str] = "prelu"
    tflite_ops: ClassVar[tuple[str, ...]] = ("PRELU",)
    INPLACE_INPUT: ClassVar[int | None] = 0

    def lower(self, g: Graph) -> Op:
        x, alpha, y = g.t(self.inputs[0]), g.t(self.inputs[1]), g.t(self.outputs[0])
        m1, s1 = quant.quantize_multiplier(float(x.scale) / float(y.scale))
        m2, s2 = quant.quantize_multiplier(float(x.scale) * float(alpha.scale) / float(y.scale))
        o = (1,) * (4 - len(y.shape)) + tuple(y.shape)
        sh, sw, sc = broadcast_strides(alpha.shape, y.shape)
        lw = {"out_h": o[1], "out_w": o[2], "out_c": o[3], "alpha_stride_h": sh, "alpha_stride_w": sw,
              "alpha_stride_c": sc, "in_offset": -x.zero_point, "alpha_offset": -alpha.zero_point,
              "out_offset": y.zero_point, "pos_mult": m1, "pos_shift": s1, "neg_mult": m2, "neg_shift": s2}
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class Quantize(Op):
    """QUANTIZE at a model's edge: its float32 or uint8 input to the int8 core, or the core's int8
    output to uint8. Not a kernel: the frontend keeps it out of the ops (``Graph.edge_in`` /
    ``edge_out``) and the C API's ``NAME_invoke_<type>`` entry point does it, exactly as TFLite
    Micro's quantize kernel:

    * float32 -> int8 (AffineQuantize): round(x / scale) in float, halves away from zero, plus the
      zero point, clamped; the C prints ``scale`` and ``zero_point``;
    * uint8 -> int8 and int8 -> uint8 (Requantize): MultiplyByQuantizedMultiplier of (q - in zero
      point) by in_scale / out_scale, plus the out zero point, clamped: a 256-entry ``table``."""

    kind: ClassVar[str] = "quantize"
    tflite_ops: ClassVar[tuple[str, ...]] = ("QUANTIZE",)

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        if x.dtype == "float32":
            return dataclasses.replace(self, lowered={"scale": y.scale, "zero_point": y.zero_point})
        mult, shift = quant.quantize_multiplier(float(x.scale) / float(y.scale))
        lo, hi = (-128, 127) if y.dtype == "int8" else (0, 255)
        codes = range(-128, 128) if x.dtype == "int8" else range(256)
        table = [max(lo, min(hi, int(quant.mbqm(q - x.zero_point, mult, shift))
                             + y.zero_point)) for q in codes]
        return dataclasses.replace(self, lowered={"table": table})


@dataclass(frozen=True)
class Dequantize(Op):
    """DEQUANTIZE of the int8 core's output to float32 at the model's edge (done by the C API's
    ``NAME_invoke_float``): TFLite Micro computes (float)(double(scale) * (q - zero point)); with
    |q - zero point| <= 255 the double product is exact, so one float32 multiply gives the same float."""

    kind: ClassVar[str] = "dequantize"
    tflite_ops: ClassVar[tuple[str, ...]] = ("DEQUANTIZE",)

    def lower(self, g: Graph) -> Op:
        x, _ = self._io(g)
        return dataclasses.replace(self, lowered={"scale": x.scale, "zero_point": x.zero_point})


def _conv_out_size(padding: str, in_size: int, k: int, stride: int) -> int:
    """TFLite ComputeOutSize (dilation 1), with C's truncating division."""
    num = in_size + stride - 1 if padding == "SAME" else in_size + stride - k
    return int(num / stride)


@dataclass(frozen=True)
class TransposeConv(Op):
    """TRANSPOSE_CONV: inputs reordered to (x, filter OHWI, bias int32 | -1); the .tflite's first input,
    the output_shape tensor, is dropped (TFLite Micro ignores it too and takes the output tensor's shape).

    TFLite Micro's reference kernel scatters every input pixel times every kernel tap into an int32
    buffer of the whole output, then adds the bias and requantizes. The padding is that of a
    convolution from the transposed convolution's output back to its input (Prepare calls
    ComputePaddingHeightWidth with the output's height and width as the input size): pad_top/pad_left
    place input pixel (iy, ix) at output (iy * stride - pad_top + ky, ix * stride - pad_left + kx).
    Multipliers and shifts per output channel as for CONV_2D; the fused activation clamps (measured:
    the tflite-micro package honours RELU/RELU6 here)."""

    stride: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    activation: str = "NONE"

    kind: ClassVar[str] = "tconv"
    tflite_ops: ClassVar[tuple[str, ...]] = ("TRANSPOSE_CONV",)

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        w = g.t(self.inputs[1])
        oc, kh, kw, _ic = w.shape
        ih, iw, ic = x.nhwc
        oh, ow, _ = y.nhwc
        pads = []
        for out_size, k, s in ((oh, kh, self.stride[0]), (ow, kw, self.stride[1])):
            conv_out = _conv_out_size(self.padding, out_size, k, s)
            pads.append(max((conv_out - 1) * s + k - out_size, 0) // 2)
        mults, shifts = quant.conv_multipliers(x.scale, list(w.quant.scale), y.scale, oc)
        lw = {"in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc, "k_h": kh, "k_w": kw,
              "stride_h": self.stride[0], "stride_w": self.stride[1], "pad_top": pads[0], "pad_left": pads[1],
              "in_offset": -x.zero_point, "out_offset": y.zero_point, "mult": mults, "shift": shifts,
              **_act(g, self.outputs[0], self.activation)}
        return dataclasses.replace(self, lowered=lw)

    def macs(self, g: Graph) -> int:
        """The taps that land inside the output (the kernel skips the others, as TFLite Micro does)."""
        w = g.t(self.inputs[1])
        oc, kh, kw, ic = w.shape
        lw = self.lowered or self.lower(g).lowered

        def hits(n_in: int, n_out: int, k: int, s: int, pad: int) -> int:
            return sum(1 for i in range(n_in) for t in range(k) if 0 <= i * s - pad + t < n_out)

        return (hits(lw["in_h"], lw["out_h"], kh, lw["stride_h"], lw["pad_top"])
                * hits(lw["in_w"], lw["out_w"], kw, lw["stride_w"], lw["pad_left"]) * ic * oc)


def nearest_index(i: int, in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> int:
    """TFLite's GetNearestNeighbor in IEEE single precision, operation for operation: the scale
    (in - 1) / (out - 1) with align_corners (and out > 1), else in / out; (i + offset) * scale with
    offset 0.5 for half-pixel centers; rounded half away from zero with align_corners, else floored;
    clamped to in - 1 (and to 0 with half-pixel centers)."""
    f = np.float32
    if align_corners and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    v = (f(i) + f(0.5 if half_pixel_centers else 0.0)) * scale
    idx = quant.round_half_away(float(v)) if align_corners else math.floor(float(v))
    idx = min(idx, in_size - 1)
    return max(idx, 0) if half_pixel_centers else idx


@dataclass(frozen=True)
class ResizeNearest(Op):
    """RESIZE_NEAREST_NEIGHBOR of a 4-D NHWC tensor: a gather copy of int8 codes (TFLite Micro copies
    them whatever the output's quantization says). The source row of every output row and the source
    column of every output column are computed here (``nearest_index``), as element offsets into the
    input: ``row_offsets`` (in_y * in_w * C) and ``col_offsets`` (in_x * C)."""

    align_corners: bool = False
    half_pixel_centers: bool = False

    kind: ClassVar[str] = "resize_nearest"
    tflite_ops: ClassVar[tuple[str, ...]] = ("RESIZE_NEAREST_NEIGHBOR",)

    def params(self, g: Graph) -> int:
        return 0

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        ih, iw, c = x.nhwc
        oh, ow, _ = y.nhwc
        a, h = self.align_corners, self.half_pixel_centers
        lw = {"in_h": ih, "in_w": iw, "channels": c, "out_h": oh, "out_w": ow,
              "row_offsets": [nearest_index(i, ih, oh, a, h) * iw * c for i in range(oh)],
              "col_offsets": [nearest_index(i, iw, ow, a, h) * c for i in range(ow)]}
        return dataclasses.replace(self, lowered=lw)


#: The conversions at a model's edges (float32 / uint8 I/O around the int8 core): read by the
#: frontend into ``Graph.edge_in`` / ``edge_out`` (not ``Graph.ops``), lowered with the ops.
EDGE_CLASSES: tuple[type[Op], ...] = (Quantize, Dequantize)

#: Every op the compiler accepts, in one list: frontend, templates, docs and tests are built from it.
OP_CLASSES: tuple[type[Op], ...] = (Conv2D, DepthwiseConv2D, FullyConnected, MaxPool2D, AvgPool2D, ConvPool, Mean,
                                    ReduceMax, Add, Sub, Mul, Maximum, Minimum, Concatenation, Pad, Reshape,
                                    StridedSlice, Slice, Softmax, Requantize, Relu, Logistic, Tanh, HardSwish,
                                    LeakyRelu, Prelu, TransposeConv, ResizeNearest)


@dataclass(frozen=True)
class Graph:
    name: str
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    model_hash: str = ""
    keras_layers: tuple[str, ...] = ()  # the Keras model's layer names, when it came from one
    #: the QUANTIZE / DEQUANTIZE between the model's own float32 / uint8 input or output and the int8
    #: core (lowered; None when that side is int8): ``inputs``/``outputs`` are then the core's tensors
    edge_in: Op | None = None
    edge_out: Op | None = None

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

    @property
    def io_dtypes(self) -> tuple[str, str]:
        """The dtypes of the model's own input and output (int8, uint8 or float32)."""
        return (self.t(self.edge_in.inputs[0]).dtype if self.edge_in else "int8",
                self.t(self.edge_out.outputs[0]).dtype if self.edge_out else "int8")
