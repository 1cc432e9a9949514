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
 * scratch     [tmp] with dw_rows: the ring, k_h x ring_w x in_c bytes; else unused (NULL)
 * output      [out] NHWC, out_h x out_w x out_c; with dw_rows it may overlap the input as the
 *                   backend's Kernel.overlap_offset allows (backend.dw_rows_geometry)
 *
 * TFLite skips the taps outside the input; here they read the input zero point instead, whose
 * offset-corrected value (x + in_offset) is 0, so the sum is the same and the offset can be
 * folded into bias_folded: acc = bias_folded + sum of raw x * w. With the SIMD path, depth
 * multiplier 1 and in_c % 4 == 0, four channels are computed at a time: each tap is one word of
 * input and one of weights, unpacked into channel pairs (SXTB16) and multiply-accumulated per
 * channel (SMLABB/SMLATT); windows inside the input without bounds checks, border windows with
 * the zero point for outside taps. Other shapes and the portable build go through dw_one.
 *
 * dw_rows (no dilation, dw16's shapes: 3x3 above all; backend.dw_rows_geometry): the input rows the windows
 * reach are copied, just before the first output row that needs them, into a ring of k_h rows
 * padded with zero points (a row outside the input: all zero points), and every window is read
 * from the ring, with no bounds checks, border windows included. bias_folded is then one record
 * per four channels (backend.dw_rows_layout): bias', the taps' int16 pairs, multiplier, s and rnd
 * of each. SIMD: two output pixels side by side per pass share each tap's weights and, at stride
 * 1, each input word; portable: dw_ring_one per channel.
 */
#include "lw_kernels.h"

/* int32 words per four channels in the records: dw16's constants, or dw_rows' whole record */
LW_ALWAYS_INLINE int32_t dw_record(const lw_dwconv_params_t *p)
{
    return p->dw_rows ? 16 + 2 * p->k_h * p->k_w : 16;
}

/* bias' of output channel oc */
LW_ALWAYS_INLINE int32_t dw_bias(const lw_dwconv_params_t *p, const int32_t *bias_folded, int32_t oc)
{
    return p->dw16 ? bias_folded[(oc / 4) * dw_record(p) + oc % 4] : bias_folded[oc];
}

LW_ALWAYS_INLINE int8_t dw_finish(const lw_dwconv_params_t *p, int32_t acc, const int32_t *bias_folded,
                                  const int32_t *mult, const int32_t *shift, const int32_t *rnd, int32_t oc)
{
    if (p->dw16) {
        const int32_t *k = bias_folded + (oc / 4 + 1) * dw_record(p) - 12 + 3 * (oc % 4);
        acc = lw_requant_prep_out(acc, k[0], k[1], k[2], p->rq_fast, p->out_offset);
    } else {
        acc = lw_requant_out(acc, mult[oc], shift[oc], rnd[oc], p->rq_fast, p->out_offset);
    }
    return (int8_t)lw_clamp_s8(acc, p->act_min, p->act_max);
}

/* the weight of tap t (ky * k_w + kx) for output channel oc, in any filter layout: int8
 * 1 x k_h x k_w x out_c, with dw16 int16 pairs (see backend.dw16_weight_layout), with dw_rows the
 * same pairs in the records (bias_folded) */
LW_ALWAYS_INLINE int32_t dw_weight(const lw_dwconv_params_t *p, const int8_t *filter, const int32_t *bias_folded,
                                   int32_t t, int32_t oc)
{
    if (p->dw16) {
        const int32_t *f16 = (const int32_t *)(const void *)filter;
        const int32_t word = p->dw_rows ? bias_folded[(oc / 4) * dw_record(p) + 4 + 2 * t + (oc & 1)]
                                        : f16[(t * (p->out_c / 4) + oc / 4) * 2 + (oc & 1)];
        return (oc & 2) ? (int16_t)((word >> 16) & 0xffff) : (int16_t)(word & 0xffff);
    }
    return filter[t * p->out_c + oc];
}

/* raw sum of x * w for output channel oc (input channel ic) at the window whose top-left tap is
 * (iy0, ix0); taps outside the input read the zero point */
LW_ALWAYS_INLINE int32_t dw_one(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter,
                                const int32_t *bias_folded, int32_t iy0, int32_t ix0, int32_t ic, int32_t oc)
{
    const int32_t zp = -p->in_offset;
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + p->dil_h * ky;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + p->dil_w * kx;
            const int32_t inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            const int32_t x = inside ? input[(iy * p->in_w + ix) * p->in_c + ic] : zp;
            acc += x * dw_weight(p, filter, bias_folded, ky * p->k_w + kx, oc);
        }
    }
    return acc;
}

#if LW_SIMD
/* one tap for four channels, the input word unpacked: channel pairs u02 (0, 2) and u13 (1, 3) */
LW_ALWAYS_INLINE void dw_mac4(int32_t u02, int32_t u13, int32_t w02, int32_t w13, int32_t *a0, int32_t *a1, int32_t *a2,
                              int32_t *a3)
{
    *a0 = lw_smlabb(u02, w02, *a0);
    *a1 = lw_smlabb(u13, w13, *a1);
    *a2 = lw_smlatt(u02, w02, *a2);
    *a3 = lw_smlatt(u13, w13, *a3);
}

/* one tap for four channels: input word u and the weights as int16 pairs w02 (channels 0, 2) and
 * w13 (1, 3), multiplied per channel */
LW_ALWAYS_INLINE void dw_tap4(int32_t u, int32_t w02, int32_t w13, int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3)
{
    dw_mac4(lw_sxtb16(u), lw_sxtb16_ror8(u), w02, w13, a0, a1, a2, a3);
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

/* dw_rows: input row iy into a ring row (ring_w pixels): pad_left pixels of zero points, the input
 * pixels the windows reach, zero points to the end; all zero points when iy is outside the input */
LW_ALWAYS_INLINE void dw_ring_load(const lw_dwconv_params_t *p, const int8_t *input, int32_t iy, int8_t *row)
{
    const int32_t c = p->in_c;
    const int32_t n = LW_MIN(p->in_w, p->ring_w - p->pad_left); /* input pixels copied */
    const int zp = (uint8_t)(-p->in_offset);
    if (iy < 0 || iy >= p->in_h) {
        memset(row, zp, (size_t)(p->ring_w * c));
        return;
    }
    memset(row, zp, (size_t)(p->pad_left * c));
    memcpy(row + p->pad_left * c, input + iy * p->in_w * c, (size_t)(n * c));
    memset(row + (p->pad_left + n) * c, zp, (size_t)((p->ring_w - p->pad_left - n) * c));
}

/* raw sum of x * w for output channel oc of the window whose first tap of channel oc is at x in
 * ring row 0 (kernel row ky: ring row ky) */
LW_ALWAYS_INLINE int32_t dw_ring_one(const lw_dwconv_params_t *p, const int8_t *x, const int32_t *rec, int32_t oc)
{
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            acc += x[(ky * p->ring_w + kx) * p->in_c] * dw_weight(p, NULL, rec, ky * p->k_w + kx, oc);
        }
    }
    return acc;
}

#if LW_SIMD
/* the input word at x, as channel pairs (0, 2) and (1, 3) */
LW_ALWAYS_INLINE void dw_unpack(const int8_t *x, int32_t *u02, int32_t *u13)
{
    const int32_t u = lw_load32(x);
    *u02 = lw_sxtb16(u);
    *u13 = lw_sxtb16_ror8(u);
}

/* acc requantized with the constants k (multiplier, s, rnd) and clamped */
LW_ALWAYS_INLINE int8_t dw_out(const lw_dwconv_params_t *p, int32_t acc, const int32_t *k)
{
    const int32_t v = lw_requant_prep_mla(acc, k[0], k[1], k[2], p->rq_fast, p->out_offset);
    return (int8_t)lw_clamp_s8(v, p->act_min, p->act_max);
}

/* four channels, the record at *rec (*rec moves past it), of n (1 or 2) output pixels: pixel 0's
 * window starts at x in ring row 0, pixel 1's stride_w pixels to the right;
 * outputs at out and out + in_c. Eight accumulators, one tap's weights and one unpacked input word
 * live: at stride 1 the word pixel 1 reads at tap kx is pixel 0's at tap kx + 1, so it is loaded
 * once. */
LW_ALWAYS_INLINE void dw_ring_group(const lw_dwconv_params_t *p, const int8_t *x, int32_t n, const int32_t **rec,
                                    int8_t *out)
{
    const int32_t step = p->in_c, s = p->stride_w * p->in_c;
    const int32_t *q = *rec;
    int32_t a0, a1, a2, a3;
    lw_ld2(&q, &a0, &a1);
    lw_ld2(&q, &a2, &a3);
    int32_t b0 = a0, b1 = a1, b2 = a2, b3 = a3;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 3
#endif
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int8_t *row = x + ky * p->ring_w * p->in_c;
        int32_t u02, u13;
        dw_unpack(row, &u02, &u13);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            int32_t w02, w13;
            lw_barrier(); /* this tap's loads stay here */
            lw_ld2(&q, &w02, &w13);
            dw_mac4(u02, u13, w02, w13, &a0, &a1, &a2, &a3);
            if (n == 2) {
                int32_t v02, v13;
                lw_barrier();
                dw_unpack(row + kx * step + s, &v02, &v13);
                dw_mac4(v02, v13, w02, w13, &b0, &b1, &b2, &b3);
                if (s == step) { /* stride 1: pixel 0's next word */
                    u02 = v02;
                    u13 = v13;
                    continue;
                }
            }
            if (kx + 1 < p->k_w) {
                dw_unpack(row + (kx + 1) * step, &u02, &u13);
            }
        }
    }
    /* the constants of channels 0 and 1, then of 2 and 3, three loads each */
    const int32_t a[4] = {a0, a1, a2, a3}, b[4] = {b0, b1, b2, b3};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 2
#endif
    for (int32_t j = 0; j < 4; j += 2) {
        int32_t k[6];
        lw_ld2(&q, &k[0], &k[1]);
        lw_ld2(&q, &k[2], &k[3]);
        out[j] = dw_out(p, a[j], k);
        if (n == 2) {
            out[step + j] = dw_out(p, b[j], k);
        }
        lw_ld2(&q, &k[4], &k[5]);
        out[j + 1] = dw_out(p, a[j + 1], k + 3);
        if (n == 2) {
            out[step + j + 1] = dw_out(p, b[j + 1], k + 3);
        }
    }
    *rec = q;
}

/* all channels of n (1 or 2) output pixels side by side, the first one's window at x in ring row 0 */
LW_ALWAYS_INLINE void dw_ring_pixels(const lw_dwconv_params_t *p, const int8_t *x, int32_t n, const int32_t *rec,
                                     int8_t *out)
{
    for (int32_t c = 0; c < p->in_c; c += 4) {
        dw_ring_group(p, x + c, n, &rec, out + c);
    }
}
#endif

/* dw_rows: output row by output row, the ring (k_h rows, ring row ky: the windows' row ky) moved
 * up by stride_h rows and the input rows new to it copied in, then every output pixel read from
 * it: two at a time (SIMD), or one channel at a time (portable) */
LW_ALWAYS_INLINE void dw_rows(const lw_dwconv_params_t *p, const int8_t *input, const int32_t *rec, int8_t *ring,
                              int8_t *output)
{
    const int32_t c = p->in_c, row = p->ring_w * p->in_c;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        const int32_t keep = oy > 0 ? LW_MAX(0, p->k_h - p->stride_h) : 0; /* rows already in the ring */
        if (keep > 0) {
            memmove(ring, ring + (p->k_h - keep) * row, (size_t)(keep * row));
        }
        for (int32_t ky = keep; ky < p->k_h; ++ky) {
            dw_ring_load(p, input, iy0 + ky, ring + ky * row);
        }
        int8_t *out = output + oy * p->out_w * c;
#if LW_SIMD
        for (int32_t ox = 0; ox < p->out_w; ox += 2) {
            const int8_t *x = ring + ox * p->stride_w * c;
            if (ox + 1 < p->out_w) {
                dw_ring_pixels(p, x, 2, rec, out + ox * c);
            } else { /* the last pixel of an odd row */
                dw_ring_pixels(p, x, 1, rec, out + ox * c);
            }
        }
#else
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int8_t *x = ring + ox * p->stride_w * c;
            for (int32_t oc = 0; oc < c; ++oc) {
                const int32_t acc = dw_bias(p, rec, oc) + dw_ring_one(p, x + oc, rec, oc);
                out[ox * c + oc] = dw_finish(p, acc, rec, NULL, NULL, NULL, oc);
            }
        }
#endif
    }
}

LW_ALWAYS_INLINE void lw_dwconv_s8_impl(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter,
                                        const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                        const int32_t *rnd, int8_t *scratch, int8_t *output)
{
    if (p->dw_rows) {
        dw_rows(p, input, bias_folded, scratch, output);
        return;
    }
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
                    const int32_t acc =
                        dw_bias(p, bias_folded, oc) + dw_one(p, input, filter, bias_folded, iy0, ix0, ic, oc);
                    out[oc] = dw_finish(p, acc, bias_folded, mult, shift, rnd, oc);
                }
            }
        }
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_dwconv_s8(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias_folded,
                  const int32_t *mult, const int32_t *shift, const int32_t *rnd, int8_t *scratch, int8_t *output)
{
    lw_dwconv_s8_impl(p, input, filter, bias_folded, mult, shift, rnd, scratch, output);
}
#endif
