"""The compiler's intermediate representation: small frozen dataclasses.

A :class:`Graph` holds tensors (activations and constants, with shapes and int8 quantization
parameters) and ops in topological order. Every op class is one vertical slice of the compiler:
its fields mirror the TFLite builtin options, :meth:`Op.lower` computes the fixed-point constants
the C kernel needs (exactly as TFLite Micro's ``Prepare`` does), and ``C_PARAMS`` lists the int32
fields of the kernel's parameter struct (``lw_<kind>_params_t``), from which the C typedef is
generated. The template ``templates/ops/<kind>.c.j2`` prints the call; the runtime kernel
``templates/runtime/lw_<kind>_s8.c`` implements it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
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

    kind: ClassVar[str] = ""
    tflite_ops: ClassVar[tuple[str, ...]] = ()
    C_PARAMS: ClassVar[tuple[str, ...]] = ()
    #: the output may be written over this input (index into inputs) when the input dies here
    INPLACE_INPUT: ClassVar[int | None] = None

    def lower(self, g: Graph) -> Op:
        """Return a copy with the fixed-point constants of the C kernel computed."""
        return self

    def macs(self, g: Graph) -> int:
        """Multiply-accumulates (convolutions and dense layers only, as MLPerf Tiny counts them)."""
        return 0

    def overlap_offset(self, g: Graph) -> int | None:
        """For an op that streams its input pixel by pixel into its output (see the planner): the
        byte offset at which its input may start inside its output's buffer; None if it cannot."""
        return None

    # True: the generated model #includes the kernel source and its body is inlined at the call
    # with the layer's static const parameters, so the compiler specialises it to the shapes.
    INLINE: ClassVar[bool] = False

    def scratch_bytes(self) -> int:
        """RAM the kernel needs while it runs (planned in the arena like a tensor)."""
        return 0

    def params(self, g: Graph) -> int:
        return sum(g.t(i).size for i in self.inputs[1:] if i >= 0 and g.t(i).is_const)

    def c_params(self) -> dict[str, int]:
        return {k: int(self.lowered[k]) for k in self.C_PARAMS}

    def _io(self, g: Graph) -> tuple[Tensor, Tensor]:
        return g.t(self.inputs[0]), g.t(self.outputs[0])


def _same_or_valid_pad(padding: str, in_size: int, k: int, stride: int, dil: int, out_size: int) -> int:
    """TFLite ComputePaddingHeightWidth: padding before (top/left); the extra goes after."""
    if padding == "VALID":
        return 0
    eff = (k - 1) * dil + 1
    pad = ((out_size - 1) * stride + eff - in_size) // 2
    return max(pad, 0)


_WINDOW_PARAMS = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
                  "stride_w", "pad_top", "pad_left")


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


def _requant_flags(g: Graph, op: Any, x_range: int) -> dict[str, int]:
    """Which requantization the kernels may use (see lw_requant and lw_convpool_s8 in the runtime).

    rq_mono: every shift <= 0, so MultiplyByQuantizedMultiplier is monotonic (no left shift that
    could wrap): max-pooling may take the max of raw accumulators and requantize once.
    rq_fast: also every shift <= -1 and |accumulator| < 2^30 for every possible input, bounded
    from the weights: |bias'| + x_range * sum|w| per channel (x_range 128 when the kernel
    accumulates raw int8 with the input offset folded into the bias, as all kernels do now), and
    |rnd| < 2^30; rnd: per channel, 2^(e-1) + out_offset * 2^e with e = -shift (lw_requant_out)."""
    lw = op.lowered
    shifts = list(lw["shift"])
    w = g.t(op.inputs[1]).data.astype(np.int64)
    per_channel = w.reshape(w.shape[0], -1) if not isinstance(op, DepthwiseConv2D) else w.reshape(-1, w.shape[-1]).T
    b = g.t(op.inputs[2]).data.astype(np.int64) if len(op.inputs) > 2 and op.inputs[2] >= 0 else 0
    if x_range == 128:
        b = b + int(lw["in_offset"]) * per_channel.sum(axis=1)
    bound = int((np.abs(b) + x_range * np.abs(per_channel).sum(axis=1)).max())
    # rnd: the rounding half and the output offset, pre-shifted: (r + sgn + rnd) >> e equals
    # ((r + sgn + 2^(e-1)) >> e) + out_offset, exactly, while |r| + |rnd| < 2^31
    off = int(lw["out_offset"])
    rnd = [(1 << (-s - 1)) + (off << -s) if s <= -1 else 0 for s in shifts]
    fast = all(s <= -1 for s in shifts) and bound < (1 << 30) and all(abs(r) < (1 << 30) for r in rnd)
    return {"rq_mono": int(all(s <= 0 for s in shifts)), "rq_fast": int(fast),
            "rnd": rnd if fast else [0] * len(shifts)}


def requant_prep(lowered: Mapping[str, Any], bias_folded: Sequence[int]) -> tuple[int, np.ndarray]:
    """Per-channel constants for lw_requant_prep_out: returns (scale, array of [bias', m, s, rnd]
    rows). With rq_fast, scale 2 (the kernel's weights and bias' are stored doubled, so the
    accumulator arrives as 2 * acc, which SMMULR needs; |2 * acc| < 2^31 by the rq_fast bound) and
    s = -shift, the right shift; otherwise scale 1 and s = shift."""
    fast = bool(lowered["rq_fast"])
    scale = 2 if fast else 1
    shifts = [-int(v) if fast else int(v) for v in lowered["shift"]]
    rows = np.array([[scale * int(b) for b in bias_folded], [int(v) for v in lowered["mult"]], shifts,
                     [int(v) for v in lowered["rnd"]]], np.int64).T
    return scale, rows


def pw16_weight_layout(w: np.ndarray, lowered: Mapping[str, Any], bias_folded: list[int]) -> np.ndarray:
    """Flash layout of a pw16 convolution (OHWI int8): one record per output channel that the
    kernel reads with a single pointer, two words per load (LDRD): for each word k of the patch
    (kernel rows padded to row4 bytes, as conv_weight_layout), the int16 pairs (w[4k], w[4k+2])
    and (w[4k+1], w[4k+3]) - what SXTB16 and SXTB16 ROR #8 make of the input word - each packed in
    one int32 (low half first), then bias', multiplier, s, rnd (requant_prep; weights and bias'
    times its scale). Returns a flat int array of out_c * (patch_len / 2 + 4) int32 values."""
    oc, kh, kw, ic = w.shape
    row4 = int(lowered["row4"])
    scale, tail = requant_prep(lowered, bias_folded)
    rows = np.zeros((oc, kh, row4), np.int64)
    rows[:, :, :kw * ic] = w.reshape(oc, kh, kw * ic) * scale
    q = rows.reshape(oc, -1, 4)
    pairs = np.stack([q[:, :, 0], q[:, :, 2], q[:, :, 1], q[:, :, 3]], axis=2).reshape(oc, -1, 2)
    packed = (pairs[:, :, 0] & 0xFFFF) | ((pairs[:, :, 1] & 0xFFFF) << 16)
    packed = np.where(packed >= 1 << 31, packed - (1 << 32), packed)
    return np.concatenate([packed, tail], axis=1).ravel()


def dw16_weight_layout(w: np.ndarray, lowered: Mapping[str, Any]) -> np.ndarray:
    """Flash layout of a dw16 depthwise filter (1 x k_h x k_w x C int8, C % 4 == 0): per tap, per
    group of four channels, the int16 pairs (w[0], w[2]) and (w[1], w[3]) - matching what SXTB16
    and SXTB16 ROR #8 make of an input word - each packed in one int32 (low half first); weights
    times requant_prep's scale."""
    c = w.shape[-1]
    scale, _ = requant_prep(lowered, [0] * c)
    q = w.reshape(-1, c // 4, 4).astype(np.int64) * scale
    lo = np.stack([q[:, :, 0], q[:, :, 1]], axis=2)
    hi = np.stack([q[:, :, 2], q[:, :, 3]], axis=2)
    packed = (lo & 0xFFFF) | ((hi & 0xFFFF) << 16)
    packed = np.where(packed >= 1 << 31, packed - (1 << 32), packed)
    return packed.ravel()


def dw16_const_layout(lowered: Mapping[str, Any], bias_folded: Sequence[int]) -> np.ndarray:
    """Per-channel constants of a dw16 depthwise convolution, read two words per load: for each
    group of four channels, bias' of the four, then multiplier, s, rnd of each (requant_prep)."""
    _, rows = requant_prep(lowered, bias_folded)
    groups = rows.reshape(-1, 4, 4)
    return np.concatenate([groups[:, :, 0], groups[:, :, 1:].reshape(-1, 12)], axis=1).ravel()


def conv_weight_layout(w: np.ndarray, row4: int) -> np.ndarray:
    """Flash layout of CONV_2D weights (OHWI int8) for lw_conv_s8 / lw_convpool_s8: each kernel
    row (k_w * in_c values) zero-padded to row4 bytes, so a patch row is whole 4-byte words; then
    rows of consecutive output channels paired and interleaved a word at a time (the 2x2 register
    tile reads one word of each with one pointer); an odd last row stays plain. Returns a flat
    int array of out_c * k_h * row4 values."""
    oc, kh, kw, ic = w.shape
    rows = np.zeros((oc, kh, row4), np.int64)
    rows[:, :, :kw * ic] = w.reshape(oc, kh, kw * ic)
    rows = rows.reshape(oc, -1)
    n = rows.shape[1]
    out = []
    for j in range(0, oc - 1, 2):
        pair = np.stack([rows[j].reshape(n // 4, 4), rows[j + 1].reshape(n // 4, 4)], axis=1)
        out.append(pair.ravel())
    if oc % 2:
        out.append(rows[-1])
    return np.concatenate(out)


@dataclass(frozen=True)
class Conv2D(Op):
    """CONV_2D: inputs (x, filter OHWI, bias int32 | -1)."""

    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    activation: str = "NONE"

    INLINE: ClassVar[bool] = True
    kind: ClassVar[str] = "conv"
    tflite_ops: ClassVar[tuple[str, ...]] = ("CONV_2D",)
    C_PARAMS: ClassVar[tuple[str, ...]] = _WINDOW_PARAMS + ("dil_h", "dil_w", "in_offset", "out_offset",
                                                          "act_min", "act_max", "row4", "patch_len", "rq_fast",
                                                          "rq_mono", "in_place", "pw16")

    def lower(self, g: Graph) -> Op:
        """row4: one kernel row (k_w x in_c) rounded up to 4 bytes; patch_len = k_h * row4. Weights
        are stored as conv_weight_layout says and each output pixel gathers its window into a patch
        of that shape."""
        x, y = self._io(g)
        w = g.t(self.inputs[1])
        oc, kh, kw, ic = w.shape
        lw = _window_lowering(g, self, kh, kw, *self.dilation)
        mults, shifts = quant.conv_multipliers(x.scale, list(w.quant.scale), y.scale, oc)
        row4 = (kw * ic + 3) // 4 * 4
        lw.update(row4=row4, patch_len=kh * row4)
        lw.update(dil_h=self.dilation[0], dil_w=self.dilation[1], in_offset=-x.zero_point,
                  out_offset=y.zero_point, mult=mults, shift=shifts, **_act(g, self.outputs[0], self.activation))
        # in_place: with 4k input channels and no horizontal dilation every kernel row of a window is
        # whole words of the input, so windows are read where they are (taps outside read pad_row,
        # a row of zero points in flash): no patch buffer in RAM.
        lw.update(in_place=int(ic % 4 == 0 and self.dilation[1] == 1))
        # pw16: a 1x1 unpadded convolution of at most 64 input (16 at a time) and 128 output channels,
        # or a convolution whose gathered patch is at most 16 bytes, keeps the pixel's input unpacked
        # in registers and streams weights pre-extended to int16 pairs (pw16_weight_layout;
        # LW_PW_MAX_OC in lw_conv_s8.c)
        pointwise = lw["in_place"] and kh == kw == 1 and ic <= 64 and lw["pad_top"] == lw["pad_left"] == 0
        small_patch = not lw["in_place"] and kh * row4 <= 16
        lw.update(pw16=int((pointwise or small_patch) and oc <= 128))
        op = dataclasses.replace(self, lowered=lw)
        return dataclasses.replace(op, lowered={**lw, **_requant_flags(g, op, 128)})

    def macs(self, g: Graph) -> int:
        w = g.t(self.inputs[1])
        oh, ow, oc = g.t(self.outputs[0]).nhwc
        return oh * ow * oc * w.shape[1] * w.shape[2] * w.shape[3]

    def direct(self) -> bool:
        """An unpadded 1x1 window of 4k channels: the input pixel is the patch, read in place."""
        lw = self.lowered
        return lw["k_h"] == 1 and lw["k_w"] == 1 and lw["in_c"] == lw["patch_len"] and lw["pad_top"] == 0 \
            and lw["pad_left"] == 0

    def overlap_offset(self, g: Graph) -> int | None:
        """A 1x1 stride-1 unpadded convolution read in place computes output pixels in pairs (i, i+1)
        in order, reading only input pixels i and i+1 meanwhile. With the input at offset D of the
        output buffer, writing pixels <= i+1 (up to oc*(i+2)) must not reach input pixel i (at
        D + ic*i): D >= oc*(i+2) - ic*i for every pair, largest at the first or the last pair."""
        lw = self.lowered
        if not (lw["in_place"] and lw["k_h"] == lw["k_w"] == 1 and lw["stride_h"] == lw["stride_w"] == 1
                and lw["pad_top"] == lw["pad_left"] == 0 and lw["in_h"] == lw["out_h"] and lw["in_w"] == lw["out_w"]):
            return None
        ic, oc, n = int(lw["in_c"]), int(lw["out_c"]), int(lw["out_h"] * lw["out_w"])
        last = (n - 1) // 2 * 2
        d = max(oc * (i + 2) - ic * i for i in (0, last))
        return (d + 3) // 4 * 4

    def scratch_bytes(self) -> int:
        """Two patches (the 2x2 register tile computes two output pixels at once); none when the
        windows are read in place."""
        return 0 if self.lowered["in_place"] else 2 * int(self.lowered["patch_len"])


@dataclass(frozen=True)
class DepthwiseConv2D(Op):
    """DEPTHWISE_CONV_2D: inputs (x, filter 1HW(C*M), bias)."""

    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    activation: str = "NONE"
    depth_multiplier: int = 1

    INLINE: ClassVar[bool] = True
    kind: ClassVar[str] = "dwconv"
    tflite_ops: ClassVar[tuple[str, ...]] = ("DEPTHWISE_CONV_2D",)
    C_PARAMS: ClassVar[tuple[str, ...]] = _WINDOW_PARAMS + ("dil_h", "dil_w", "depth_mult", "in_offset",
                                                          "out_offset", "act_min", "act_max", "rq_fast", "dw16")

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        w = g.t(self.inputs[1])
        _, kh, kw, oc = w.shape
        lw = _window_lowering(g, self, kh, kw, *self.dilation)
        mults, shifts = quant.conv_multipliers(x.scale, list(w.quant.scale), y.scale, oc)
        lw.update(dil_h=self.dilation[0], dil_w=self.dilation[1], depth_mult=oc // x.nhwc[2],
                  in_offset=-x.zero_point, out_offset=y.zero_point, mult=mults, shift=shifts,
                  **_act(g, self.outputs[0], self.activation))
        lw.update(dw16=int(lw["depth_mult"] == 1 and oc % 4 == 0))  # weights as int16 pairs (dw16_weight_layout)
        op = dataclasses.replace(self, lowered=lw)
        fl = _requant_flags(g, op, 128)
        return dataclasses.replace(op, lowered={**lw, "rq_fast": fl["rq_fast"], "rnd": fl["rnd"]})

    def macs(self, g: Graph) -> int:
        w = g.t(self.inputs[1])
        oh, ow, oc = g.t(self.outputs[0]).nhwc
        return oh * ow * oc * w.shape[1] * w.shape[2]


@dataclass(frozen=True)
class FullyConnected(Op):
    """FULLY_CONNECTED: inputs (x, weights [out, in], bias | -1)."""

    activation: str = "NONE"

    INLINE: ClassVar[bool] = True
    kind: ClassVar[str] = "fc"
    tflite_ops: ClassVar[tuple[str, ...]] = ("FULLY_CONNECTED",)
    C_PARAMS: ClassVar[tuple[str, ...]] = ("in_n", "out_n", "in_offset", "out_offset", "act_min", "act_max",
                                           "rq_fast")

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        w = g.t(self.inputs[1])
        mults, shifts = quant.conv_multipliers(x.scale, list(w.quant.scale), y.scale, w.shape[0])
        lw = {"in_n": w.shape[1], "out_n": w.shape[0], "in_offset": -x.zero_point,
              "out_offset": y.zero_point, "mult": mults, "shift": shifts,
              **_act(g, self.outputs[0], self.activation)}
        op = dataclasses.replace(self, lowered=lw)
        return dataclasses.replace(op, lowered={**lw, "rq_fast": _requant_flags(g, op, 128)["rq_fast"]})

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
    C_PARAMS: ClassVar[tuple[str, ...]] = _WINDOW_PARAMS + ("act_min", "act_max")

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

    INLINE: ClassVar[bool] = True
    kind: ClassVar[str] = "convpool"
    C_PARAMS: ClassVar[tuple[str, ...]] = Conv2D.C_PARAMS + (
        "pool_avg", "pool_h", "pool_w", "pool_stride_h", "pool_stride_w", "pool_pad_top", "pool_pad_left",
        "pool_out_h", "pool_out_w", "pool_act_min", "pool_act_max")

    def lower(self, g: Graph) -> Op:
        assert self.conv is not None and self.pool is not None
        c, p = dict(self.conv.lowered), self.pool.lowered
        c.update(pool_avg=1 if isinstance(self.pool, AvgPool2D) else 0, pool_h=p["k_h"], pool_w=p["k_w"],
                 pool_stride_h=p["stride_h"], pool_stride_w=p["stride_w"], pool_pad_top=p["pad_top"],
                 pool_pad_left=p["pad_left"], pool_out_h=p["out_h"], pool_out_w=p["out_w"],
                 pool_act_min=p["act_min"], pool_act_max=p["act_max"])
        # pw16 (the convolution's records) only with max pooling of raw accumulators
        c.update(pw16=int(bool(c["pw16"]) and not c["pool_avg"] and bool(c["rq_mono"])))
        return dataclasses.replace(self, lowered=c)

    def macs(self, g: Graph) -> int:
        lw = self.lowered
        return lw["out_h"] * lw["out_w"] * lw["out_c"] * lw["k_h"] * lw["k_w"] * lw["in_c"]

    MAX_WINDOW: ClassVar[int] = 16  # LW_POOL_MAX_PIXELS in lw_convpool_s8.c

    def scratch_bytes(self) -> int:
        """One patch per convolution pixel of a pooling window (none when they are read in place);
        with pw16 one patch pair (slot 0 used)."""
        lw = self.lowered
        if Conv2D.direct(self):  # type: ignore[arg-type]
            return 0
        if lw["pw16"]:
            return 0 if lw["in_place"] else 2 * int(lw["patch_len"])
        return int((lw["pool_h"] * lw["pool_w"] + 1) // 2 * 2 * lw["patch_len"])


@dataclass(frozen=True)
class Mean(Op):
    """MEAN over H and W of a 4-D tensor (GlobalAveragePooling2D)."""

    axes: tuple[int, ...] = (1, 2)

    kind: ClassVar[str] = "mean"
    tflite_ops: ClassVar[tuple[str, ...]] = ("MEAN",)
    C_PARAMS: ClassVar[tuple[str, ...]] = ("count", "channels", "in_zp", "out_zp", "mult", "shift")

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
    C_PARAMS: ClassVar[tuple[str, ...]] = ("count", "channels")

    def lower(self, g: Graph) -> Op:
        h, w, c = g.t(self.inputs[0]).nhwc
        return dataclasses.replace(self, lowered={"count": h * w, "channels": c})


@dataclass(frozen=True)
class Add(Op):
    activation: str = "NONE"

    kind: ClassVar[str] = "add"
    tflite_ops: ClassVar[tuple[str, ...]] = ("ADD",)
    C_PARAMS: ClassVar[tuple[str, ...]] = ("size", "in1_offset", "in2_offset", "out_offset", "left_shift",
                                           "in1_mult", "in1_shift", "in2_mult", "in2_shift", "out_mult",
                                           "out_shift", "act_min", "act_max", "in2_stride")
    INPLACE_INPUT: ClassVar[int | None] = 0

    def lower(self, g: Graph) -> Op:
        """Same-shape inputs, or a constant scalar second input (in2_stride 0)."""
        a, b, y = g.t(self.inputs[0]), g.t(self.inputs[1]), g.t(self.outputs[0])
        lw: dict[str, Any] = quant.add_params(a.scale, b.scale, y.scale)
        lw.update(size=y.size, in1_offset=-a.zero_point, in2_offset=-b.zero_point,
                  out_offset=y.zero_point, in2_stride=0 if b.size == 1 else 1,
                  **_act(g, self.outputs[0], self.activation))
        return dataclasses.replace(self, lowered=lw)

    def params(self, g: Graph) -> int:
        return 0


@dataclass(frozen=True)
class Mul(Op):
    """MUL of same-shape inputs, or by a constant scalar (Rescaling with an offset becomes MUL + ADD)."""

    activation: str = "NONE"

    kind: ClassVar[str] = "mul"
    tflite_ops: ClassVar[tuple[str, ...]] = ("MUL",)
    C_PARAMS: ClassVar[tuple[str, ...]] = ("size", "in1_offset", "in2_offset", "out_offset", "mult", "shift",
                                           "act_min", "act_max", "in2_stride")
    INPLACE_INPUT: ClassVar[int | None] = 0

    def lower(self, g: Graph) -> Op:
        a, b, y = g.t(self.inputs[0]), g.t(self.inputs[1]), g.t(self.outputs[0])
        mult, shift = quant.quantize_multiplier(float(a.scale) * float(b.scale) / float(y.scale))
        lw = {"size": y.size, "in1_offset": -a.zero_point, "in2_offset": -b.zero_point, "out_offset": y.zero_point,
              "mult": mult, "shift": shift, "in2_stride": 0 if b.size == 1 else 1,
              **_act(g, self.outputs[0], self.activation)}
        return dataclasses.replace(self, lowered=lw)

    def params(self, g: Graph) -> int:
        return 0




@dataclass(frozen=True)
class Concatenation(Op):
    """CONCATENATION along any axis: each input copies its chunk into every outer slice."""

    axis: int = -1

    kind: ClassVar[str] = "concat"
    tflite_ops: ClassVar[tuple[str, ...]] = ("CONCATENATION",)
    C_PARAMS: ClassVar[tuple[str, ...]] = ("outer", "out_chunk")

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
    C_PARAMS: ClassVar[tuple[str, ...]] = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "pad_top",
                                           "pad_left", "pad_front", "value")

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
    C_PARAMS: ClassVar[tuple[str, ...]] = ("size",)

    def params(self, g: Graph) -> int:
        return 0

    def lower(self, g: Graph) -> Op:
        return dataclasses.replace(self, lowered={"size": g.t(self.outputs[0]).size})


@dataclass(frozen=True)
class Softmax(Op):
    beta: float = 1.0

    kind: ClassVar[str] = "softmax"
    tflite_ops: ClassVar[tuple[str, ...]] = ("SOFTMAX",)
    C_PARAMS: ClassVar[tuple[str, ...]] = ("rows", "depth", "mult", "left_shift", "diff_min")
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
    C_PARAMS: ClassVar[tuple[str, ...]] = ("size", "in_zp", "out_zp", "mult", "shift", "act_min", "act_max")
    INPLACE_INPUT: ClassVar[int | None] = 0

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        mult, shift = quant.quantize_multiplier(float(x.scale) / float(y.scale))
        lw = {"size": x.size, "in_zp": x.zero_point, "out_zp": y.zero_point, "mult": mult, "shift": shift,
              "act_min": -128, "act_max": 127}
        return dataclasses.replace(self, lowered=lw)


@dataclass(frozen=True)
class Relu(Requantize):
    """RELU / RELU6 as a separate op: a requantization with a clamp."""

    max_value: float | None = None  # 6.0 for RELU6

    tflite_ops: ClassVar[tuple[str, ...]] = ("RELU", "RELU6")

    def lower(self, g: Graph) -> Op:
        x, y = self._io(g)
        lowered = dict(super().lower(g).lowered)
        lowered["act_min"] = max(-128, y.zero_point + quant.round_half_away(float(quant.f32(0.0))))
        if self.max_value is not None:
            q = float(quant.f32(self.max_value) / quant.f32(y.scale))
            lowered["act_max"] = min(127, y.zero_point + quant.round_half_away(q))
        return dataclasses.replace(self, lowered=lowered)


#: Every op the compiler accepts, in one list: frontend, templates, docs and tests are built from it.
OP_CLASSES: tuple[type[Op], ...] = (Conv2D, DepthwiseConv2D, FullyConnected, MaxPool2D, AvgPool2D, ConvPool, Mean,
                                    ReduceMax, Add, Mul, Concatenation, Pad, Reshape, Softmax, Requantize, Relu)
KERNEL_KINDS: tuple[str, ...] = tuple(dict.fromkeys(c.kind for c in OP_CLASSES))


@dataclass(frozen=True)
class Graph:
    name: str
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    model_hash: str = ""

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
