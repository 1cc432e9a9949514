/*
 * lw_convpool_s8 - int8 2-D convolution fused with the max or average pooling that follows it
 * (TFLite CONV_2D then MAX_POOL_2D / AVERAGE_POOL_2D). Each pooled output is computed from the
 * convolution outputs in its window; the full convolution output is never stored, and
 * convolution outputs no pooling window covers are never computed. Bit-exact with the two ops.
 *
 * p      [in]  convolution fields as lw_conv_s8 (out_h/out_w: the convolution's output), then the
 *              pooling window, stride, padding, output size and clamp (pool_avg: 0 max, 1 average)
 * input  [in]  NHWC, in_h x in_w x in_c
 * filter [in]  OHWI, out_c x k_h x k_w x in_c; bias [in] out_c int32 or NULL
 * bias_folded [in] out_c values: bias + in_offset * sum of the channel's weights
 * mult   [in]  out_c multipliers; shift [in] out_c shifts
 * output [out] NHWC, pool_out_h x pool_out_w x out_c
 */
#include "lw_kernels.h"

static int32_t conv_at(const lw_convpool_params_t *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                       int32_t oy, int32_t ox, int32_t oc)
{
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    const int32_t ix0 = ox * p->stride_w - p->pad_left;
    if (iy0 >= 0 && iy0 + (p->k_h - 1) * p->dil_h < p->in_h && ix0 >= 0 && ix0 + (p->k_w - 1) * p->dil_w < p->in_w &&
        p->dil_w == 1) {
        /* inside the input: the input offset is folded into bias_folded */
        const int32_t row = p->k_w * p->in_c;
        const int8_t *x0 = input + (iy0 * p->in_w + ix0) * p->in_c;
        const int8_t *w = filter + oc * p->k_h * row;
        int32_t acc = bias_folded[oc];
        for (int32_t ky = 0; ky < p->k_h; ++ky) {
            acc += lw_dot_s8(x0 + ky * p->dil_h * p->in_w * p->in_c, w + ky * row, row);
        }
        acc = lw_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
        return LW_CLAMP(acc, p->act_min, p->act_max);
    }
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + p->dil_h * ky;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + p->dil_w * kx;
            if (ix < 0 || ix >= p->in_w) {
                continue;
            }
            const int8_t *x = input + (iy * p->in_w + ix) * p->in_c;
            const int8_t *w = filter + ((oc * p->k_h + ky) * p->k_w + kx) * p->in_c;
            for (int32_t ic = 0; ic < p->in_c; ++ic) {
                acc += (x[ic] + p->in_offset) * w[ic];
            }
        }
    }
    if (bias != NULL) {
        acc += bias[oc];
    }
    acc = lw_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
    return LW_CLAMP(acc, p->act_min, p->act_max);
}

void lw_convpool_s8(const lw_convpool_params_t *p, const int8_t *input, const int8_t *filter,
                    const int32_t *bias, const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                    int8_t *output)
{
    for (int32_t py = 0; py < p->pool_out_h; ++py) {
        const int32_t cy0 = py * p->pool_stride_h - p->pool_pad_top;
        const int32_t y0 = LW_MAX(0, cy0);
        const int32_t y1 = LW_MIN(p->out_h, cy0 + p->pool_h);
        for (int32_t px = 0; px < p->pool_out_w; ++px) {
            const int32_t cx0 = px * p->pool_stride_w - p->pool_pad_left;
            const int32_t x0 = LW_MAX(0, cx0);
            const int32_t x1 = LW_MIN(p->out_w, cx0 + p->pool_w);
            const int32_t count = (y1 - y0) * (x1 - x0);
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                int32_t v = p->pool_avg ? 0 : -128;
                for (int32_t cy = y0; cy < y1; ++cy) {
                    for (int32_t cx = x0; cx < x1; ++cx) {
                        const int32_t c = conv_at(p, input, filter, bias, bias_folded, mult, shift, cy, cx, oc);
                        v = p->pool_avg ? v + c : LW_MAX(v, c);
                    }
                }
                if (p->pool_avg && count > 0) {
                    v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
                }
                output[(py * p->pool_out_w + px) * p->out_c + oc] = (int8_t)LW_CLAMP(v, p->pool_act_min, p->pool_act_max);
            }
        }
    }
}
