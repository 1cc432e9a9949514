/*
 * lw_dwconv_s8 - int8 depthwise 2-D convolution with depth multiplier (TFLite DEPTHWISE_CONV_2D).
 *
 * p           [in]  shapes, strides, dilation, padding, depth_mult, offsets, clamp, rq_fast
 * input       [in]  NHWC, in_h x in_w x in_c
 * filter      [in]  1 x k_h x k_w x out_c (out_c = in_c * depth_mult), symmetric int8; with dw16
 *                   (depth multiplier 1, 4k channels) int16 pairs, 4-byte aligned (backend.dw16_weight_layout)
 * bias_folded [in]  out_c int32: bias + in_offset * sum of the channel's k_h x k_w weights; with
 *                   dw16 the records of backend.dw16_const_layout instead (per four channels: their
 *                   bias', then multiplier, s and rnd of each, for lw_requant_prep_out; weights and
 *                   bias' doubled when rq_fast), read two words per load
 * mult        [in]  out_c multipliers; shift [in] out_c shifts; rnd [in] out_c (see lw_conv_s8);
 *                   NULL with dw16
 * output      [out] NHWC, out_h x out_w x out_c
 *
 * TFLite skips the taps outside the input; here they read the input zero point instead, whose
 * offset-corrected value (x + in_offset) is 0, so the sum is the same and the offset can be
 * folded into bias_folded: acc = bias_folded + sum of raw x * w. With the SIMD path, depth
 * multiplier 1 and in_c % 4 == 0, four channels are computed at a time: each tap is one word of
 * input and one of weights, unpacked into channel pairs (SXTB16) and multiply-accumulated per
 * channel (SMLABB/SMLATT); windows inside the input without bounds checks, border windows with
 * the zero point for outside taps. Other shapes and the portable build go through dw_one.
 */
#include "lw_kernels.h"

/* bias' of output channel oc */
LW_ALWAYS_INLINE int32_t dw_bias(const lw_dwconv_params_t *p, const int32_t *bias_folded, int32_t oc)
{
    return p->dw16 ? bias_folded[(oc / 4) * 16 + oc % 4] : bias_folded[oc];
}

LW_ALWAYS_INLINE int8_t dw_finish(const lw_dwconv_params_t *p, int32_t acc, const int32_t *bias_folded,
                                  const int32_t *mult, const int32_t *shift, const int32_t *rnd, int32_t oc)
{
    if (p->dw16) {
        const int32_t *k = bias_folded + (oc / 4) * 16 + 4 + 3 * (oc % 4);
        acc = lw_requant_prep_out(acc, k[0], k[1], k[2], p->rq_fast, p->out_offset);
    } else {
        acc = lw_requant_out(acc, mult[oc], shift[oc], rnd[oc], p->rq_fast, p->out_offset);
    }
    return (int8_t)lw_clamp_s8(acc, p->act_min, p->act_max);
}

/* the weight of tap t (ky * k_w + kx) for output channel oc, in either filter layout: int8
 * 1 x k_h x k_w x out_c, or with dw16 int16 pairs (see backend.dw16_weight_layout) */
LW_ALWAYS_INLINE int32_t dw_weight(const lw_dwconv_params_t *p, const int8_t *filter, int32_t t, int32_t oc)
{
    if (p->dw16) {
        const int32_t *f16 = (const int32_t *)(const void *)filter;
        const int32_t word = f16[(t * (p->out_c / 4) + oc / 4) * 2 + (oc & 1)];
        return (oc & 2) ? (int16_t)((word >> 16) & 0xffff) : (int16_t)(word & 0xffff);
    }
    return filter[t * p->out_c + oc];
}

/* raw sum of x * w for output channel oc (input channel ic) at the window whose top-left tap is
 * (iy0, ix0); taps outside the input read the zero point */
LW_ALWAYS_INLINE int32_t dw_one(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, int32_t iy0,
                                int32_t ix0, int32_t ic, int32_t oc)
{
    const int32_t zp = -p->in_offset;
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + p->dil_h * ky;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + p->dil_w * kx;
            const int32_t inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            const int32_t x = inside ? input[(iy * p->in_w + ix) * p->in_c + ic] : zp;
            acc += x * dw_weight(p, filter, ky * p->k_w + kx, oc);
        }
    }
    return acc;
}

#if LW_SIMD
/* one tap for four channels: input word u and the weights as int16 pairs w02 (channels 0, 2) and
 * w13 (1, 3), multiplied per channel */
LW_ALWAYS_INLINE void dw_tap4(int32_t u, int32_t w02, int32_t w13, int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3)
{
    const int32_t u02 = lw_sxtb16(u), u13 = lw_sxtb16_ror8(u);
    *a0 = lw_smlabb(u02, w02, *a0);
    *a1 = lw_smlabb(u13, w13, *a1);
    *a2 = lw_smlatt(u02, w02, *a2);
    *a3 = lw_smlatt(u13, w13, *a3);
}

/* channels c..c+3 of one output pixel whose window, starting at (iy0, ix0), lies inside the
 * input: a[0..3]. Four accumulators, two unpacked weight and two unpacked input pairs: no spills. */
LW_ALWAYS_INLINE void dw_in4(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, int32_t iy0,
                             int32_t ix0, int32_t c, int32_t a[4])
{
    const int8_t *x0 = input + (iy0 * p->in_w + ix0) * p->in_c + c;
    const int32_t *f = (const int32_t *)(const void *)filter + (c / 4) * 2;
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 1
#endif
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t u = lw_load32(x0 + (p->dil_h * ky * p->in_w + p->dil_w * kx) * p->in_c);
            const int32_t *wt = f + (ky * p->k_w + kx) * (p->out_c / 2);
            dw_tap4(u, wt[0], wt[1], &a0, &a1, &a2, &a3);
        }
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

/* channels c..c+3 of one output pixel whose window starts at (iy0, ix0), with taps outside the
 * input reading four zero-point bytes zp4: a[0..3] */
LW_ALWAYS_INLINE void dw_one4(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, int32_t iy0,
                              int32_t ix0, int32_t c, int32_t zp4, int32_t a[4])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + p->dil_h * ky;
        const int32_t row_in = iy >= 0 && iy < p->in_h;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + p->dil_w * kx;
            const int32_t u =
                row_in && ix >= 0 && ix < p->in_w ? lw_load32(input + (iy * p->in_w + ix) * p->in_c + c) : zp4;
            const int32_t *wt =
                (const int32_t *)(const void *)filter + (ky * p->k_w + kx) * (p->out_c / 2) + (c / 4) * 2;
            dw_tap4(u, wt[0], wt[1], &a0, &a1, &a2, &a3);
        }
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}
#endif

#if LW_SIMD
/* all channels of one output pixel, four at a time, each group's constants read two words per
 * load from its record; inside (a constant at each call): the window lies inside the input, so
 * no bounds checks */
LW_ALWAYS_INLINE void dw_pixel4(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter,
                                const int32_t *rec, int32_t iy0, int32_t ix0, int32_t inside, int8_t *out)
{
    const int32_t zp4 = (int32_t)((uint32_t)(uint8_t)(-p->in_offset) * 0x01010101u);
    const int32_t *q = rec;
    for (int32_t c = 0; c < p->in_c; c += 4) {
        int32_t a[4], k[12];
        lw_ld2(&q, &a[0], &a[1]);
        lw_ld2(&q, &a[2], &a[3]);
        if (inside) {
            dw_in4(p, input, filter, iy0, ix0, c, a);
        } else {
            dw_one4(p, input, filter, iy0, ix0, c, zp4, a);
        }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 6
#endif
        for (int32_t i = 0; i < 6; ++i) {
            lw_ld2(&q, &k[2 * i], &k[2 * i + 1]);
        }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
        for (int32_t j = 0; j < 4; ++j) {
            const int32_t v =
                lw_requant_prep_out(a[j], k[3 * j], k[3 * j + 1], k[3 * j + 2], p->rq_fast, p->out_offset);
            out[c + j] = (int8_t)lw_clamp_s8(v, p->act_min, p->act_max);
        }
    }
}
#endif

LW_ALWAYS_INLINE void lw_dwconv_s8_impl(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter,
                                        const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                        const int32_t *rnd, int8_t *output)
{
    const int32_t span_h = p->dil_h * (p->k_h - 1), span_w = p->dil_w * (p->k_w - 1);
    const int32_t pairs = LW_SIMD && p->dw16;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        const int32_t rows_in = pairs && iy0 >= 0 && iy0 + span_h < p->in_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
#if LW_SIMD
            if (pairs) { /* four channels at a time; windows inside the input without bounds checks */
                if (rows_in && ix0 >= 0 && ix0 + span_w < p->in_w) {
                    dw_pixel4(p, input, filter, bias_folded, iy0, ix0, 1, out);
                } else {
                    dw_pixel4(p, input, filter, bias_folded, iy0, ix0, 0, out);
                }
                continue;
            }
#else
            (void)rows_in;
            (void)span_w;
#endif
            for (int32_t ic = 0; ic < p->in_c; ++ic) {
                for (int32_t m = 0; m < p->depth_mult; ++m) {
                    const int32_t oc = ic * p->depth_mult + m;
                    const int32_t acc = dw_bias(p, bias_folded, oc) + dw_one(p, input, filter, iy0, ix0, ic, oc);
                    out[oc] = dw_finish(p, acc, bias_folded, mult, shift, rnd, oc);
                }
            }
        }
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_dwconv_s8(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias_folded,
                  const int32_t *mult, const int32_t *shift, const int32_t *rnd, int8_t *output)
{
    lw_dwconv_s8_impl(p, input, filter, bias_folded, mult, shift, rnd, output);
}
#endif
