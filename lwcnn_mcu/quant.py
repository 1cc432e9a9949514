"""Fixed-point quantization constants, computed exactly the way TFLite (Micro) computes them.

Everything here runs once at compile time, in Python, with the same float32/double semantics as
TFLite's C++ (`quantization_util.cc`, `kernel_util.cc`): scales are stored as float32 in the
flatbuffer and widened to double before they are combined. The generated C only ever sees the
resulting int32 multipliers and shifts.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> int:
    """C's std::round / roundf: halves go away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2^(shift-31), m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    m, s = quantize_multiplier(real)
    if s > 0:
        raise ValueError(f"multiplier {real} is not smaller than one")
    return m, s


def quantize_multiplier_greater_than_one(real: float) -> tuple[int, int]:
    m, s = quantize_multiplier(real)
    if s < 0:
        raise ValueError(f"multiplier {real} is not greater than one")
    return m, s


def f32(x: float) -> np.float32:
    return np.float32(x)


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 (f / scale in float32, then roundf)."""

    def q(f: float) -> int:
        return zero_point + round_half_away(float(f32(f) / f32(scale)))

    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    if activation == "RELU":
        return max(INT8_MIN, q(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, q(0.0)), min(INT8_MAX, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, q(-1.0)), min(INT8_MAX, q(1.0))
    raise ValueError(f"unsupported fused activation {activation}")


def conv_multipliers(input_scale: float, filter_scales: list[float], output_scale: float,
                     channels: int) -> tuple[list[int], list[int]]:
    """PopulateConvolutionQuantizationParams: one (multiplier, shift) per output channel."""
    mults, shifts = [], []
    for c in range(channels):
        fs = filter_scales[c] if len(filter_scales) > 1 else filter_scales[0]
        eff = float(input_scale) * float(fs) / float(output_scale)
        m, s = quantize_multiplier(eff)
        mults.append(m)
        shifts.append(s)
    return mults, shifts


SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5


def softmax_input_multiplier(beta: float, input_scale: float) -> float:
    """PreprocessSoftmaxScaling's real multiplier for int8: beta * input_scale * 2^26 (double), capped at 2^31-1.

    TFLite (Micro) hands it to QuantizeMultiplierGreaterThanOne, whose TFLITE_CHECK_GT(multiplier, 1.0)
    aborts the process, without a message, when it is not above 1 (an input scale under ~1.5e-8 for beta 1)."""
    max_real = float((1 << 31) - 1)
    return min(float(beta) * float(input_scale) * (1 << (31 - SOFTMAX_SCALED_DIFF_INTEGER_BITS)), max_real)


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius for int8 (5 integer bits, double rounding).

    A multiplier in [0.5, 1] gets left shift 0 and the kernel runs as TFLite's would without its check
    (TFLite itself aborts there, see :func:`softmax_input_multiplier`); below 0.5 there is no such kernel."""
    k_scaled_diff_integer_bits = SOFTMAX_SCALED_DIFF_INTEGER_BITS
    real = softmax_input_multiplier(beta, input_scale)
    mult, left_shift = quantize_multiplier_greater_than_one(real)
    max_input_rescaled = (
        1.0 * ((1 << k_scaled_diff_integer_bits) - 1) * (1 << (31 - k_scaled_diff_integer_bits))
        / (1 << left_shift)
    )
    diff_min = -int(math.floor(max_input_rescaled))
    return mult, left_shift, diff_min


def add_params(s1: float, s2: float, so: float) -> dict[str, int]:
    """TFLite int8 ADD: inputs rescaled to a common 2*max scale with 20 bits of headroom."""
    left_shift = 20
    twice_max = 2.0 * float(max(f32(s1), f32(s2)))
    m1, sh1 = quantize_multiplier_smaller_than_one(float(s1) / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one(float(s2) / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one(twice_max / ((1 << left_shift) * float(so)))
    return {"left_shift": left_shift, "in1_mult": m1, "in1_shift": sh1, "in2_mult": m2,
            "in2_shift": sh2, "out_mult": mo, "out_shift": sho}


def mean_params(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """TFLM QuantizedMeanOrSum: fold 1/count into the input/output rescale."""
    mult, shift = quantize_multiplier(float(in_scale) / float(out_scale))
    k = count.bit_length() - 1
    k = min(k, 32)
    k = min(k, 31 + shift)
    mult = int((mult << k) // count)
    return mult, shift - k


def srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 (TFLite's MultiplyByQuantizedMultiplier core)."""
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    return v >> 31 if v >= 0 else -((-v) >> 31)  # C++ division truncates toward zero


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier(int32 x, int32 multiplier, int shift) (the 32-bit version)."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rounding_divide_by_pot(srdhm(x * (1 << left), multiplier), right)
