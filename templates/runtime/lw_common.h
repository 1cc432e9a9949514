/*
 * lw_common.h - fixed-point helpers shared by the lwcnn-mcu int8 kernels.
 *
 * These reproduce, bit for bit, the integer arithmetic of TensorFlow Lite Micro's reference
 * kernels (gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT, TFLite's
 * MultiplyByQuantizedMultiplier with its default "double rounding"). No floating point.
 */
#ifndef LW_COMMON_H
#define LW_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lw_params.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define LW_DSP 1
#else
#define LW_DSP 0
#endif

#define LW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LW_MAX(a, b) ((a) > (b) ? (a) : (b))
#define LW_CLAMP(v, lo, hi) LW_MIN(LW_MAX((v), (lo)), (hi))

/* round(a * b / 2^31), saturating the single overflow case a == b == INT32_MIN. */
static inline int32_t lw_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero; exponent in [0, 31]. */
static inline int32_t lw_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* Wrapping left shift (what TFLite's x * (1 << s) does on two's-complement targets). */
static inline int32_t lw_shl(int32_t x, int32_t s)
{
    return (int32_t)((uint32_t)x << s);
}

/* TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31), double rounding. */
static inline int32_t lw_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return lw_rdbpot(lw_srdhm(lw_shl(x, left), multiplier), right);
}

/* sum of x[i] * w[i] over n int8 pairs. With the DSP extension: four pairs per step, sign-extended
 * in halfword pairs (SXTB16) and multiply-accumulated two at a time (SMLAD). Integer sums, so the
 * result is identical on every path. */
static inline int32_t lw_dot_s8(const int8_t *x, const int8_t *w, int32_t n)
{
    int32_t acc = 0;
    int32_t i = 0;
#if LW_DSP
    for (; i + 4 <= n; i += 4) {
        int32_t xv, wv;
        memcpy(&xv, x + i, 4);
        memcpy(&wv, w + i, 4);
        acc = __smlad(__sxtb16(xv), __sxtb16(wv), acc);
        acc = __smlad(__sxtb16((int32_t)((uint32_t)xv >> 8)), __sxtb16((int32_t)((uint32_t)wv >> 8)), acc);
    }
#endif
    for (; i < n; ++i) {
        acc += x[i] * w[i];
    }
    return acc;
}

#endif /* LW_COMMON_H */
