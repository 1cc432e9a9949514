/*
 * lw_convpool_s8 - int8 2-D convolution fused with the max or average pooling that follows it
 * (TFLite CONV_2D then MAX_POOL_2D / AVERAGE_POOL_2D). Each pooled output is computed from the
 * convolution outputs in its window; the full convolution output is never stored, and
 * convolution outputs no pooling window covers are never computed. Bit-exact with the two ops.
 *
 * p           [in]  convolution fields as lw_conv_s8 (out_h/out_w: the convolution's output), then
 *                   the pooling window, stride, padding, output size, clamp (pool_avg: 0 max, 1 avg)
 * input       [in]  NHWC, in_h x in_w x in_c
 * weights     [in]  out_c rows of patch_len int8; bias_folded [in] out_c int32 (see lw_conv_s8)
 * mult        [in]  out_c multipliers; shift [in] out_c shifts
 * scratch     [-]   patch_len bytes (+ 4 * out_c for average pooling), 4-byte aligned
 * output      [out] NHWC, pool_out_h x pool_out_w x out_c
 */
#include "lw_kernels.h"

void lw_convpool_s8(const lw_convpool_params_t *p, const int8_t *input, const int8_t *weights,
                    const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *scratch,
                    int8_t *output)
{
    int32_t *sums = scratch != NULL ? (int32_t *)(void *)(scratch + p->patch_len) : NULL;
    for (int32_t py = 0; py < p->pool_out_h; ++py) {
        const int32_t cy0 = py * p->pool_stride_h - p->pool_pad_top;
        const int32_t y0 = LW_MAX(0, cy0);
        const int32_t y1 = LW_MIN(p->out_h, cy0 + p->pool_h);
        for (int32_t px = 0; px < p->pool_out_w; ++px) {
            const int32_t cx0 = px * p->pool_stride_w - p->pool_pad_left;
            const int32_t x0 = LW_MAX(0, cx0);
            const int32_t x1 = LW_MIN(p->out_w, cx0 + p->pool_w);
            const int32_t count = (y1 - y0) * (x1 - x0);
            int8_t *out = output + (py * p->pool_out_w + px) * p->out_c;
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                if (p->pool_avg) {
                    sums[oc] = 0;
                } else {
                    out[oc] = -128;
                }
            }
            for (int32_t cy = y0; cy < y1; ++cy) {
                for (int32_t cx = x0; cx < x1; ++cx) {
                    const int8_t *patch = scratch;
                    if (p->pool_avg == 0 && scratch == NULL) { /* unpadded 1x1 window: read in place */
                        patch = input + (cy * p->stride_h * p->in_w + cx * p->stride_w) * p->in_c;
                    } else {
                        lw_gather_s8(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w,
                                     cy * p->stride_h - p->pad_top, cx * p->stride_w - p->pad_left,
                                     (int8_t)(-p->in_offset), p->patch_len, scratch);
                    }
                    const int8_t *w = weights;
                    for (int32_t oc = 0; oc < p->out_c; ++oc, w += p->patch_len) {
                        int32_t acc = bias_folded[oc] + lw_dot_s8(patch, w, p->patch_len);
                        acc = lw_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
                        acc = LW_CLAMP(acc, p->act_min, p->act_max);
                        if (p->pool_avg) {
                            sums[oc] += acc;
                        } else if (acc > out[oc]) {
                            out[oc] = (int8_t)acc;
                        }
                    }
                }
            }
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                int32_t v = out[oc];
                if (p->pool_avg) {
                    v = sums[oc];
                    if (count > 0) {
                        v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
                    }
                }
                out[oc] = (int8_t)LW_CLAMP(v, p->pool_act_min, p->pool_act_max);
            }
        }
    }
}
