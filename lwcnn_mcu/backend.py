"""The Cortex-M backend: how each op of the IR runs on the target.

The IR (:mod:`lwcnn_mcu.ir`) says *what* an op computes, with TFLite's semantics and quantization.
This module decides *how*, once per op, in a :class:`Kernel`:

* the kernel variant (the fast paths of :class:`Options`: fast requantization, max pooling of raw
  accumulators, pw16 records, dw16 int16 pairs, convolution windows read in place);
* the fields of its parameter struct ``lw_<kind>_params_t`` (``FIELDS`` is the one list from which
  ``lw_params.h`` is generated);
* the constant arrays it reads from flash, in the layout that variant expects - the bias with the
  input offset folded in is computed here, once, and the fast-requantization overflow proof is
  made on that same bias;
* the RAM it needs while it runs (scratch) and how its output may overlap its input.

The memory planner and the C generator only read Kernels. One op is one vertical slice: its IR
class, its frontend handler, its ``@constants`` function and ``FIELDS`` row here, its template
``lwcnn_mcu/templates/ops/<kind>.c.j2``, its kernel ``lwcnn_mcu/templates/runtime/lw_<kind>_s8.c`` and its rows in the
op table (``tests/test_ops.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lwcnn_mcu import ir
from lwcnn_mcu.errors import LwcnnError

#: Limits of the C kernels, the one source for Python and C: emitted as #defines into lw_params.h
#: (the kernels size their stack arrays with them) and checked per layer in the generated model with
#: LW_STATIC_ASSERT, so a variant is only chosen where the kernel can hold it.
LIMITS: dict[str, tuple[int, str]] = {
    "LW_PW_MAX_OC": (128, "output channels of a pw16 convolution (partial sums on the stack)"),
    "LW_PW_MAX_IC": (64, "input channels of a pw16 1x1 convolution read in place (16 at a time)"),
    "LW_PW_MAX_PATCH": (16, "bytes of a gathered pw16 patch (unpacked into registers at once)"),
    "LW_POOL_MAX_PIXELS": (16, "pixels of a pooling window fused into a convolution"),
    "LW_CONV_MAX_TAPS": (25, "taps (k_h x k_w) of a convolution read in place (a list of tap addresses on the stack)"),
}


def limit(name: str) -> int:
    return LIMITS[name][0]


@dataclass(frozen=True)
class Options:
    """The kernels' fast paths, each on by default. Turning one off makes every layer take the
    general path instead (same bytes, slower); the test suite runs the op table through each."""

    fast_requant: bool = True  # SMMULR requantization where the accumulator provably fits (rq_fast)
    mono_pool: bool = True  # max pooling of raw accumulators, requantized once (rq_mono)
    pw16: bool = True  # 1x1 / small-patch convolutions as per-channel int16-pair records
    dw16: bool = True  # depthwise weights as int16 pairs, constants per four channels
    dw_rows: bool = True  # dw16 undilated: a ring of zero-point-padded input rows, two output pixels per pass
    in_place: bool = True  # convolution windows read where they are (no gathered patch)
    add_lut: bool = True  # ADD/SUB inputs rescaled through 256-entry tables (ADD_LUT_MIN elements and up)
    fc4: bool = True  # fully connected: four weight rows word-interleaved, each input word used four times
    #: whose kernels run the ops: "lw" (ours) or "cmsis-nn" (CMSIS-NN's s8 API where it has the op, see
    #: :func:`cmsis_kernel`; ours for the rest, named in the compile report's "fallback")
    kernels: str = "lw"


#: the choices of Options.kernels (the CLI's --kernels of compile and verify)
KERNEL_SETS: tuple[str, ...] = ("lw", "cmsis-nn")
FAST_PATHS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Options) if f.name != "kernels")


@dataclass(frozen=True)
class CArray:
    """A constant array in flash. Its symbol starts with '@', which the C generator replaces by the
    model's C prefix (``mnist_``), so several models link into one program."""

    symbol: str
    ctype: str  # int8_t | int32_t
    values: list[int]
    comment: str

    @property
    def nbytes(self) -> int:
        return len(self.values) * {"int8_t": 1, "int32_t": 4}[self.ctype]


@dataclass(frozen=True)
class Kernel:
    """One op as the target runs it."""

    kind: str  # the kernel lw_<kind>_s8 and its struct lw_<kind>_params_t
    params: dict[str, int]  # the struct's fields, in FIELDS order
    arrays: tuple[CArray, ...] = ()  # constants it reads from flash
    args: dict[str, str] = field(default_factory=dict)  # template name -> C expression (@arrays, NULL)
    variant: tuple[str, ...] = ()  # the fast paths it takes, for comments and reports
    scratch_bytes: int = 0  # RAM it needs while it runs (placed by the planner)
    overlap_offset: int | None = None  # its input may start this many bytes into its output buffer
    checks: tuple[tuple[str, int, str], ...] = ()  # (LIMIT, value, why): value <= LIMIT, checked in C
    inline: bool = False  # the kernel body is #included and specialised at the call (static const params)

    @property
    def cmsis(self) -> bool:
        """A CMSIS-NN call (kind ``cmsis/<op>``, template ``ops/cmsis/<op>.c.j2``; params are what it prints)."""
        return self.kind.startswith("cmsis/")

    @property
    def function(self) -> str:
        """The C function that runs the op."""
        return CMSIS_FUNCTIONS[self.kind] if self.cmsis else f"lw_{self.kind}_s8"


_WINDOW = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w", "pad_top",
           "pad_left")
_CONV = _WINDOW + ("dil_h", "dil_w", "in_offset", "out_offset", "act_min", "act_max", "row4", "patch_len", "rq_fast",
                   "rq_mono", "in_place", "pw16")

#: the loops of a broadcasting elementwise kernel (ir.broadcast_loops): extents n0..n3 (n3 innermost, one
#: row) and each input's step per loop in elements (0: broadcast along it)
_BROADCAST = ("n0", "n1", "n2", "n3", "in1_s0", "in1_s1", "in1_s2", "in1_s3", "in2_s0", "in2_s1", "in2_s2", "in2_s3")

#: The fields of every kernel's parameter struct (all int32_t), in order: lw_params.h is generated
#: from this table and the constants functions below fill it.
FIELDS: dict[str, tuple[str, ...]] = {
    "conv": _CONV,
    "dwconv": _WINDOW + ("dil_h", "dil_w", "depth_mult", "in_offset", "out_offset", "act_min", "act_max", "rq_fast",
                         "dw16", "dw_rows", "ring_w"),
    "fc": ("in_n", "out_n", "in_offset", "out_offset", "act_min", "act_max", "rq_fast", "fc4"),
    "maxpool": _WINDOW + ("act_min", "act_max"),
    "avgpool": _WINDOW + ("act_min", "act_max"),
    "convpool": _CONV + ("pool_avg", "pool_h", "pool_w", "pool_stride_h", "pool_stride_w", "pool_pad_top",
                         "pool_pad_left", "pool_out_h", "pool_out_w", "pool_act_min", "pool_act_max"),
    "mean": ("outer", "count", "channels", "in_zp", "out_zp", "mult", "shift"),
    "reducemax": ("outer", "count", "channels"),
    "add": ("in1_offset", "in2_offset", "out_offset", "left_shift", "in1_mult", "in1_shift", "in2_mult", "in2_shift",
            "out_mult", "out_shift", "act_min", "act_max", "subtract", "add_lut", "rq_fast", "out_rnd") + _BROADCAST,
    "mul": ("in1_offset", "in2_offset", "out_offset", "mult", "shift", "act_min", "act_max") + _BROADCAST,
    "maxmin": ("maximum",) + _BROADCAST,
    "concat": ("outer", "out_chunk"),
    "pad": ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "pad_top", "pad_left", "pad_front", "value"),
    "reshape": ("size",),
    "slice": ("start", "size0", "size1", "size2", "size3", "step0", "step1", "step2", "step3"),
    "softmax": ("rows", "depth", "mult", "left_shift", "diff_min"),
    "requant": ("size", "in_zp", "out_zp", "mult", "shift", "act_min", "act_max"),
    "lut": ("size",),
    "prelu": ("out_h", "out_w", "out_c", "alpha_stride_h", "alpha_stride_w", "alpha_stride_c", "in_offset",
              "alpha_offset", "out_offset", "pos_mult", "pos_shift", "neg_mult", "neg_shift"),
    "tconv": _WINDOW + ("in_offset", "out_offset", "act_min", "act_max", "rq_fast"),
    "resize_nearest": ("in_h", "in_w", "channels", "out_h", "out_w"),
}

ConstantsFn = Callable[[int, Any, ir.Graph, Options], Kernel]
_CONSTANTS: dict[type[ir.Op], ConstantsFn] = {}


def constants(*classes: type[ir.Op]) -> Callable[[ConstantsFn], ConstantsFn]:
    """Register the function that makes the Kernel of these op classes."""

    def register(fn: ConstantsFn) -> ConstantsFn:
        for c in classes:
            _CONSTANTS[c] = fn
        return fn

    return register


def _struct(kind: str, *values: dict[str, Any]) -> dict[str, int]:
    merged: dict[str, Any] = {}
    for v in values:
        merged.update(v)
    return {f: int(merged[f]) for f in FIELDS[kind]}


# --- requantization -------------------------------------------------------------------------------

def folded_bias(op: ir.Op, g: ir.Graph) -> np.ndarray:
    """Per output channel: bias + in_offset * sum(weights of the channel). Kernels accumulate raw
    int8 inputs and start from this, so no input offset is added inside the loops."""
    w = g.t(op.inputs[1]).data.astype(np.int64)
    b = g.t(op.inputs[2]).data.astype(np.int64) if len(op.inputs) > 2 and op.inputs[2] >= 0 else 0
    return b + int(op.lowered["in_offset"]) * _per_channel(op, w).sum(axis=1)


def _per_channel(op: ir.Op, w: np.ndarray) -> np.ndarray:
    """The weights as (output channel, taps)."""
    return w.reshape(-1, w.shape[-1]).T if isinstance(op, ir.DepthwiseConv2D) else w.reshape(w.shape[0], -1)


def requant_flags(op: ir.Op, g: ir.Graph, bias: np.ndarray, opts: Options) -> dict[str, Any]:
    """Which requantization the kernel may use (lw_requant_out / lw_requant_prep_out in lw_common.h).

    rq_mono: every shift <= 0, so MultiplyByQuantizedMultiplier is monotonic (no left shift that
    could wrap): max pooling may take the max of raw accumulators and requantize once.
    rq_fast: also every shift <= -1 and |accumulator| < 2^30 for every possible input, bounded from
    the folded bias the kernel really starts from: |bias'| + 128 * sum|w| per channel; and
    |rnd| < 2^30, with rnd per channel 2^(e-1) + out_offset * 2^e, e = -shift: then
    (r + sgn + rnd) >> e equals ((r + sgn + 2^(e-1)) >> e) + out_offset exactly."""
    shifts = [int(s) for s in op.lowered["shift"]]
    w = _per_channel(op, g.t(op.inputs[1]).data.astype(np.int64))
    bound = int((np.abs(bias) + 128 * np.abs(w).sum(axis=1)).max())
    off = int(op.lowered["out_offset"])
    rnd = [(1 << (-s - 1)) + (off << -s) if s <= -1 else 0 for s in shifts]
    fast = (opts.fast_requant and all(s <= -1 for s in shifts) and bound < (1 << 30)
            and all(abs(r) < (1 << 30) for r in rnd))
    return {"rq_mono": int(opts.mono_pool and all(s <= 0 for s in shifts)), "rq_fast": int(fast),
            "rnd": rnd if fast else [0] * len(shifts)}


def requant_prep(flags: dict[str, Any], lowered: dict[str, Any], bias: Sequence[int]) -> tuple[int, np.ndarray]:
    """Per-channel constants for lw_requant_prep_out: (scale, rows of [bias', m, s, rnd]). With
    rq_fast, scale 2 (weights and bias' are stored doubled, so the accumulator arrives as 2 * acc,
    which SMMULR needs; |2 * acc| < 2^31 by the rq_fast bound) and s = -shift, the right shift;
    otherwise scale 1 and s = shift."""
    fast = bool(flags["rq_fast"])
    scale = 2 if fast else 1
    shifts = [-int(v) if fast else int(v) for v in lowered["shift"]]
    rows = np.array([[scale * int(b) for b in bias], [int(v) for v in lowered["mult"]], shifts,
                     [int(v) for v in flags["rnd"]]], np.int64).T
    return scale, rows


# --- flash layouts ---------------------------------------------------------------------------------

def _pack_pairs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Two int16 halves in one int32 (low half first), as signed int32 values."""
    packed = (lo & 0xFFFF) | ((hi & 0xFFFF) << 16)
    return np.where(packed >= 1 << 31, packed - (1 << 32), packed)


def conv_weight_layout(w: np.ndarray, row4: int) -> np.ndarray:
    """CONV_2D weights (OHWI int8) for lw_conv_s8 / lw_convpool_s8: each kernel row (k_w * in_c
    values) zero-padded to row4 bytes, so a patch row is whole 4-byte words; rows of consecutive
    output channels paired and interleaved a word at a time (the 2x2 register tile reads one word
    of each with one pointer); an odd last row stays plain. A flat array of out_c * k_h * row4."""
    oc, kh, kw, ic = w.shape
    rows = np.zeros((oc, kh, row4), np.int64)
    rows[:, :, :kw * ic] = w.reshape(oc, kh, kw * ic)
    rows = rows.reshape(oc, -1)
    n = rows.shape[1]
    out = [np.stack([rows[j].reshape(n // 4, 4), rows[j + 1].reshape(n // 4, 4)], axis=1).ravel()
           for j in range(0, oc - 1, 2)]
    if oc % 2:
        out.append(rows[-1])
    return np.concatenate(out)


def pw16_weight_layout(w: np.ndarray, row4: int, scale: int, tail: np.ndarray) -> np.ndarray:
    """A pw16 convolution (OHWI int8): one record per output channel that the kernel reads with a
    single pointer, two words per load (LDRD): for each word k of the patch (kernel rows padded to
    row4 bytes), the int16 pairs (w[4k], w[4k+2]) and (w[4k+1], w[4k+3]) - what SXTB16 and SXTB16
    ROR #8 make of the input word - then bias', multiplier, s, rnd (requant_prep; weights and bias'
    times its scale). A flat array of out_c * (patch_len / 2 + 4) int32."""
    oc, kh, kw, ic = w.shape
    rows = np.zeros((oc, kh, row4), np.int64)
    rows[:, :, :kw * ic] = w.reshape(oc, kh, kw * ic) * scale
    q = rows.reshape(oc, -1, 4)
    packed = _pack_pairs(np.stack([q[:, :, 0], q[:, :, 1]], axis=2), np.stack([q[:, :, 2], q[:, :, 3]], axis=2))
    return np.concatenate([packed.reshape(oc, -1), tail], axis=1).ravel()


def dw16_weight_layout(w: np.ndarray, scale: int) -> np.ndarray:
    """A dw16 depthwise filter (1 x k_h x k_w x C int8, C % 4 == 0): per tap, per group of four
    channels, the int16 pairs (w[0], w[2]) and (w[1], w[3]) - matching what SXTB16 and SXTB16
    ROR #8 make of an input word; weights times requant_prep's scale."""
    c = w.shape[-1]
    q = w.reshape(-1, c // 4, 4).astype(np.int64) * scale
    return _pack_pairs(np.stack([q[:, :, 0], q[:, :, 1]], axis=2), np.stack([q[:, :, 2], q[:, :, 3]], axis=2)).ravel()


def dw_rows_layout(w: np.ndarray, scale: int, rows: np.ndarray) -> np.ndarray:
    """A dw_rows depthwise convolution (1 x k_h x k_w x C, C % 4 == 0): one record per group of four
    channels, read in order with one pointer, two words per load: bias' of the four, the int16
    pairs (w[0], w[2]) and (w[1], w[3]) of each tap (dw16_weight_layout), then multiplier, s, rnd
    of each (requant_prep). A flat array of C / 4 * (16 + 2 * k_h * k_w) int32."""
    c = w.shape[-1]
    taps = dw16_weight_layout(w, scale).reshape(-1, c // 4, 2).transpose(1, 0, 2).reshape(c // 4, -1)
    groups = rows.reshape(-1, 4, 4)
    return np.concatenate([groups[:, :, 0], taps, groups[:, :, 1:].reshape(-1, 12)], axis=1).ravel()


def dw_rows_geometry(v: dict[str, Any]) -> tuple[int, int | None]:
    """(ring_w, overlap) of a dw_rows layer. The kernel keeps the k_h input rows of the current output
    row's windows in a ring of k_h rows of ring_w pixels - pad_left columns of zero points, the input
    row, zero points up to the last window's last column; a row outside the input is all zero points -
    copying each input row just before the first output row that needs it, and reads only the ring.
    So output row oy may overwrite every input row already copied: with the input D bytes into the
    output buffer, the rows written up to oy must end at or before input row
    oy * stride_h - pad_top + k_h, the first not copied yet (if below in_h). overlap is the smallest
    such D (a multiple of 4), None when out_c != in_c."""
    ring_w = (int(v["out_w"]) - 1) * int(v["stride_w"]) + int(v["k_w"])
    if v["out_c"] != v["in_c"]:
        return ring_w, None
    out_row, in_row = int(v["out_w"] * v["out_c"]), int(v["in_w"] * v["in_c"])
    d = 0
    for oy in range(int(v["out_h"])):
        first = oy * int(v["stride_h"]) - int(v["pad_top"]) + int(v["k_h"])
        if first < v["in_h"]:
            d = max(d, (oy + 1) * out_row - first * in_row)
    return ring_w, (d + 3) // 4 * 4


def dw16_const_layout(rows: np.ndarray) -> np.ndarray:
    """Per-channel constants of a dw16 depthwise convolution, read two words per load: for each
    group of four channels, bias' of the four, then multiplier, s, rnd of each (requant_prep)."""
    groups = rows.reshape(-1, 4, 4)
    return np.concatenate([groups[:, :, 0], groups[:, :, 1:].reshape(-1, 12)], axis=1).ravel()


# --- the constants of each op ----------------------------------------------------------------------

def _conv_variant(op: ir.Conv2D | ir.ConvPool, g: ir.Graph, opts: Options) -> dict[str, int]:
    """row4: one kernel row (k_w x in_c) rounded up to 4 bytes; patch_len = k_h * row4.
    in_place: with 4k input channels and no horizontal dilation every kernel row of a window is
    whole words of the input, so windows are read where they are (taps outside read pad_row, a row
    of zero points in flash): no patch buffer in RAM; a window of at most LW_CONV_MAX_TAPS taps.
    pw16: a 1x1 unpadded convolution read in place of at most LW_PW_MAX_IC input channels, or a
    convolution whose gathered patch is at most LW_PW_MAX_PATCH bytes, with at most LW_PW_MAX_OC
    output channels: the pixel's input stays unpacked in registers and weights stream as int16
    pairs (pw16_weight_layout)."""
    lw = op.lowered
    oc, kh, kw, ic = g.t(op.inputs[1]).shape
    row4 = (kw * ic + 3) // 4 * 4
    in_place = int(opts.in_place and ic % 4 == 0 and lw["dil_w"] == 1 and kh * kw <= limit("LW_CONV_MAX_TAPS"))
    pointwise = (in_place and kh == kw == 1 and ic <= limit("LW_PW_MAX_IC")
                 and lw["pad_top"] == lw["pad_left"] == 0)
    small_patch = not in_place and kh * row4 <= limit("LW_PW_MAX_PATCH")
    pw16 = int(opts.pw16 and bool(pointwise or small_patch) and oc <= limit("LW_PW_MAX_OC"))
    return {"row4": row4, "patch_len": kh * row4, "in_place": in_place, "pw16": pw16}


def _direct(v: dict[str, Any]) -> bool:
    """An unpadded 1x1 window of 4k channels read in place: the input pixel is the patch."""
    return bool(v["in_place"] and v["k_h"] == v["k_w"] == 1 and v["in_c"] == v["patch_len"]
                and v["pad_top"] == v["pad_left"] == 0)


def _conv_arrays(k: int, op: ir.Op, g: ir.Graph, v: dict[str, Any], bias: np.ndarray,
                 rq: dict[str, Any]) -> tuple[list[CArray], dict[str, str], list[tuple[str, int, str]]]:
    """Flash constants of a CONV_2D (alone or with its pooling fused): pw16 records, or the
    paired-row weights with bias', multipliers, shifts and rnd."""
    w = g.t(op.inputs[1])
    shape = list(w.shape)
    if v["pw16"]:
        scale, tail = requant_prep(rq, dict(op.lowered), bias.tolist())
        rec = pw16_weight_layout(w.data.astype(np.int64), int(v["row4"]), scale, tail)
        checks = [("LW_PW_MAX_OC", int(w.shape[0]), "pw16 output channels")]
        if not v["in_place"]:
            checks.append(("LW_PW_MAX_PATCH", int(v["patch_len"]), "pw16 patch bytes"))
        return ([CArray(f"@w{k}", "int32_t", rec.tolist(),
                        f"{op.name}: weights {shape} as int16 pairs per input word, then bias', multiplier, "
                        "shift, rnd per output channel (pw16)")],
                {"weights": f"(const int8_t *)@w{k}", "bias": "NULL", "mult": "NULL", "shift": "NULL",
                 "rnd": "NULL"}, checks)
    layout = conv_weight_layout(w.data.astype(np.int64), int(v["row4"]))
    return ([CArray(f"@w{k}", "int8_t", layout.tolist(),
                    f"{op.name}: weights {shape} as {shape[0]} rows of {v['patch_len']} (kernel rows padded "
                    f"to {v['row4']}), row pairs word-interleaved"),
             CArray(f"@b{k}", "int32_t", bias.tolist(), f"{op.name}: bias with the input offset folded in"),
             CArray(f"@m{k}", "int32_t", list(op.lowered["mult"]), f"{op.name}: multipliers"),
             CArray(f"@s{k}", "int32_t", list(op.lowered["shift"]), f"{op.name}: shifts"),
             CArray(f"@r{k}", "int32_t", list(rq["rnd"]),
                    f"{op.name}: rounding + output offset << -shift (fast requantization)")],
            {"weights": f"@w{k}", "bias": f"@b{k}", "mult": f"@m{k}", "shift": f"@s{k}",
             "rnd": f"@r{k}"}, [])


def conv_overlap(v: dict[str, Any]) -> int:
    """D (a multiple of 4) such that a CONV_2D may write its output over its dying input when the
    input starts D bytes into the output's buffer. Every path of lw_conv_s8 computes output pixels in
    raster order, two at a time (pw16 one at a time, its input read first), and while it computes
    the pair from pixel i on it reads no input byte before first(i): the first byte of the first
    input row of pixel i's window, from its first column inside the input (on the top and left
    borders, row 0 and column 0), the least of that over i and every later pixel. Writing the pair
    covers output bytes [0, out_c * (i + 2)), which must lie below D + first(i)."""
    in_w, ic, oc = int(v["in_w"]), int(v["in_c"]), int(v["out_c"])
    out_w, n = int(v["out_w"]), int(v["out_h"] * v["out_w"])
    first = [0] * n
    later = int(v["in_h"]) * in_w * ic  # nothing read after the last pixel
    for i in range(n - 1, -1, -1):
        iy = (i // out_w) * int(v["stride_h"]) - int(v["pad_top"])
        ix = (i % out_w) * int(v["stride_w"]) - int(v["pad_left"])
        later = min(later, (max(iy, 0) * in_w + min(max(ix, 0), in_w)) * ic)
        first[i] = later
    d = max(oc * min(i + 2, n) - first[i] for i in range(0, n, 2))
    return max(0, (d + 3) // 4 * 4)


def _variant_names(v: dict[str, Any], *names: str) -> tuple[str, ...]:
    label = {"rq_fast": "fast requantization", "rq_mono": "max of raw accumulators", "pw16": "pw16",
             "dw16": "dw16", "dw_rows": "input row ring", "in_place": "windows in place", "fc4": "fc4",
             "add_lut": "input tables"}
    return tuple(label[n] for n in names if v.get(n))


@constants(ir.Conv2D)
def _conv(k: int, op: ir.Conv2D, g: ir.Graph, opts: Options) -> Kernel:
    v = {**op.lowered, **_conv_variant(op, g, opts)}
    bias = folded_bias(op, g)
    rq = requant_flags(op, g, bias, opts)
    v.update(rq)
    arrays, args, checks = _conv_arrays(k, op, g, v, bias, rq)
    if v["in_place"]:
        arrays.insert(0, CArray(f"@z{k}", "int8_t", [-int(v["in_offset"])] * int(v["in_c"]),
                                f"{op.name}: the input zero point, read for taps outside the input"))
    args["pad_row"] = f"@z{k}" if v["in_place"] else "NULL"
    if v["in_place"]:
        checks.append(("LW_CONV_MAX_TAPS", int(v["k_h"] * v["k_w"]), "taps of a window read in place"))
    args["scratch"] = "NULL"  # the planner's scratch buffer replaces it when the kernel needs one
    overlap = conv_overlap(v)
    # two patches (the 2x2 register tile computes two output pixels at once); none in place
    scratch = 0 if v["in_place"] else 2 * int(v["patch_len"])
    return Kernel("conv", _struct("conv", v), tuple(arrays), args, _variant_names(v, "pw16", "in_place", "rq_fast"),
                  scratch, overlap, tuple(checks), inline=True)


@constants(ir.ConvPool)
def _convpool(k: int, op: ir.ConvPool, g: ir.Graph, opts: Options) -> Kernel:
    v = {**op.lowered, **_conv_variant(op, g, opts)}
    bias = folded_bias(op, g)
    rq = requant_flags(op, g, bias, opts)
    v.update(rq)
    # pw16 (the convolution's records) only with max pooling of raw accumulators
    v["pw16"] = int(bool(v["pw16"]) and not v["pool_avg"] and bool(v["rq_mono"]))
    arrays, args, checks = _conv_arrays(k, op, g, v, bias, rq)
    args["scratch"] = "NULL"  # the planner's scratch buffer replaces it when the kernel needs one
    checks.append(("LW_POOL_MAX_PIXELS", int(v["pool_h"] * v["pool_w"]), "pooling window pixels"))
    if _direct(v):
        scratch = 0
    elif v["pw16"]:
        scratch = 0 if v["in_place"] else 2 * int(v["patch_len"])  # one patch pair (slot 0 used)
    else:
        scratch = int((v["pool_h"] * v["pool_w"] + 1) // 2 * 2 * v["patch_len"])  # a patch per window pixel
    names = _variant_names(v, "pw16", "in_place", "rq_fast") + (
        _variant_names(v, "rq_mono") if not v["pool_avg"] else ())
    return Kernel("convpool", _struct("convpool", v), tuple(arrays), args, names, scratch, None, tuple(checks),
                  inline=True)


@constants(ir.DepthwiseConv2D)
def _dwconv(k: int, op: ir.DepthwiseConv2D, g: ir.Graph, opts: Options) -> Kernel:
    w = g.t(op.inputs[1])
    v: dict[str, Any] = dict(op.lowered)
    v["dw16"] = int(opts.dw16 and v["depth_mult"] == 1 and w.shape[-1] % 4 == 0)
    # dw_rows (dw_rows_geometry): undilated dw16 windows (3x3 above all) read from a ring of input rows
    v["dw_rows"] = int(opts.dw_rows and bool(v["dw16"]) and v["dil_h"] == v["dil_w"] == 1)
    ring_w, overlap = dw_rows_geometry(v) if v["dw_rows"] else (0, None)
    v["ring_w"] = ring_w
    bias = folded_bias(op, g)
    rq = requant_flags(op, g, bias, opts)
    v.update(rq_fast=rq["rq_fast"])
    layout = f"weights {list(w.shape)}"
    scratch = 0
    if v["dw_rows"]:
        scale, rows = requant_prep(rq, dict(op.lowered), bias.tolist())
        arrays = [CArray(f"@q{k}", "int32_t", dw_rows_layout(w.data.astype(np.int64), scale, rows).tolist(),
                         f"{op.name}: per 4 channels bias', {layout} as int16 pairs per tap, then multiplier, "
                         "shift, rnd of each (dw_rows)")]
        args = {"weights": "NULL", "bias": f"@q{k}", "mult": "NULL", "shift": "NULL", "rnd": "NULL"}
        scratch = int(v["k_h"] * ring_w * v["in_c"])  # the ring of input rows
    elif v["dw16"]:
        scale, rows = requant_prep(rq, dict(op.lowered), bias.tolist())
        arrays = [CArray(f"@w{k}", "int32_t", dw16_weight_layout(w.data.astype(np.int64), scale).tolist(),
                         f"{op.name}: {layout} as int16 pairs per tap and 4 channels (dw16)"),
                  CArray(f"@q{k}", "int32_t", dw16_const_layout(rows).tolist(),
                         f"{op.name}: per 4 channels bias', then multiplier, shift, rnd of each (dw16)")]
        args = {"weights": f"(const int8_t *)@w{k}", "bias": f"@q{k}", "mult": "NULL", "shift": "NULL",
                "rnd": "NULL"}
    else:
        arrays = [CArray(f"@w{k}", "int8_t", w.data.astype(np.int64).ravel().tolist(), f"{op.name}: {layout}"),
                  CArray(f"@b{k}", "int32_t", bias.tolist(), f"{op.name}: bias with the input offset folded in"),
                  CArray(f"@m{k}", "int32_t", list(op.lowered["mult"]), f"{op.name}: multipliers"),
                  CArray(f"@s{k}", "int32_t", list(op.lowered["shift"]), f"{op.name}: shifts"),
                  CArray(f"@r{k}", "int32_t", list(rq["rnd"]),
                         f"{op.name}: rounding + output offset << -shift (fast requantization)")]
        args = {"weights": f"@w{k}", "bias": f"@b{k}", "mult": f"@m{k}", "shift": f"@s{k}",
                "rnd": f"@r{k}"}
    args["scratch"] = "NULL"  # the planner's scratch buffer replaces it when the kernel needs one
    return Kernel("dwconv", _struct("dwconv", v), tuple(arrays), args, _variant_names(v, "dw16", "dw_rows", "rq_fast"),
                  scratch, overlap, inline=True)


@constants(ir.FullyConnected)
def _fc(k: int, op: ir.FullyConnected, g: ir.Graph, opts: Options) -> Kernel:
    w = g.t(op.inputs[1])
    bias = folded_bias(op, g)
    rq = requant_flags(op, g, bias, opts)
    in_n, out_n = int(op.lowered["in_n"]), int(op.lowered["out_n"])
    fc4 = int(opts.fc4 and in_n % 4 == 0 and out_n >= 4)
    v = {**op.lowered, "rq_fast": rq["rq_fast"], "fc4": fc4}
    wv = w.data.astype(np.int64).reshape(out_n, in_n)
    what = f"{op.name}: weights {list(w.shape)}"
    if fc4:  # each block of 4 rows: word j of rows 0, 1, 2, 3, then word j + 1 (rows after the last block: as they are)
        full = out_n // 4 * 4
        blocks = wv[:full].reshape(full // 4, 4, in_n // 4, 4).transpose(0, 2, 1, 3)
        wv = np.concatenate([blocks.reshape(full, in_n), wv[full:]])
        what += ", blocks of 4 rows word-interleaved (fc4)"
    arrays = (CArray(f"@w{k}", "int8_t", wv.ravel().tolist(), what),
              CArray(f"@b{k}", "int32_t", bias.tolist(), f"{op.name}: bias with the input offset folded in"),
              CArray(f"@m{k}", "int32_t", list(op.lowered["mult"]), f"{op.name}: multipliers"),
              CArray(f"@s{k}", "int32_t", list(op.lowered["shift"]), f"{op.name}: shifts"))
    args = {"weights": f"@w{k}", "bias": f"@b{k}", "mult": f"@m{k}", "shift": f"@s{k}"}
    return Kernel("fc", _struct("fc", v), arrays, args, _variant_names(v, "fc4", "rq_fast"), inline=True)


#: the smallest ADD/SUB (output elements) that gets its input tables: 2 x 1 KB of flash buys about 70
#: fewer instructions per element (the two input rescalings, each a 64-bit multiply and a rounding shift)
ADD_LUT_MIN = 256


@constants(ir.Add, ir.Sub)
def _add(k: int, op: ir.Add, g: ir.Graph, opts: Options) -> Kernel:
    """ADD / SUB. From ADD_LUT_MIN output elements (and with Options.add_lut), each input's rescaled value
    comes from a table of its 256 codes (quant.add_input_table; SUB's second table negated), so an
    element costs two loads, an add and the output requantization, which takes the SMMULR path
    (rq_fast) when its shift is <= -1 and the sum provably stays below 2^30."""
    lw = dict(op.lowered)
    arrays, args = const_operands(k, op, g)
    n = int(np.prod(g.t(op.outputs[0]).shape))
    lw.update(add_lut=0, rq_fast=0, out_rnd=0)
    args.update(lut1="NULL", lut2="NULL")
    if opts.add_lut and n >= ADD_LUT_MIN:
        from lwcnn_mcu import quant

        tabs = [quant.add_input_table(lw[f"in{j}_offset"], lw["left_shift"], lw[f"in{j}_mult"], lw[f"in{j}_shift"],
                                      negate=j == 2 and bool(lw["subtract"])) for j in (1, 2)]
        sign = "-" if lw["subtract"] else "+"
        for j, t in zip((1, 2), tabs, strict=True):
            arrays += (CArray(f"@l{k}_{j}", "int32_t", t.tolist(),
                              f"{op.name}: input {j}'s code -128..127 rescaled ({sign if j == 2 else ''}"
                              "TFLite Micro's AddFunc before the sum)"),)
            args[f"lut{j}"] = f"@l{k}_{j} + 128"
        e = -int(lw["out_shift"])
        bound = int(np.abs(tabs[0]).max() + np.abs(tabs[1]).max())
        rnd = (1 << (e - 1)) + (int(lw["out_offset"]) << e) if e >= 1 else 0
        fast = opts.fast_requant and e >= 1 and bound < (1 << 30) and abs(rnd) < (1 << 30)
        lw.update(add_lut=1, rq_fast=int(fast), out_rnd=rnd if fast else 0)
    return Kernel(op.kind, _struct(op.kind, lw), arrays, args, variant=_variant_names(lw, "add_lut", "rq_fast"))


@constants(ir.Mul, ir.Maximum, ir.Minimum)
def _elementwise(k: int, op: ir.Op, g: ir.Graph, opts: Options) -> Kernel:
    """MUL / MAXIMUM / MINIMUM (and ADD / SUB's constant operands): a constant operand (any shape that
    broadcasts) is an int8 array in flash, read with the strides of the op's loops."""
    arrays, args = const_operands(k, op, g)
    return Kernel(op.kind, _struct(op.kind, op.lowered), arrays, args)


def const_operands(k: int, op: ir.Op, g: ir.Graph) -> tuple[tuple[CArray, ...], dict[str, str]]:
    """The constant operands of an elementwise op as int8 arrays in flash, and the call's arguments for them."""
    arrays, args = [], {}
    for j, tid in enumerate(op.inputs):
        if g.t(tid).is_const:
            args[f"in{j}"] = f"@c{k}_{j}"
            arrays.append(CArray(f"@c{k}_{j}", "int8_t", g.t(tid).data.astype(np.int64).ravel().tolist(),
                                 f"{op.name}: constant operand {list(g.t(tid).shape)}"))
    return tuple(arrays), args


@constants(ir.MaxPool2D, ir.AvgPool2D, ir.Mean, ir.ReduceMax, ir.Concatenation, ir.Pad, ir.Reshape, ir.StridedSlice,
           ir.Slice, ir.Softmax, ir.Requantize, ir.Relu)
def _plain(k: int, op: ir.Op, g: ir.Graph, opts: Options) -> Kernel:
    """Ops whose parameters are all in their struct."""
    return Kernel(op.kind, _struct(op.kind, op.lowered))


@constants(ir.Logistic, ir.Tanh, ir.HardSwish, ir.LeakyRelu)
def _lut(k: int, op: ir.Lut, g: ir.Graph, opts: Options) -> Kernel:
    """An int8 activation as a 256-byte table in flash, indexed by the input code + 128."""
    what = op.opcode or op.tflite_ops[0]
    if isinstance(op, ir.LeakyRelu):
        what += f" (alpha {op.alpha:g})"
    table = CArray(f"@t{k}", "int8_t", list(op.lowered["table"]),
                   f"{op.name}: {what} of every int8 input -128..127, TFLite Micro's {op.FUNCTION}")
    return Kernel("lut", _struct("lut", op.lowered), (table,), {"table": f"@t{k}"})


@constants(ir.Prelu)
def _prelu(k: int, op: ir.Prelu, g: ir.Graph, opts: Options) -> Kernel:
    """PRELU: alpha (int8, its own shape) in flash, read through the lowered broadcast strides."""
    alpha = g.t(op.inputs[1])
    arr = CArray(f"@a{k}", "int8_t", alpha.data.astype(np.int64).ravel().tolist(),
                 f"{op.name}: alpha {list(alpha.shape)}")
    return Kernel("prelu", _struct("prelu", op.lowered), (arr,), {"alpha": f"@a{k}"})
@constants(ir.TransposeConv)
def _tconv(k: int, op: ir.TransposeConv, g: ir.Graph, opts: Options) -> Kernel:
    """TRANSPOSE_CONV as a gather: each output pixel sums the taps that reach it (no int32 buffer of
    the whole output, no scratch), starting from the bias. The input offset cannot be folded into
    the bias (border pixels are reached by fewer taps), so it comes per tap: tap_offset =
    in_offset * sum of the tap's weights over the input channels, one int32 per (channel, ky, kx).
    rq_fast (requant_flags) is proved on the bound |bias| + sum|tap_offset| + 128 * sum|w| of every
    partial sum, passed to it as the bias."""
    w = g.t(op.inputs[1])
    wd = w.data.astype(np.int64)
    oc = int(w.shape[0])
    has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
    bias = g.t(op.inputs[2]).data.astype(np.int64) if has_bias else np.zeros(oc, np.int64)
    tap_offset = int(op.lowered["in_offset"]) * wd.sum(axis=3)  # (oc, k_h, k_w)
    rq = requant_flags(op, g, np.abs(bias) + np.abs(tap_offset).reshape(oc, -1).sum(axis=1), opts)
    v = {**op.lowered, "rq_fast": rq["rq_fast"]}
    shape = list(w.shape)
    arrays = (CArray(f"@w{k}", "int8_t", wd.ravel().tolist(), f"{op.name}: weights {shape} (OHWI)"),
              CArray(f"@b{k}", "int32_t", bias.tolist(), f"{op.name}: bias" + ("" if has_bias else " (none: zeros)")),
              CArray(f"@t{k}", "int32_t", tap_offset.ravel().tolist(),
                     f"{op.name}: input offset times each tap's weight sum, per (channel, ky, kx)"),
              CArray(f"@m{k}", "int32_t", list(op.lowered["mult"]), f"{op.name}: multipliers"),
              CArray(f"@s{k}", "int32_t", list(op.lowered["shift"]), f"{op.name}: shifts"),
              CArray(f"@r{k}", "int32_t", list(rq["rnd"]),
                     f"{op.name}: rounding + output offset << -shift (fast requantization)"))
    args = {"weights": f"@w{k}", "bias": f"@b{k}", "tap_offset": f"@t{k}", "mult": f"@m{k}", "shift": f"@s{k}",
            "rnd": f"@r{k}"}
    return Kernel("tconv", _struct("tconv", v), arrays, args, _variant_names(v, "rq_fast"), inline=True)


@constants(ir.ResizeNearest)
def _resize_nearest(k: int, op: ir.ResizeNearest, g: ir.Graph, opts: Options) -> Kernel:
    """The source row and column of every output pixel, as element offsets into the input, in flash."""
    lw = op.lowered
    arrays = (CArray(f"@ry{k}", "int32_t", list(lw["row_offsets"]),
                     f"{op.name}: per output row, the offset of its source row (in_y * in_w * channels)"),
              CArray(f"@rx{k}", "int32_t", list(lw["col_offsets"]),
                     f"{op.name}: per output column, the offset of its source pixel in a row (in_x * channels)"))
    return Kernel("resize_nearest", _struct("resize_nearest", lw), arrays, {"rows": f"@ry{k}", "cols": f"@rx{k}"})


assert set(_CONSTANTS) == set(ir.OP_CLASSES), "every IR op needs its @constants function"
assert {c.kind for c in ir.OP_CLASSES} == set(FIELDS), "every kernel needs its FIELDS row"


def kernels(g: ir.Graph, opts: Options | None = None) -> tuple[Kernel, ...]:
    """The Kernel of every op of a lowered graph, in graph order: with kernels="cmsis-nn" CMSIS-NN's call where
    :func:`cmsis_kernel` has one, ours otherwise."""
    opts = opts or Options()
    if opts.kernels not in KERNEL_SETS:
        raise LwcnnError(f"unknown kernels '{opts.kernels}'; choose {' or '.join(KERNEL_SETS)}")
    out = []
    for k, op in enumerate(g.ops):
        kern = cmsis_kernel(k, op, g) if opts.kernels == "cmsis-nn" else None
        out.append(kern or _CONSTANTS[type(op)](k, op, g, opts))
    return tuple(out)


# --- CMSIS-NN (kernels="cmsis-nn") ------------------------------------------------------------------
#
# The same ops through CMSIS-NN's s8 API, with TFLite's constants as TFLite Micro's CMSIS-NN kernels pass
# them: weights in TFLite's own layouts (OHWI, 1HWC, [out, in]), the int32 bias as it is (no input offset
# folded in: CMSIS-NN adds the offset itself), per-channel multipliers and shifts. Each Kernel's params are
# the numbers its template ops/cmsis/<op>.c.j2 prints into CMSIS-NN's structs; its scratch_bytes is the
# kernel's *_get_buffer_size, computed here with CMSIS-NN's formula (lwcnn_mcu.cmsis_nn.COMMIT) for the larger
# of its two builds we run: the Cortex-M DSP build (ARM_MATH_DSP, GCC) on the target and the portable C on
# the host.

CMSIS_FUNCTIONS: dict[str, str] = {
    "cmsis/conv": "arm_convolve_wrapper_s8",
    "cmsis/dwconv": "arm_depthwise_conv_wrapper_s8",
    "cmsis/fc": "arm_fully_connected_s8",
    "cmsis/fc_per_channel": "arm_fully_connected_per_channel_s8",
    "cmsis/maxpool": "arm_max_pool_s8",
    "cmsis/avgpool": "arm_avgpool_s8",
    "cmsis/softmax": "arm_softmax_s8",
    "cmsis/add": "arm_elementwise_add_s8",
    "cmsis/mul": "arm_elementwise_mul_s8",
}

#: flash bytes of the static const structs each call's template prints, on a 32-bit target (int32_t fields,
#: 4-byte pointers): the parameters, the quantization (two pointers, or multiplier and shift), 16 per cmsis_nn_dims
CMSIS_STRUCT_BYTES: dict[str, int] = {
    "cmsis/conv": 40 + 8 + 4 * 16,
    "cmsis/dwconv": 44 + 8 + 4 * 16,
    "cmsis/fc": 20 + 8 + 4 * 16,
    "cmsis/fc_per_channel": 20 + 8 + 4 * 16,
    "cmsis/maxpool": 24 + 3 * 16,
    "cmsis/avgpool": 24 + 3 * 16,
    "cmsis/softmax": 0,
    "cmsis/add": 0,
    "cmsis/mul": 0,
}


def cmsis_conv_buffer_size(v: dict[str, Any]) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size: a 1x1 unpadded undilated convolution needs none (the
    buffered 1x1 stride-1 variant is built only by Arm Compiler 6, not GCC); the rest (1xN rows included)
    two im2col columns of int16, each k_h * k_w * in_c rounded up to 4."""
    if (v["pad_top"] == v["pad_left"] == 0 and v["k_h"] == v["k_w"] == 1 and v["dil_h"] == v["dil_w"] == 1):
        return 0
    cols = int(v["k_h"] * v["k_w"] * v["in_c"])
    return 2 * ((cols + 3) // 4 * 4) * 2


def cmsis_dwconv_buffer_size(v: dict[str, Any]) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size, DSP build (the portable build needs none): channel
    multiplier 1 and no dilation take arm_depthwise_conv_3x3_s8 (a 3x3 filter padded at most 1: no buffer)
    or arm_depthwise_conv_s8_opt (in_c * k_h * k_w int16); anything else arm_depthwise_conv_s8 (none)."""
    if v["depth_mult"] != 1 or v["dil_h"] != 1 or v["dil_w"] != 1:
        return 0
    if v["k_h"] == v["k_w"] == 3 and v["pad_top"] <= 1 and v["pad_left"] <= 1:
        return 0
    return int(v["in_c"] * v["k_h"] * v["k_w"]) * 2


def _batch1(op: ir.Op, g: ir.Graph) -> bool:
    shape = g.t(op.inputs[0]).shape
    return len(shape) in (3, 4) and shape[0] == 1


def _bias(k: int, op: ir.Op, g: ir.Graph, n: int) -> CArray:
    has = len(op.inputs) > 2 and op.inputs[2] >= 0
    values = g.t(op.inputs[2]).data.astype(np.int64).tolist() if has else [0] * n
    return CArray(f"@b{k}", "int32_t", values, f"{op.name}: bias" + ("" if has else " (none: zeros)"))


def _quant_arrays(k: int, op: ir.Op) -> tuple[CArray, CArray]:
    return (CArray(f"@m{k}", "int32_t", list(op.lowered["mult"]), f"{op.name}: multipliers"),
            CArray(f"@s{k}", "int32_t", list(op.lowered["shift"]), f"{op.name}: shifts"))


def cmsis_kernel(k: int, op: ir.Op, g: ir.Graph) -> Kernel | None:
    """The CMSIS-NN call of an op, or None when CMSIS-NN lacks it (our kernel runs it: a fallback)."""
    lw: dict[str, Any] = dict(op.lowered)
    if type(op) is ir.Conv2D and _batch1(op, g):
        w = g.t(op.inputs[1])
        arrays = (CArray(f"@w{k}", "int8_t", w.data.astype(np.int64).ravel().tolist(),
                         f"{op.name}: weights {list(w.shape)} (OHWI)"), _bias(k, op, g, int(w.shape[0])),
                  *_quant_arrays(k, op))
        return Kernel("cmsis/conv", {**lw, "scratch_bytes": cmsis_conv_buffer_size(lw)}, arrays,
                      {"weights": f"@w{k}", "bias": f"@b{k}", "mult": f"@m{k}", "shift": f"@s{k}", "scratch": "NULL"},
                      scratch_bytes=cmsis_conv_buffer_size(lw))
    if type(op) is ir.DepthwiseConv2D and _batch1(op, g):
        w = g.t(op.inputs[1])
        arrays = (CArray(f"@w{k}", "int8_t", w.data.astype(np.int64).ravel().tolist(),
                         f"{op.name}: weights {list(w.shape)} (1HWC)"), _bias(k, op, g, int(w.shape[-1])),
                  *_quant_arrays(k, op))
        size = cmsis_dwconv_buffer_size(lw)
        return Kernel("cmsis/dwconv", {**lw, "scratch_bytes": size}, arrays,
                      {"weights": f"@w{k}", "bias": f"@b{k}", "mult": f"@m{k}", "shift": f"@s{k}", "scratch": "NULL"},
                      scratch_bytes=size)
    if type(op) is ir.FullyConnected:
        # per-tensor weights (one multiplier and shift): arm_fully_connected_s8; per-channel weights (as the
        # shipped models have them): arm_fully_connected_per_channel_s8. Neither needs a buffer but on Helium.
        w = g.t(op.inputs[1])
        per_tensor = len(set(lw["mult"])) == 1 and len(set(lw["shift"])) == 1
        arrays: tuple[CArray, ...] = (CArray(f"@w{k}", "int8_t", w.data.astype(np.int64).ravel().tolist(),
                                             f"{op.name}: weights {list(w.shape)} ([out, in])"),
                                      _bias(k, op, g, int(w.shape[0])))
        v = {**lw, "batches": g.t(op.inputs[0]).size // int(lw["in_n"])}
        if per_tensor:
            v.update(mult=lw["mult"][0], shift=lw["shift"][0])
            return Kernel("cmsis/fc", v, arrays, {"weights": f"@w{k}", "bias": f"@b{k}"})
        return Kernel("cmsis/fc_per_channel", v, arrays + _quant_arrays(k, op),
                      {"weights": f"@w{k}", "bias": f"@b{k}", "mult": f"@m{k}", "shift": f"@s{k}"})
    if isinstance(op, ir.MaxPool2D) and _batch1(op, g):  # AvgPool2D too
        avg = isinstance(op, ir.AvgPool2D)
        size = 4 * int(lw["in_c"]) if avg else 0  # arm_avgpool_s8_get_buffer_size, DSP build: an int32 per channel
        return Kernel("cmsis/avgpool" if avg else "cmsis/maxpool", {**lw, "scratch_bytes": size}, (),
                      {"scratch": "NULL"}, scratch_bytes=size)
    if type(op) is ir.Softmax:
        return Kernel("cmsis/softmax", lw)
    if type(op) in (ir.Add, ir.Mul) and lw["n0"] == lw["n1"] == lw["n2"] == 1 and lw["in1_s3"] == lw["in2_s3"] == 1:
        # same-shape inputs only (CMSIS-NN's elementwise s8 kernels do not broadcast)
        arrays, args = const_operands(k, op, g)
        return Kernel(f"cmsis/{op.kind}", lw, arrays, args)
    return None


def kernel_path(kern: Kernel) -> str:
    """The code path a layer runs, named for reports (benchmarks/perf.py puts it beside a layer's cost): the
    CMSIS-NN function of a CMSIS-NN call; for our kernels what the Options and the layer's shape chose, read back
    from its params - pw16 records or the 2x2 register tile, windows read in place or a gathered patch (and why
    not in place), dw_rows, dw16 or the per-channel depthwise loop, fc4 or one row at a time, ADD's input tables -
    and the kernel's kind for the rest. Read-only: the same choices the constants functions above made."""
    if kern.cmsis:
        return kern.function
    p = kern.params
    if kern.kind in ("conv", "convpool"):
        if kern.kind == "convpool" and not p["pw16"] and not _direct(p):
            where = "gathered patches (one per pooling-window pixel)"  # lw_convpool_s8 gathers unless a direct 1x1
        elif p["in_place"]:
            where = "windows in place"
        elif p["in_c"] % 4:
            where = f"gathered patch ({p['in_c']} input channel{'s' if p['in_c'] != 1 else ''}, not 4k)"
        elif p["dil_w"] != 1:
            where = "gathered patch (dilated columns)"
        else:
            where = "gathered patch"
        return f"{'pw16' if p['pw16'] else '2x2 tile'}, {where}"
    if kern.kind == "dwconv":
        if p["dw_rows"]:
            return "dw_rows"
        if p["dw16"]:
            return "dw16" + (" (dilated)" if p["dil_h"] != 1 or p["dil_w"] != 1 else "")
        why = f"depth multiplier {p['depth_mult']}" if p["depth_mult"] != 1 else (
            f"{p['in_c']} channels, not 4k" if p["in_c"] % 4 else "dw16 off")
        return f"per channel ({why})"
    if kern.kind == "fc":
        if p["fc4"]:
            return "fc4"
        return "one row at a time (" + (f"{p['in_n']} inputs, not 4k" if p["in_n"] % 4 else
                                         f"{p['out_n']} outputs" if p["out_n"] < 4 else "fc4 off") + ")"
    if kern.kind == "add":
        return "input tables" if p["add_lut"] else "rescaled per element"
    return kern.kind


def fallback(g: ir.Graph, kerns: Sequence[Kernel]) -> list[str]:
    """The ops our kernels run in a kernels="cmsis-nn" build (CMSIS-NN lacks them): "layer (OP)"."""
    return [f"{op.name} ({op.opcode or op.kind.upper()})" for op, kern in zip(g.ops, kerns, strict=True)
            if not kern.cmsis]
