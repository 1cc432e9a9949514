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


class MultiplierRangeError(ValueError):
    """A real multiplier outside the range TFLite (Micro) accepts for it: its TFLITE_CHECK then aborts the
    interpreter. The compiler turns it into a clear refusal naming the op (passes.lower_ops)."""


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    m, s = quantize_multiplier(real)
    if s > 0:
        raise MultiplierRangeError(f"multiplier {real:.4g} is not smaller than one")
    return m, s


def quantize_multiplier_greater_than_one(real: float) -> tuple[int, int]:
    m, s = quantize_multiplier(real)
    if s < 0:
        raise MultiplierRangeError(f"multiplier {real:.4g} is not greater than one")
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


# --- TFLite Micro's integer arithmetic, emulated on numpy int64 arrays ----------------------------
# The int8 activations LOGISTIC, TANH, HARD_SWISH and LEAKY_RELU map each of the 256 input codes to
# one output code, so the compiler runs TFLite Micro's kernel here once per code (op_table) and the
# target only looks the answer up. Every function below is one integer primitive of TFLite Micro
# (kernels/internal/common.h, fixedpoint.h, gemmlowp), on arrays, with C's wrapping and truncation.

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
I16_MIN, I16_MAX = -(1 << 15), (1 << 15) - 1


def wrap(x: np.ndarray, bits: int = 32) -> np.ndarray:
    """Two's-complement wrap to a signed ``bits``-bit integer (a C cast or an overflowing add)."""
    x = np.asarray(x, np.int64)
    half = np.int64(1) << (bits - 1)
    return ((x + half) & ((half << 1) - 1)) - half


def _trunc_div_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """C's x / 2^exponent on integers: the quotient truncated toward zero."""
    return np.where(x >= 0, x >> exponent, -((-x) >> exponent))


def srdhm(a: np.ndarray, b: np.ndarray | int, bits: int = 32) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^(bits-1)), ties away from zero,
    with the single overflow a == b == minimum saturated to the maximum (VQRDMULH)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    lo = -(1 << (bits - 1))
    ab = a * b
    nudge = np.where(ab >= 0, 1 << (bits - 2), 1 - (1 << (bits - 2)))
    r = _trunc_div_pot(ab + nudge, bits - 1)
    return np.where((a == lo) & (b == lo), (1 << (bits - 1)) - 1, wrap(r, bits))


def sdhm16(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """TFLite's int16 SaturatingDoublingHighMul (hard_swish.h): a * b / 2^15 truncated toward zero
    (no rounding), -32768 * -32768 saturated to 32767."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    r = wrap(_trunc_div_pot(a * b, 15), 16)
    return np.where((a == I16_MIN) & (b == I16_MIN), I16_MAX, r)


def rdbpot(x: np.ndarray, exponent: int, bits: int = 32) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero. For
    int16 (bits 16) each intermediate is an int16, as in the template: the mask (2^e - 1) is cast
    to int16, so an exponent above 15 gives what TFLite's int16 code gives, not a true division."""
    x = np.asarray(x, np.int64)
    mask = int(wrap(np.int64((1 << exponent) - 1), bits))
    remainder = x & mask
    threshold = wrap((mask >> 1) + (x < 0).astype(np.int64), bits)
    return wrap((x >> exponent) + (remainder > threshold).astype(np.int64), bits)


def mbqm(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (double rounding): x * m * 2^(shift - 31)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rdbpot(srdhm(wrap(np.asarray(x, np.int64) << left), multiplier), right)


def add_input_table(offset: int, left_shift: int, multiplier: int, shift: int, negate: bool = False) -> np.ndarray:
    """ADD/SUB: one input's rescaled value for each of the 256 int8 codes -128..127, as TFLite Micro's
    AddFunc computes it per element: mbqm((code + offset) << left_shift, multiplier, shift); negated for
    SUB's second input (sx - sy = sx + (-sy), |sy| < 2^28)."""
    t = mbqm((np.arange(-128, 128, dtype=np.int64) + offset) << left_shift, multiplier, shift)
    return -t if negate else t


def sat_shl(x: np.ndarray, exponent: int, bits: int = 32) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for exponent >= 0 (Rescale to fewer
    integer bits): x * 2^exponent, saturated to the raw type."""
    x = np.asarray(x, np.int64)
    return np.clip(x << exponent, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp exp_on_negative_values: exp(a) for a <= 0 given as int32 with ``integer_bits``
    integer bits; the result has 0 integer bits (Q0.31). A Taylor polynomial on [-1/4, 0) times
    exp(-2^k) for each bit k of the rest."""
    a = np.asarray(a, np.int64)
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = wrap((a & (quarter - 1)) - quarter)
    result = _exp_quarter(sat_shl(a_mod, integer_bits))
    remainder = wrap(a_mod - a)
    barrel = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
              (4, 242))
    for exponent, multiplier in barrel:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac_bits + exponent))) != 0
            result = np.where(bit, srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, I32_MAX, result)


def _exp_quarter(a: np.ndarray) -> np.ndarray:
    """gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl (Q0.31 in and out)."""
    exp_minus_eighth, one_third = 1895147668, 715827883
    x = wrap(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = rdbpot(wrap(srdhm(wrap(rdbpot(x4, 2) + x3), one_third) + x2), 1)
    return wrap(exp_minus_eighth + srdhm(exp_minus_eighth, wrap(x + poly)))


def _newton_reciprocal(a: np.ndarray) -> np.ndarray:
    """gemmlowp's Newton-Raphson 1 / (1 + a) for a in (0, 1) Q0.31: x in Q2.29 after three steps
    (the shared core of one_over_one_plus_x_for_x_in_0_1 and one_minus_x_over_one_plus_x)."""
    s = np.asarray(a, np.int64) + I32_MAX
    half_denominator = _trunc_div_pot(s + np.where(s >= 0, 1, -1), 1)  # RoundingHalfSum(a, One)
    x = wrap(1515870810 + srdhm(half_denominator, -1010580540))  # 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = wrap((1 << 29) - srdhm(half_denominator, x))
        x = wrap(x + sat_shl(srdhm(x, one_minus), 2))
    return x


def fixed_logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp logistic(a) for int32 a with ``integer_bits`` integer bits; Q0.31 result."""
    a = np.asarray(a, np.int64)
    positive = a > 0
    abs_a = np.where(positive, a, wrap(-a))
    if_positive = sat_shl(_newton_reciprocal(exp_on_negative_values(wrap(-abs_a), integer_bits)), 1)
    if_negative = wrap(I32_MAX - if_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, if_positive, if_negative))


def fixed_tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp tanh(a) for int32 a with ``integer_bits`` integer bits; Q0.31 result."""
    a = np.asarray(a, np.int64)
    negative = a < 0
    n = np.where(negative, a, wrap(-a))
    t = sat_shl(wrap(_newton_reciprocal(exp_on_negative_values(n, integer_bits + 1)) - (1 << 29)), 2)
    return np.where(a == 0, 0, np.where(negative, wrap(-t), t))


INT8_CODES = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64)


def _sigmoid_prepare(input_scale: float) -> tuple[int, int, int]:
    """The int8 Prepare of LOGISTIC and TANH: the input rescaled to Q4.27 by (multiplier, left shift)
    from frexp(scale * 2^27), and the radius beyond which the output saturates
    (CalculateInputRadius(4, shift, 31))."""
    q, shift = math.frexp(float(f32(input_scale)) * float(1 << 27))
    multiplier = round_half_away(q * float(1 << 31))
    if shift < 0:
        raise ValueError(f"input scale {input_scale} is too small for TFLite's int8 logistic/tanh")
    radius = math.floor(15.0 * float(1 << 27) / float(1 << shift))
    return multiplier, shift, radius


def logistic_table(input_scale: float, input_zp: int) -> np.ndarray:
    """The 256 outputs of TFLite Micro's int8 LOGISTIC (reference_integer_ops::Logistic) for the
    inputs -128..127; the output is always scale 1/256, zero point -128."""
    multiplier, shift, radius = _sigmoid_prepare(input_scale)
    x = INT8_CODES - input_zp
    y = rdbpot(fixed_logistic(mbqm(x, multiplier, shift), 4), 23) - 128
    y = np.clip(y, INT8_MIN, INT8_MAX)
    return np.where(x <= -radius, INT8_MIN, np.where(x >= radius, INT8_MAX, y))


def tanh_table(input_scale: float, input_zp: int) -> np.ndarray:
    """The 256 outputs of TFLite Micro's int8 TANH (reference_integer_ops::Tanh) for the inputs
    -128..127: scale 1/128, zero point 0, whatever the output tensor says."""
    multiplier, shift, radius = _sigmoid_prepare(input_scale)
    x = INT8_CODES - input_zp
    y = np.clip(rdbpot(fixed_tanh(mbqm(x, multiplier, shift), 4), 24), INT8_MIN, INT8_MAX)
    return np.where(x <= -radius, INT8_MIN, np.where(x >= radius, INT8_MAX, y))


def downscale_multiplier_to_int16(m: int) -> int:
    """TFLite DownScaleInt32ToInt16Multiplier: the int32 multiplier rounded to its high 16 bits."""
    if m >= I32_MAX - (1 << 15):
        return I16_MAX
    return (m + (1 << 15)) >> 16


def hard_swish_params(input_scale: float, output_scale: float) -> dict[str, int]:
    """TFLite Micro's HardSwishPrepare for int8: the scales combined in float32, as there."""
    hires = f32(1.0 / 128.0) * f32(input_scale)
    out_m, out_e = quantize_multiplier(float(hires / f32(output_scale)))
    relu_m, relu_e = quantize_multiplier(float(hires / (f32(3.0) / f32(32768.0))))
    if out_e > 0:
        raise ValueError("HARD_SWISH needs input_scale / (128 * output_scale) < 1 (TFLite Micro refuses it)")
    return {"out_mult": downscale_multiplier_to_int16(out_m), "out_exp": out_e,
            "relu_mult": downscale_multiplier_to_int16(relu_m), "relu_exp": relu_e}


def hard_swish_table(input_scale: float, input_zp: int, output_scale: float, output_zp: int) -> np.ndarray:
    """The 256 outputs of TFLite Micro's int8 HARD_SWISH (reference_ops::HardSwish, int16
    fixed-point) for the inputs -128..127."""
    p = hard_swish_params(input_scale, output_scale)
    x = wrap(INT8_CODES - input_zp, 16)
    hires = wrap(x * 128, 16)
    preshift = srdhm(hires, p["out_mult"], 16)
    reluish = hires
    if p["relu_exp"] > 0:
        reluish = sat_shl(reluish, p["relu_exp"] - 1, 16)
    reluish = srdhm(reluish, p["relu_mult"], 16)
    if p["relu_exp"] > 0:
        reluish = sat_shl(reluish, 1, 16)
    if p["relu_exp"] < 0:
        reluish = rdbpot(reluish, -p["relu_exp"], 16)
    reluish = wrap((reluish + (1 << 15)) >> 1, 16)
    y = rdbpot(sdhm16(reluish, preshift), -p["out_exp"], 16)
    y = wrap(y + output_zp, 16)
    return np.clip(y, INT8_MIN, INT8_MAX)


def leaky_relu_params(input_scale: float, output_scale: float, alpha: float) -> dict[str, int]:
    """TFLite Micro's CalculateOpDataLeakyRelu: both multipliers from float32 arithmetic."""
    s_in, s_out = f32(input_scale), f32(output_scale)
    alpha_m, alpha_s = quantize_multiplier(float(s_in * f32(alpha) / s_out))
    ident_m, ident_s = quantize_multiplier(float(s_in / s_out))
    return {"alpha_mult": alpha_m, "alpha_shift": alpha_s, "ident_mult": ident_m, "ident_shift": ident_s}


def leaky_relu_table(input_scale: float, input_zp: int, output_scale: float, output_zp: int,
                     alpha: float) -> np.ndarray:
    """The 256 outputs of TFLite Micro's int8 LEAKY_RELU (reference_ops::QuantizeLeakyRelu): the
    identity multiplier for inputs at or above the zero point, alpha's below (a negative alpha
    multiplies by |alpha| and negates)."""
    p = leaky_relu_params(input_scale, output_scale, alpha)
    x = INT8_CODES - input_zp
    pos = mbqm(x, p["ident_mult"], p["ident_shift"])
    m = p["alpha_mult"]
    neg = mbqm(x, abs(m), p["alpha_shift"])
    neg = -neg if m < 0 else neg
    return np.clip(np.where(x >= 0, pos, neg) + output_zp, INT8_MIN, INT8_MAX)
