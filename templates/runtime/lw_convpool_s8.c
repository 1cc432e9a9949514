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
 *
 * p           [in]  convolution fields as lw_conv_s8 (out_h/out_w: the convolution's output), then
 *                   the pooling window, stride, padding, output size, clamp (pool_avg: 0 max, 1 avg)
 * input       [in]  NHWC, in_h x in_w x in_c
 * weights     [in]  as lw_conv_s8; bias_folded [in] out_c int32 (see lw_conv_s8)
 * mult        [in]  out_c multipliers; shift [in] out_c shifts
 * scratch     [-]   pool_h * pool_w * patch_len bytes, 4-byte aligned; NULL for an unpadded 1x1
 *                   window of in_c % 4 == 0 (patches read in place)
 * output      [out] NHWC, pool_out_h x pool_out_w x out_c
 */
#include "lw_kernels.h"

#define LW_POOL_MAX_PIXELS 16

static int32_t cp_conv(const lw_convpool_params_t *p, int32_t acc, int32_t m, int32_t s)
{
    acc = lw_requant(acc, m, s, p->rq_fast) + p->out_offset;
    return LW_CLAMP(acc, p->act_min, p->act_max);
}

/* pool the convolution outputs of one output channel: raw accumulators acc[0..count) */
static int8_t cp_pool(const lw_convpool_params_t *p, const int32_t *acc, int32_t count, int32_t m, int32_t s)
{
    int32_t v;
    if (p->pool_avg) {
        v = 0;
        for (int32_t t = 0; t < count; ++t) {
            v += cp_conv(p, acc[t], m, s);
        }
        if (count > 0) {
            v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
        }
    } else if (p->rq_mono) {
        int32_t best = acc[0];
        for (int32_t t = 1; t < count; ++t) {
            best = LW_MAX(best, acc[t]);
        }
        v = count > 0 ? cp_conv(p, best, m, s) : -128;
    } else {
        v = -128;
        for (int32_t t = 0; t < count; ++t) {
            v = LW_MAX(v, cp_conv(p, acc[t], m, s));
        }
    }
    return (int8_t)LW_CLAMP(v, p->pool_act_min, p->pool_act_max);
}

void lw_convpool_s8(const lw_convpool_params_t *p, const int8_t *input, const int8_t *weights,
                    const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *scratch,
                    int8_t *output)
{
    const int32_t n = p->patch_len, oc_n = p->out_c;
    const int8_t *px[LW_POOL_MAX_PIXELS + 1];
    int32_t a0[LW_POOL_MAX_PIXELS + 1], a1[LW_POOL_MAX_PIXELS + 1];
    for (int32_t py = 0; py < p->pool_out_h; ++py) {
        const int32_t cy0 = py * p->pool_stride_h - p->pool_pad_top;
        const int32_t y0 = LW_MAX(0, cy0), y1 = LW_MIN(p->out_h, cy0 + p->pool_h);
        for (int32_t px_ = 0; px_ < p->pool_out_w; ++px_) {
            const int32_t cx0 = px_ * p->pool_stride_w - p->pool_pad_left;
            const int32_t x0 = LW_MAX(0, cx0), x1 = LW_MIN(p->out_w, cx0 + p->pool_w);
            int32_t count = 0;
            for (int32_t cy = y0; cy < y1; ++cy) {
                for (int32_t cx = x0; cx < x1; ++cx, ++count) {
                    if (scratch == NULL) {
                        px[count] = input + (cy * p->stride_h * p->in_w + cx * p->stride_w) * p->in_c;
                    } else {
                        int8_t *buf = scratch + count * n;
                        lw_gather_s8(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w, p->row4,
                                     cy * p->stride_h - p->pad_top, cx * p->stride_w - p->pad_left,
                                     (int8_t)(-p->in_offset), buf);
                        px[count] = buf;
                    }
                }
            }
            if (count > 0) {
                px[count] = px[count - 1]; /* odd count: the last pixel pairs with itself */
            }
            int8_t *out = output + (py * p->pool_out_w + px_) * oc_n;
            const int8_t *w = weights;
            int32_t oc = 0;
            for (; oc + 2 <= oc_n; oc += 2, w += 2 * n) {
                for (int32_t t = 0; t < count; t += 2) {
                    int32_t a[4] = {bias_folded[oc], bias_folded[oc + 1], bias_folded[oc], bias_folded[oc + 1]};
                    lw_mac_2x2_s8(px[t], px[t + 1], w, n, a);
                    a0[t] = a[0];
                    a1[t] = a[1];
                    a0[t + 1] = a[2];
                    a1[t + 1] = a[3];
                }
                out[oc] = cp_pool(p, a0, count, mult[oc], shift[oc]);
                out[oc + 1] = cp_pool(p, a1, count, mult[oc + 1], shift[oc + 1]);
            }
            if (oc < oc_n) { /* odd channel count: the last row is stored plain */
                for (int32_t t = 0; t < count; ++t) {
                    a0[t] = bias_folded[oc] + lw_dot_s8(px[t], w, n);
                }
                out[oc] = cp_pool(p, a0, count, mult[oc], shift[oc]);
            }
        }
    }
}
