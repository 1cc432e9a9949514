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

/*
 * SIMD path selection. LW_SIMD is 1 when the kernels use the packed-halfword (SXTB16/SMLAD)
 * formulation: on a core with the DSP extension (Cortex-M4/M7/M33, __ARM_FEATURE_DSP) through
 * the ACLE intrinsics, or on a host with LW_SIMD_EMULATE defined, through exact C models of the
 * same instructions (how the host tests check the DSP code path bit for bit). Otherwise the
 * portable scalar C kernels are used. All integer sums, so every path gives identical bytes.
 */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(LW_PORTABLE)
#include <arm_acle.h>
#define LW_DSP 1
#define LW_SIMD 1
#elif defined(LW_SIMD_EMULATE)
#define LW_DSP 0
#define LW_SIMD 1
#else
#define LW_DSP 0
#define LW_SIMD 0
#endif

#if LW_SIMD
#if LW_DSP
/* bytes 0 and 2 of x, sign-extended to two halfwords */
static inline int32_t lw_sxtb16(int32_t x)
{
    return (int32_t)__sxtb16(x);
}
/* bytes 1 and 3 of x, sign-extended to two halfwords (SXTB16 with ROR #8) */
static inline int32_t lw_sxtb16_ror8(int32_t x)
{
#if defined(__GNUC__)
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x)); /* one instruction; GCC emits two for __ror */
    return r;
#else
    return (int32_t)__sxtb16(__ror((uint32_t)x, 8));
#endif
}
/* acc + lo(a) * lo(b) + hi(a) * hi(b) */
static inline int32_t lw_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}
/* lo(a) * lo(b) + hi(a) * hi(b) */
static inline int32_t lw_smuad(int32_t a, int32_t b)
{
    return __smuad(a, b);
}
/* acc + lo(a) * lo(b); SMLATT: acc + hi(a) * hi(b) */
static inline int32_t lw_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return __smlabb(a, b, acc);
}
/* two halfword additions (wrapping) */
static inline int32_t lw_sadd16(int32_t a, int32_t b)
{
    return (int32_t)__sadd16(a, b);
}
static inline int32_t lw_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return __smlatt(a, b, acc);
}
#else
static inline int32_t lw_h16(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)(uint16_t)hi << 16) | (uint16_t)lo);
}
static inline int32_t lw_sxtb16(int32_t x)
{
    return lw_h16((int8_t)(x & 0xff), (int8_t)((x >> 16) & 0xff));
}
static inline int32_t lw_sxtb16_ror8(int32_t x)
{
    return lw_h16((int8_t)((x >> 8) & 0xff), (int8_t)((x >> 24) & 0xff));
}
static inline int32_t lw_smlad(int32_t a, int32_t b, int32_t acc)
{
    const int32_t lo = (int16_t)(a & 0xffff) * (int16_t)(b & 0xffff);
    const int32_t hi = (int16_t)((a >> 16) & 0xffff) * (int16_t)((b >> 16) & 0xffff);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi); /* SMLAD wraps */
}
static inline int32_t lw_smuad(int32_t a, int32_t b)
{
    return lw_smlad(a, b, 0);
}
static inline int32_t lw_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int16_t)(a & 0xffff) * (int16_t)(b & 0xffff)));
}
static inline int32_t lw_sadd16(int32_t a, int32_t b)
{
    /* each halfword sum is of two int16 values: it cannot overflow an int */
    const int32_t lo = (int16_t)(a & 0xffff) + (int16_t)(b & 0xffff);
    const int32_t hi = (int16_t)((a >> 16) & 0xffff) + (int16_t)((b >> 16) & 0xffff);
    return lw_h16((int16_t)(lo & 0xffff), (int16_t)(hi & 0xffff));
}
static inline int32_t lw_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int16_t)((a >> 16) & 0xffff) * (int16_t)((b >> 16) & 0xffff)));
}
#endif
#endif

/* (a * b + 2^31) >> 32: the rounded high word of the product (SMMULR) */
static inline int32_t lw_smmulr(int32_t a, int32_t b)
{
#if LW_DSP && defined(__GNUC__)
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32);
#endif
}

/* acc + ((a * b + 2^31) >> 32): SMMLAR, the rounded high word of the product added to acc */
static inline int32_t lw_smmlar(int32_t a, int32_t b, int32_t acc)
{
#if LW_DSP && defined(__GNUC__)
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return (int32_t)((uint32_t)acc + (uint32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32));
#endif
}

static inline int32_t lw_load32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A compiler barrier: no memory access moves across it (no instruction is emitted). In a register-
 * tight loop it keeps GCC's first scheduling pass from hoisting the loads of later steps ahead of
 * their use, which would spill the accumulators. */
static inline void lw_barrier(void)
{
#if defined(__GNUC__)
    __asm__ volatile("" ::: "memory");
#endif
}

/* Kernel bodies are always inlined where the generated model calls them, with that layer's
 * static const parameters, so the compiler specialises each layer's loops for its shapes. */
#if defined(__GNUC__)
#define LW_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define LW_ALWAYS_INLINE static inline
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

/* clamp v to [lo, hi], a sub-range of int8: one SSAT with the DSP extension, then only the
 * bounds that are tighter than int8 (none, for a layer without activation, once lo and hi are
 * the layer's constants) */
static inline int32_t lw_clamp_s8(int32_t v, int32_t lo, int32_t hi)
{
#if LW_DSP && defined(__GNUC__)
    __asm__("ssat %0, #8, %1" : "=r"(v) : "r"(v)); /* arm_acle.h's __ssat trips -Wsign-conversion */
#else
    v = LW_CLAMP(v, -128, 127);
#endif
    if (lo > -128) {
        v = LW_MAX(v, lo);
    }
    if (hi < 127) {
        v = LW_MIN(v, hi);
    }
    return v;
}

/* lw_mbqm for the layers where the compiler proved it safe (lowered "rq_fast"): every shift
 * is <= -1 (no left shift) and |x| < 2^30. Then srdhm(x, m) is SMMULR(2x, m) and the rounding
 * divide by 2^e (ties away from zero) is (r + 2^(e-1) - (r < 0)) >> e, with no overflow. Exactly
 * lw_mbqm's value; 6 instructions instead of about 20. Otherwise falls back to lw_mbqm. */
static inline int32_t lw_requant(int32_t x, int32_t multiplier, int32_t shift, int32_t fast)
{
    if (fast) {
        const int32_t e = -shift;
        const int32_t r = lw_smmulr(x * 2, multiplier);
        return (r + (1 << (e - 1)) + (r < 0 ? -1 : 0)) >> e;
    }
    return lw_mbqm(x, multiplier, shift);
}

/* lw_requant(x, ...) + out_offset. Fast path: rnd = 2^(e-1) + out_offset * 2^e (e = -shift),
 * precomputed per channel, so the offset costs nothing: (r - (r < 0) + rnd) >> e. */
static inline int32_t lw_requant_out(int32_t x, int32_t multiplier, int32_t shift, int32_t rnd, int32_t fast,
                                     int32_t out_offset)
{
    if (fast) {
        const int32_t r = lw_smmulr(x * 2, multiplier);
        return (r + (r < 0 ? -1 : 0) + rnd) >> -shift;
    }
    return lw_mbqm(x, multiplier, shift) + out_offset;
}

/* lw_requant_out in one instruction less on the fast path, where the multiplier is > 0 and e = -shift
 * >= 1: the sign fix takes x's sign and goes into the addend of SMMLAR (see lw_requant_prep_mla for
 * why the bytes are the same). */
static inline int32_t lw_requant_out_mla(int32_t x, int32_t multiplier, int32_t shift, int32_t rnd, int32_t fast,
                                         int32_t out_offset)
{
    if (fast) {
        return lw_smmlar(x * 2, multiplier, rnd + (x < 0 ? -1 : 0)) >> -shift;
    }
    return lw_mbqm(x, multiplier, shift) + out_offset;
}

/* Requantization with constants prepared by the compiler (backend.requant_prep): with fast set, acc
 * is already doubled (weights and bias stored x2, so no shift here) and s is the right shift
 * e = -shift; otherwise acc is the plain accumulator and s TFLite's shift. Same bytes as
 * lw_requant_out. */
static inline int32_t lw_requant_prep_out(int32_t acc, int32_t m, int32_t s, int32_t rnd, int32_t fast,
                                          int32_t out_offset)
{
    if (fast) {
        const int32_t r = lw_smmulr(acc, m);
        return (r + (r < 0 ? -1 : 0) + rnd) >> s;
    }
    return lw_mbqm(acc, m, s) + out_offset;
}

/* lw_requant_prep_out in one instruction less on the fast path: there the multiplier m is >= 0 and
 * s >= 1, so r = SMMULR(acc, m) is < 0 only when acc is, and when acc < 0 but r == 0 both
 * roundings give (rnd - 1) >> s == rnd >> s == out_offset (rnd = 2^(s-1) + out_offset * 2^s): the
 * sign fix may take acc's sign, added to rnd before SMMLAR adds r. Same bytes. */
static inline int32_t lw_requant_prep_mla(int32_t acc, int32_t m, int32_t s, int32_t rnd, int32_t fast,
                                          int32_t out_offset)
{
    if (fast) {
        return lw_smmlar(acc, m, rnd + (acc < 0 ? -1 : 0)) >> s;
    }
    return lw_mbqm(acc, m, s) + out_offset;
}

/* *a = (*p)[0], *b = (*p)[1], *p += 2: one LDRD with write-back on Cortex-M (GCC does not merge
 * these loads by itself inside loops) */
static inline void lw_ld2(const int32_t **p, int32_t *a, int32_t *b)
{
#if LW_DSP && defined(__GNUC__)
    __asm__("ldrd %0, %1, [%2], #8" : "=r"(*a), "=r"(*b), "+r"(*p) : "m"(*(const int32_t (*)[2]) * p));
#else
    *a = (*p)[0];
    *b = (*p)[1];
    *p += 2;
#endif
}

/* sum of x[i] * w[i] over n int8 pairs. SIMD: four pairs per step, sign-extended in halfword
 * pairs (SXTB16) and multiply-accumulated two at a time (SMLAD). */
static inline int32_t lw_dot_s8(const int8_t *x, const int8_t *w, int32_t n)
{
    int32_t acc = 0;
    int32_t i = 0;
#if LW_SIMD
    for (; i + 4 <= n; i += 4) {
        const int32_t xv = lw_load32(x + i);
        const int32_t wv = lw_load32(w + i);
        acc = lw_smlad(lw_sxtb16(xv), lw_sxtb16(wv), acc);
        acc = lw_smlad(lw_sxtb16_ror8(xv), lw_sxtb16_ror8(wv), acc);
    }
#endif
    for (; i < n; ++i) {
        acc += x[i] * w[i];
    }
    return acc;
}

/* Four weight rows against one input word x (4 bytes): w holds word j of rows 0, 1, 2, 3 (16 bytes,
 * the fc4 layout). The input word is sign-extended once and used four times; written out row by row
 * (no loop over an accumulator array), so the four sums stay in registers. */
static inline void lw_mac_1x4_step(const int8_t *x, const int8_t *w, int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3)
{
#if LW_SIMD
    const int32_t xv = lw_load32(x);
    const int32_t x0 = lw_sxtb16(xv), x1 = lw_sxtb16_ror8(xv);
    int32_t wv = lw_load32(w);
    *a0 = lw_smlad(lw_sxtb16_ror8(wv), x1, lw_smlad(lw_sxtb16(wv), x0, *a0));
    wv = lw_load32(w + 4);
    *a1 = lw_smlad(lw_sxtb16_ror8(wv), x1, lw_smlad(lw_sxtb16(wv), x0, *a1));
    wv = lw_load32(w + 8);
    *a2 = lw_smlad(lw_sxtb16_ror8(wv), x1, lw_smlad(lw_sxtb16(wv), x0, *a2));
    wv = lw_load32(w + 12);
    *a3 = lw_smlad(lw_sxtb16_ror8(wv), x1, lw_smlad(lw_sxtb16(wv), x0, *a3));
#else
    for (int32_t j = 0; j < 4; ++j) {
        *a0 += x[j] * w[j];
        *a1 += x[j] * w[4 + j];
        *a2 += x[j] * w[8 + j];
        *a3 += x[j] * w[12 + j];
    }
#endif
}

/* The 2x2 register tile of the convolutions: two patches x0, x1 (two output pixels, n bytes
 * each, n % 4 == 0) against a pair of weight rows w stored word-interleaved (word k of the first
 * row at w[8k], of the second at w[8k + 4]; see backend.conv_weight_layout). a[0], a[1]: pixel 0 with
 * rows 0, 1; a[2], a[3]: pixel 1. Each loaded word is sign-extended once and used twice: 8 SMLAD
 * (16 MACs) per 4 loads + 8 SXTB16. */
static inline void lw_mac_2x2_step(const int8_t *x0, const int8_t *x1, const int8_t *w, int32_t *a00, int32_t *a01,
                                   int32_t *a10, int32_t *a11)
{
#if LW_SIMD
    const int32_t p = lw_load32(x0), q = lw_load32(x1);
    const int32_t p0 = lw_sxtb16(p), p1 = lw_sxtb16_ror8(p);
    const int32_t q0 = lw_sxtb16(q), q1 = lw_sxtb16_ror8(q);
    int32_t wv = lw_load32(w);
    int32_t w0 = lw_sxtb16(wv), w1 = lw_sxtb16_ror8(wv);
    *a00 = lw_smlad(p1, w1, lw_smlad(p0, w0, *a00));
    *a10 = lw_smlad(q1, w1, lw_smlad(q0, w0, *a10));
    wv = lw_load32(w + 4);
    w0 = lw_sxtb16(wv);
    w1 = lw_sxtb16_ror8(wv);
    *a01 = lw_smlad(p1, w1, lw_smlad(p0, w0, *a01));
    *a11 = lw_smlad(q1, w1, lw_smlad(q0, w0, *a11));
#else
    for (int32_t j = 0; j < 4; ++j) {
        *a00 += x0[j] * w[j];
        *a01 += x0[j] * w[4 + j];
        *a10 += x1[j] * w[j];
        *a11 += x1[j] * w[4 + j];
    }
#endif
}

/* (only when optimizing: at -O0 GCC cannot find registers for the 13 operands of the assembly
 * below, and the C step is built instead) */
#if LW_DSP && defined(__GNUC__) && defined(__OPTIMIZE__)
/* lw_mac_2x2_step in assembly, in the order GCC should have found: 4 loads (post-indexed but one),
 * 8 SXTB16, 8 SMLAD and 6 temporaries, so the accumulators, the pointers and the loop counter stay
 * in registers (GCC's own schedule of lw_mac_2x2_step spills them: 1.5 instructions per MAC instead
 * of 1.28). LW_MAC_2X2_ASM follows the loads of the two input words into q1 (pixel 1) and p1
 * (pixel 0); its operands are named as in LW_MAC_2X2_OPERANDS. */
#define LW_MAC_2X2_ASM                                                                                                 \
    "ldr     %[t], [%[w]], #4\n\t"                                                                                     \
    "sxtb16  %[q0], %[q1]\n\t"                                                                                         \
    "sxtb16  %[q1], %[q1], ror #8\n\t"                                                                                 \
    "sxtb16  %[p0], %[p1]\n\t"                                                                                         \
    "sxtb16  %[p1], %[p1], ror #8\n\t"                                                                                 \
    "sxtb16  %[w0], %[t]\n\t"                                                                                          \
    "sxtb16  %[t], %[t], ror #8\n\t"                                                                                   \
    "smlad   %[a00], %[p0], %[w0], %[a00]\n\t"                                                                         \
    "smlad   %[a10], %[q0], %[w0], %[a10]\n\t"                                                                         \
    "smlad   %[a00], %[p1], %[t], %[a00]\n\t"                                                                          \
    "smlad   %[a10], %[q1], %[t], %[a10]\n\t"                                                                          \
    "ldr     %[t], [%[w]], #4\n\t"                                                                                     \
    "sxtb16  %[w0], %[t]\n\t"                                                                                          \
    "sxtb16  %[t], %[t], ror #8\n\t"                                                                                   \
    "smlad   %[a01], %[p0], %[w0], %[a01]\n\t"                                                                         \
    "smlad   %[a11], %[q0], %[w0], %[a11]\n\t"                                                                         \
    "smlad   %[a01], %[p1], %[t], %[a01]\n\t"                                                                          \
    "smlad   %[a11], %[q1], %[t], %[a11]"
#define LW_MAC_2X2_OPERANDS                                                                                            \
    [a00] "+r"(*a00), [a01] "+r"(*a01), [a10] "+r"(*a10), [a11] "+r"(*a11), [x] "+r"(*x), [w] "+r"(*w),                \
        [p0] "=&r"(p0), [p1] "=&r"(p1), [q0] "=&r"(q0), [q1] "=&r"(q1), [t] "=&r"(t), [w0] "=&r"(w0)

/* lw_mac_2x2_step for two windows d bytes apart (pixel 0's word at *x, pixel 1's at *x + d), read
 * through one pointer; *x moves on 4 bytes, *w 8 */
static inline void lw_mac_2x2_stepd(const int8_t **x, int32_t d, const int8_t **w, int32_t *a00, int32_t *a01,
                                    int32_t *a10, int32_t *a11)
{
    int32_t p0, p1, q0, q1, t, w0;
    __asm__("ldr     %[q1], [%[x], %[d]]\n\t"
            "ldr     %[p1], [%[x]], #4\n\t" LW_MAC_2X2_ASM
            : LW_MAC_2X2_OPERANDS
            /* the words it reads lie from *x and *w on (or in pad_row, never written) */
            : [d] "r"(d), "m"(*(const int8_t (*)[]) * x), "m"(*(const int8_t (*)[]) * w));
}

/* lw_mac_2x2_step over an interleaved pair of patches (both pixels' words in one LDRD at *x, 4-byte
 * aligned); *x and *w move on 8 bytes */
static inline void lw_mac_2x2_stepi(const int8_t **x, const int8_t **w, int32_t *a00, int32_t *a01, int32_t *a10,
                                    int32_t *a11)
{
    int32_t p0, p1, q0, q1, t, w0;
    __asm__("ldrd    %[p1], %[q1], [%[x]], #8\n\t" LW_MAC_2X2_ASM
            : LW_MAC_2X2_OPERANDS
            : "m"(*(const int8_t (*)[]) * x), "m"(*(const int8_t (*)[]) * w));
}
#endif

/* The 2x2 tile over k_h rows of two windows read in place: row r of pixel 0's window is the row4
 * bytes at x0 + r * stride, pixel 1's at x1 + r * stride (x1 may be pad_row, with stride 0); w: the
 * k_h rows of a weight-row pair, word-interleaved. On the M4 one pointer and the distance d for
 * both pixels (lw_mac_2x2_stepd); each kernel row a loop unrolled by 4. */
static inline void lw_mac_2x2_rows(const int8_t *x0, const int8_t *x1, int32_t stride, int32_t k_h, int32_t row4,
                                   const int8_t *w, int32_t a[4])
{
    int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
#if LW_DSP && defined(__GNUC__) && defined(__OPTIMIZE__)
    const int32_t d = (int32_t)((intptr_t)x1 - (intptr_t)x0); /* the two may lie in different arrays */
#if !defined(__clang__)
#pragma GCC unroll 3
#endif
    for (int32_t r = 0; r < k_h; ++r, x0 += stride - row4) {
#if !defined(__clang__)
#pragma GCC unroll 4
#endif
        for (int32_t i = 0; i < row4; i += 4) {
            lw_mac_2x2_stepd(&x0, d, &w, &a00, &a01, &a10, &a11);
        }
    }
#else
    for (int32_t r = 0; r < k_h; ++r, x0 += stride, x1 += stride) {
        for (int32_t i = 0; i < row4; i += 4, w += 8) {
            lw_mac_2x2_step(x0 + i, x1 + i, w, &a00, &a01, &a10, &a11);
        }
    }
#endif
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

static inline void lw_mac_2x2_s8(const int8_t *x0, const int8_t *x1, const int8_t *w, int32_t n, int32_t a[4])
{
    int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
    if (n <= 16) { /* a few words: fully unrolled once n is a constant */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
        for (int32_t i = 0; i < n; i += 4) {
            lw_mac_2x2_step(x0 + i, x1 + i, w + 2 * i, &a00, &a01, &a10, &a11);
        }
    } else {
        for (int32_t i = 0; i < n; i += 4, x0 += 4, x1 += 4, w += 8) {
            lw_mac_2x2_step(x0, x1, w, &a00, &a01, &a10, &a11);
        }
    }
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

/* The same tile over an interleaved pair of patches xx (word k of pixel 0 at xx[8k], of pixel 1 at
 * xx[8k + 4], as lw_gather_pair_s8 writes them): one pointer and one LDRD for both pixels
 * (lw_mac_2x2_stepi on the M4, unrolled by 4). */
static inline void lw_mac_2x2i_s8(const int8_t *xx, const int8_t *w, int32_t n, int32_t a[4])
{
    int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
#if LW_DSP && defined(__GNUC__) && defined(__OPTIMIZE__)
#if !defined(__clang__)
#pragma GCC unroll 4
#endif
    for (int32_t i = 0; i < n; i += 4) {
        lw_mac_2x2_stepi(&xx, &w, &a00, &a01, &a10, &a11);
    }
#else
    if (n <= 16) { /* short rows (a first layer): fully unrolled once n is a constant */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
        for (int32_t i = 0; i < n; i += 4) {
            lw_mac_2x2_step(xx + 2 * i, xx + 2 * i + 4, w + 2 * i, &a00, &a01, &a10, &a11);
        }
    } else {
        for (int32_t i = 0; i < n; i += 4, xx += 8, w += 8) {
            lw_mac_2x2_step(xx, xx + 4, w, &a00, &a01, &a10, &a11);
        }
    }
#endif
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

/* Two dot products of an interleaved pair of patches xx (see lw_mac_2x2i_s8) with one plain
 * weight row w (an odd last output channel): a[0] += pixel 0, a[1] += pixel 1. */
static inline void lw_mac_2x1i_s8(const int8_t *xx, const int8_t *w, int32_t n, int32_t a[2])
{
    for (int32_t i = 0; i < n; i += 4, xx += 8, w += 4) {
        a[0] += lw_dot_s8(xx, w, 4);
        a[1] += lw_dot_s8(xx + 4, w, 4);
    }
}

/* Gather the k_h x k_w x in_c window whose top-left tap is (iy0, ix0) into slot s (0 or 1) of an
 * interleaved pair of patches: patch byte e goes to pair[(e / 4) * 8 + 4 * s + e % 4]. Each
 * kernel row takes row4 bytes (k_w * in_c taps rounded up to a multiple of 4; the weights are
 * zero in the padding bytes, so those may hold any value). Taps outside the input get the input
 * zero point zp (offset-corrected value 0). A row fully inside the input whose row4 bytes stay
 * within the input tensor is copied a word at a time. */
static inline void lw_gather_pair_s8(const int8_t *input, int32_t in_h, int32_t in_w, int32_t in_c, int32_t k_h,
                                     int32_t k_w, int32_t dil_h, int32_t dil_w, int32_t row4, int32_t iy0, int32_t ix0,
                                     int8_t zp, int8_t *pair, int32_t s)
{
    const int32_t row_len = k_w * in_c;
    const int32_t in_size = in_h * in_w * in_c;
    const int32_t x_ok = dil_w == 1 && ix0 >= 0 && ix0 + k_w <= in_w;
    const int32_t zp4 = (int32_t)((uint32_t)(uint8_t)zp * 0x01010101u);
    int8_t *dst = pair + 4 * s;
    for (int32_t ky = 0; ky < k_h; ++ky, dst += 2 * row4) {
        const int32_t iy = iy0 + dil_h * ky;
        if (iy < 0 || iy >= in_h) {
            for (int32_t i = 0; i < row4; i += 4) {
                memcpy(dst + 2 * i, &zp4, 4);
            }
            continue;
        }
        const int32_t start = (iy * in_w + ix0) * in_c;
        if (x_ok && start + row4 <= in_size) {
            for (int32_t i = 0; i < row4; i += 4) {
                const int32_t v = lw_load32(input + start + i);
                memcpy(dst + 2 * i, &v, 4);
            }
            continue;
        }
        for (int32_t e = 0; e < row4; ++e) {
            const int32_t kx = e / in_c;
            const int32_t ix = ix0 + dil_w * kx;
            int8_t v = 0; /* row padding: weights are zero there */
            if (e < row_len) {
                v = (ix < 0 || ix >= in_w) ? zp : input[(iy * in_w + ix) * in_c + e % in_c];
            }
            dst[(e / 4) * 8 + e % 4] = v;
        }
    }
}

/*
 * pw16 helpers (lw_conv_s8, lw_convpool_s8): a convolution whose patch is one input pixel of at
 * most 64 channels read in place, or a gathered patch of at most 16 bytes. 16 patch bytes at a
 * time are unpacked into 8 int16 pairs held in registers (xv); each output channel is one record
 * read with one pointer, two words per load (backend.pw16_weight_layout): its weights pre-extended to
 * int16 pairs, then bias', multiplier, s and rnd for lw_requant_prep_out.
 */
/* LW_PW_MAX_OC, LW_PW_MAX_IC, LW_PW_MAX_PATCH: lw_params.h (lwcnn_mcu/backend.py LIMITS) */

/* xv[0 .. 2 * nw - 1] = the int16 pairs of patch words k0 .. k0 + nw - 1 (nw <= 4), patch word k
 * at x + (k / wpr) * row_stride + 4 * (k % wpr) (wpr words per kernel row) */
LW_ALWAYS_INLINE void lw_pw_unpack(const int8_t *x, int32_t k0, int32_t nw, int32_t wpr, int32_t row_stride,
                                   int32_t xv[8])
{
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
    for (int32_t i = 0; i < nw; ++i) {
        const int32_t k = k0 + i;
        const int8_t *q = x + (k / wpr) * row_stride + 4 * (k % wpr);
#if LW_SIMD
        const int32_t v = lw_load32(q);
        xv[2 * i] = lw_sxtb16(v);
        xv[2 * i + 1] = lw_sxtb16_ror8(v);
#else
        xv[2 * i] = (int32_t)(((uint32_t)(uint16_t)q[2] << 16) | (uint16_t)q[0]);
        xv[2 * i + 1] = (int32_t)(((uint32_t)(uint16_t)q[3] << 16) | (uint16_t)q[1]);
#endif
    }
}

/* xv = pairs c .. c + n - 1 (n even, <= 8; c > 0 only in place) of the patch of the window whose
 * top-left tap is (iy0, ix0): in place (an unpadded 1x1 window: the input pixel); straight from
 * the input rows when the window lies inside the input and each row's row4 bytes stay inside the
 * input tensor (the bytes past k_w * in_c meet zero weights); else gathered into slot 0 of the
 * scratch pair (lw_gather_pair_s8) and read from there. */
LW_ALWAYS_INLINE void lw_pw_load(const int8_t *input, int32_t in_h, int32_t in_w, int32_t in_c, int32_t k_h,
                                 int32_t k_w, int32_t dil_h, int32_t dil_w, int32_t row4, int32_t in_place, int32_t iy0,
                                 int32_t ix0, int8_t zp, int8_t *scratch, int32_t c, int32_t n, int32_t xv[8])
{
    const int8_t *x = input + (iy0 * in_w + ix0) * in_c;
    if (in_place) {
        lw_pw_unpack(x, c / 2, n / 2, row4 / 4, 0, xv);
        return;
    }
    const int32_t last = iy0 + dil_h * (k_h - 1);
    if (dil_w == 1 && iy0 >= 0 && last < in_h && ix0 >= 0 && ix0 + k_w <= in_w &&
        (last * in_w + ix0) * in_c + row4 <= in_h * in_w * in_c) {
        lw_pw_unpack(x, 0, n / 2, row4 / 4, dil_h * in_w * in_c, xv);
        return;
    }
    lw_gather_pair_s8(input, in_h, in_w, in_c, k_h, k_w, dil_h, dil_w, row4, iy0, ix0, zp, scratch, 0);
    lw_pw_unpack(scratch, 0, n / 2, 1, 8, xv);
}

LW_ALWAYS_INLINE int32_t lw_pw_mac(int32_t xv, int32_t w, int32_t acc)
{
#if LW_SIMD
    return lw_smlad(xv, w, acc);
#else
    return acc + (int16_t)(xv & 0xffff) * (int16_t)(w & 0xffff) +
           (int16_t)((xv >> 16) & 0xffff) * (int16_t)((w >> 16) & 0xffff);
#endif
}

/* acc (0 if first) + the next n (even, <= 8) weights of the record at *r against xv[]; *r moves
 * past them */
LW_ALWAYS_INLINE int32_t lw_pw_dot(const int32_t **r, const int32_t xv[8], int32_t n, int32_t acc, int32_t first)
{
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
    for (int32_t j = 0; j < n; j += 2) {
        int32_t w0, w1;
        lw_ld2(r, &w0, &w1);
#if LW_SIMD
        acc = j == 0 && first ? lw_smuad(xv[j], w0) : lw_pw_mac(xv[j], w0, acc);
#else
        acc = lw_pw_mac(xv[j], w0, j == 0 && first ? 0 : acc);
#endif
        acc = lw_pw_mac(xv[j + 1], w1, acc);
    }
    return acc;
}

/* the record tail at *r (bias', multiplier, s, rnd) applied to the weighted sum acc, clamped to
 * [act_min, act_max]; *r moves past it */
LW_ALWAYS_INLINE int8_t lw_pw_out(const int32_t **r, int32_t acc, int32_t fast, int32_t out_offset, int32_t act_min,
                                  int32_t act_max)
{
    int32_t bias, m, s, rnd;
    lw_ld2(r, &bias, &m);
    lw_ld2(r, &s, &rnd);
    acc = lw_requant_prep_out(acc + bias, m, s, rnd, fast, out_offset);
    return (int8_t)lw_clamp_s8(acc, act_min, act_max);
}

#endif /* LW_COMMON_H */
