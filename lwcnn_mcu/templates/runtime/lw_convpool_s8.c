/*
 * lw_convpool_s8 - int8 2-D convolution fused with the max or average pooling that follows it
 * (TFLite CONV_2D then MAX_POOL_2D / AVERAGE_POOL_2D). For each pooled output the patches of
 * the convolution pixels in its window (at most 16) are gathered, then each pair of output
 * channels runs the 2x2 register tile (lw_mac_2x2_s8) over pairs of those pixels and pools in
 * registers. The full convolution output is never stored; convolution outputs no pooling window
 * covers are never computed. Bit-exact with the two ops.
 *
 * Max pooling with rq_mono set (every shift <= 0, so requantization is monotonic: no left shift
 * that could wrap, a positive multiplier, round-to-nearest, clamp) takes the maximum of the raw
 * accumulators and requantizes once per pooled output instead of once per convolution output.
 * With pw16 (max pooling, rq_mono, a patch of at most 16 bytes or an in-place 1x1 window of at
 * most 64 channels) each window pixel's patch is unpacked once into registers and every output
 * channel's record (backend.pw16_weight_layout) is run against it, its running maximum kept in vmax[]
 * (the lw_pw_* helpers of lw_common.h, as lw_conv_s8's pw16).
 *
 * p           [in]  convolution fields as lw_conv_s8 (out_h/out_w: the convolution's output), then
 *                   the pooling window, stride, padding, output size, clamp (pool_avg: 0 max, 1 avg)
 * input       [in]  NHWC, in_h x in_w x in_c
 * weights     [in]  as lw_conv_s8 (pw16: records, then bias_folded, mult, shift, rnd are NULL);
 *                   bias_folded [in] out_c int32 (see lw_conv_s8)
 * mult        [in]  out_c multipliers; shift [in] out_c shifts; rnd [in] out_c (see lw_conv_s8)
 * scratch     [-]   patch_len bytes per window pixel, rounded up to pairs (word-interleaved pairs,
 *                   see lw_gather_pair_s8), 4-byte aligned (pw16: one pair); NULL for an
 *                   unpadded 1x1 window of in_c % 4 == 0 (patches read in place)
 * output      [out] NHWC, pool_out_h x pool_out_w x out_c
 */
#include "lw_kernels.h"

LW_ALWAYS_INLINE int32_t cp_conv(const lw_convpool_params_t *p, int32_t acc, int32_t m, int32_t s, int32_t r)
{
    acc = lw_requant_out(acc, m, s, r, p->rq_fast, p->out_offset);
    return lw_clamp_s8(acc, p->act_min, p->act_max);
}

/* the pooled output from the pooled value v: the average's rounding division, the pool's clamp */
LW_ALWAYS_INLINE int8_t cp_finish(const lw_convpool_params_t *p, int32_t v, int32_t count)
{
    if (p->pool_avg && count > 0) {
        v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
    }
    return (int8_t)LW_CLAMP(v, p->pool_act_min, p->pool_act_max);
}

/* the convolution pixels [y0, y1) x [x0, x1) that pooled output (py, px_) covers */
LW_ALWAYS_INLINE void cp_window(const lw_convpool_params_t *p, int32_t py, int32_t px_, int32_t *y0, int32_t *y1,
                                int32_t *x0, int32_t *x1)
{
    const int32_t cy0 = py * p->pool_stride_h - p->pool_pad_top, cx0 = px_ * p->pool_stride_w - p->pool_pad_left;
    *y0 = LW_MAX(0, cy0);
    *y1 = LW_MIN(p->out_h, cy0 + p->pool_h);
    *x0 = LW_MAX(0, cx0);
    *x1 = LW_MIN(p->out_w, cx0 + p->pool_w);
}

/* pw16 with max pooling of raw accumulators (see the header) */
LW_ALWAYS_INLINE void convpool_pw16(const lw_convpool_params_t *p, const int8_t *input, const int32_t *rec,
                                    int8_t *scratch, int8_t *output)
{
    const int32_t half = p->patch_len / 2, len = half + 4;
    int32_t part[LW_PW_MAX_OC], vmax[LW_PW_MAX_OC];
    for (int32_t py = 0; py < p->pool_out_h; ++py) {
        for (int32_t px_ = 0; px_ < p->pool_out_w; ++px_) {
            int32_t y0, y1, x0, x1;
            cp_window(p, py, px_, &y0, &y1, &x0, &x1);
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                vmax[oc] = INT32_MIN;
            }
            for (int32_t cy = y0; cy < y1; ++cy) {
                for (int32_t cx = x0; cx < x1; ++cx) {
                    int32_t xv[8] = {0};
                    for (int32_t c = 0; c < half; c += 8) { /* 16 patch bytes at a time */
                        const int32_t n = LW_MIN(half - c, 8);
                        lw_pw_load(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w, p->row4,
                                   scratch == NULL, cy * p->stride_h - p->pad_top, cx * p->stride_w - p->pad_left,
                                   (int8_t)(-p->in_offset), scratch, c, n, xv);
                        const int32_t *r = rec + c;
                        for (int32_t oc = 0; oc < p->out_c; ++oc, r += len - n) {
                            const int32_t acc = lw_pw_dot(&r, xv, n, c == 0 ? 0 : part[oc], c == 0);
                            if (c + 8 < half) {
                                part[oc] = acc;
                            } else {
                                vmax[oc] = LW_MAX(vmax[oc], acc);
                            }
                        }
                    }
                }
            }
            int8_t *out = output + (py * p->pool_out_w + px_) * p->out_c;
            const int32_t *r = rec + half;
            const int32_t empty = y1 <= y0 || x1 <= x0; /* a window of padding only */
            for (int32_t oc = 0; oc < p->out_c; ++oc, r += half + 4) {
                const int32_t *t = r;
                const int32_t v =
                    empty ? -128 : lw_pw_out(&t, vmax[oc], p->rq_fast, p->out_offset, p->act_min, p->act_max);
                out[oc] = (int8_t)LW_CLAMP(v, p->pool_act_min, p->pool_act_max);
            }
        }
    }
}

LW_ALWAYS_INLINE void lw_convpool_s8_impl(const lw_convpool_params_t *p, const int8_t *input, const int8_t *weights,
                                          const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                          const int32_t *rnd, int8_t *scratch, int8_t *output)
{
    const int32_t n = p->patch_len, oc_n = p->out_c;
    const int8_t *px[LW_POOL_MAX_PIXELS + 1];
    if (p->pw16) {
        convpool_pw16(p, input, (const int32_t *)(const void *)weights, scratch, output);
        return;
    }
    for (int32_t py = 0; py < p->pool_out_h; ++py) {
        for (int32_t px_ = 0; px_ < p->pool_out_w; ++px_) {
            int32_t y0, y1, x0, x1;
            cp_window(p, py, px_, &y0, &y1, &x0, &x1);
            int32_t count = 0;
            for (int32_t cy = y0; cy < y1; ++cy) {
                for (int32_t cx = x0; cx < x1; ++cx, ++count) {
                    if (scratch == NULL) {
                        px[count] = input + (cy * p->stride_h * p->in_w + cx * p->stride_w) * p->in_c;
                    } else {
                        lw_gather_pair_s8(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w, p->row4,
                                          cy * p->stride_h - p->pad_top, cx * p->stride_w - p->pad_left,
                                          (int8_t)(-p->in_offset), scratch + (count / 2) * 2 * n, count % 2);
                    }
                }
            }
            if (count % 2) { /* odd count: the last pixel pairs with itself */
                if (scratch == NULL) {
                    px[count] = px[count - 1];
                } else {
                    int8_t *pair = scratch + (count / 2) * 2 * n;
                    for (int32_t i = 0; i < n; i += 4) {
                        memcpy(pair + 2 * i + 4, pair + 2 * i, 4);
                    }
                }
            }
            int8_t *out = output + (py * p->pool_out_w + px_) * oc_n;
            const int32_t raw_max = !p->pool_avg && p->rq_mono;
            const int8_t *w = weights;
            int32_t oc = 0;
            for (; oc + 2 <= oc_n; oc += 2, w += 2 * n) {
                const int32_t b0 = bias_folded[oc], b1 = bias_folded[oc + 1];
                const int32_t m0 = mult[oc], m1 = mult[oc + 1], s0 = shift[oc], s1 = shift[oc + 1];
                const int32_t r0 = rnd[oc], r1 = rnd[oc + 1];
                int32_t v0 = raw_max ? INT32_MIN : (p->pool_avg ? 0 : -128), v1 = v0;
                for (int32_t t = 0; t < count; t += 2) {
                    int32_t a[4] = {b0, b1, b0, b1};
                    if (scratch != NULL) {
                        lw_mac_2x2i_s8(scratch + t * n, w, n, a);
                    } else {
                        lw_mac_2x2_s8(px[t], px[t + 1], w, n, a);
                    }
                    if (raw_max) { /* max of raw accumulators, requantized once below */
                        v0 = LW_MAX(v0, LW_MAX(a[0], a[2]));
                        v1 = LW_MAX(v1, LW_MAX(a[1], a[3]));
                        continue;
                    }
                    const int32_t last = t + 1 < count; /* a lone last pixel was computed twice */
                    const int32_t c0 = cp_conv(p, a[0], m0, s0, r0), c1 = cp_conv(p, a[1], m1, s1, r1);
                    const int32_t c2 = last ? cp_conv(p, a[2], m0, s0, r0) : 0,
                                  c3 = last ? cp_conv(p, a[3], m1, s1, r1) : 0;
                    if (p->pool_avg) {
                        v0 += c0 + c2;
                        v1 += c1 + c3;
                    } else {
                        v0 = LW_MAX(v0, last ? LW_MAX(c0, c2) : c0);
                        v1 = LW_MAX(v1, last ? LW_MAX(c1, c3) : c1);
                    }
                }
                if (raw_max && count > 0) {
                    v0 = cp_conv(p, v0, m0, s0, r0);
                    v1 = cp_conv(p, v1, m1, s1, r1);
                } else if (raw_max) {
                    v0 = v1 = -128;
                }
                out[oc] = cp_finish(p, v0, count);
                out[oc + 1] = cp_finish(p, v1, count);
            }
            if (oc < oc_n) { /* odd channel count: the last row is stored plain */
                int32_t v = p->pool_avg ? 0 : -128;
                for (int32_t t = 0; t < count; t += 2) {
                    int32_t a[2] = {bias_folded[oc], bias_folded[oc]};
                    if (scratch != NULL) {
                        lw_mac_2x1i_s8(scratch + t * n, w, n, a);
                    } else {
                        a[0] += lw_dot_s8(px[t], w, n);
                        a[1] += lw_dot_s8(px[t + 1], w, n);
                    }
                    for (int32_t u = 0; u < 2 && t + u < count; ++u) {
                        const int32_t c = cp_conv(p, a[u], mult[oc], shift[oc], rnd[oc]);
                        v = p->pool_avg ? v + c : LW_MAX(v, c);
                    }
                }
                out[oc] = cp_finish(p, v, count);
            }
        }
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_convpool_s8(const lw_convpool_params_t *p, const int8_t *input, const int8_t *weights,
                    const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, const int32_t *rnd,
                    int8_t *scratch, int8_t *output)
{
    lw_convpool_s8_impl(p, input, weights, bias_folded, mult, shift, rnd, scratch, output);
}
#endif
