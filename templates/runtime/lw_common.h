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

/* lw_srdhm for a positive multiplier m (m != INT32_MIN, so it cannot saturate). TFLite's
 * trunc((a*m + nudge) / 2^31), with nudge 2^30 or 1 - 2^30 by sign, equals floor((a*m + 2^30) / 2^31)
 * in both cases: one multiply-accumulate and a shift, no 64-bit division. */
static inline int32_t lw_srdhm_pos(int32_t a, int32_t m)
{
    const int64_t ab = (int64_t)a * (int64_t)m + ((int64_t)1 << 30);
    return (int32_t)(ab >> 31);
}

/* TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31), double rounding.
 * multiplier is in [2^30, 2^31) or 0 (as QuantizeMultiplier makes it). */
static inline int32_t lw_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return lw_rdbpot(lw_srdhm_pos(lw_shl(x, left), multiplier), right);
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

/* Gather the k_h x k_w x in_c window whose top-left tap is (iy0, ix0) into patch (NHWC order),
 * taps outside the input set to the input zero point zp (offset-corrected value 0), then zeros up
 * to patch_len. Rows inside the input are one copy of k_w * in_c contiguous bytes. */
static inline void lw_gather_s8(const int8_t *input, int32_t in_h, int32_t in_w, int32_t in_c, int32_t k_h,
                                int32_t k_w, int32_t dil_h, int32_t dil_w, int32_t iy0, int32_t ix0, int8_t zp,
                                int32_t patch_len, int8_t *patch)
{
    int8_t *dst = patch;
    for (int32_t ky = 0; ky < k_h; ++ky) {
        const int32_t iy = iy0 + dil_h * ky;
        if (dil_w == 1 && iy >= 0 && iy < in_h && ix0 >= 0 && ix0 + k_w <= in_w) {
            memcpy(dst, input + (iy * in_w + ix0) * in_c, (size_t)(k_w * in_c));
            dst += k_w * in_c;
            continue;
        }
        for (int32_t kx = 0; kx < k_w; ++kx) {
            const int32_t ix = ix0 + dil_w * kx;
            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                memset(dst, zp, (size_t)in_c);
            } else {
                memcpy(dst, input + (iy * in_w + ix) * in_c, (size_t)in_c);
            }
            dst += in_c;
        }
    }
    while (dst < patch + patch_len) {
        *dst++ = 0; /* the weight rows are zero there too */
    }
}

#endif /* LW_COMMON_H */
