/*
 * lw_dwconv_s8 - int8 depthwise 2-D convolution with depth multiplier (TFLite DEPTHWISE_CONV_2D).
 *
 * p      [in]  shapes, strides, dilation, padding, depth_mult, offsets and clamp
 * input  [in]  NHWC, in_h x in_w x in_c
 * filter [in]  1 x k_h x k_w x out_c (out_c = in_c * depth_mult), symmetric int8
 * bias   [in]  out_c int32 values, or NULL
 * mult   [in]  out_c multipliers; shift [in] out_c shifts
 * output [out] NHWC, out_h x out_w x out_c
 *
 * Taps outside the input are skipped (as in TFLite's reference). With depth multiplier 1, four
 * channels are accumulated per pass in registers; other channels go through dw_one.
 */
#include "lw_kernels.h"

LW_ALWAYS_INLINE int8_t dw_finish(const lw_dwconv_params_t *p, int32_t acc, const int32_t *bias, const int32_t *mult,
                        const int32_t *shift, int32_t oc)
{
    acc = lw_requant(acc + (bias != NULL ? bias[oc] : 0), mult[oc], shift[oc], p->rq_fast) + p->out_offset;
    return (int8_t)LW_CLAMP(acc, p->act_min, p->act_max);
}

/* one output channel oc (from input channel ic) at output pixel (oy, ox) */
LW_ALWAYS_INLINE int32_t dw_one(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, int32_t iy0,
                      int32_t ix0, int32_t ic, int32_t oc)
{
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + p->dil_h * ky;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + p->dil_w * kx;
            if (ix >= 0 && ix < p->in_w) {
                acc += (input[(iy * p->in_w + ix) * p->in_c + ic] + p->in_offset) *
                       filter[(ky * p->k_w + kx) * p->out_c + oc];
            }
        }
    }
    return acc;
}

LW_ALWAYS_INLINE void lw_dwconv_s8_impl(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *output)
{
    const int32_t off = p->in_offset;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            int32_t c = 0;
            if (p->depth_mult == 1) {
                for (; c + 4 <= p->in_c; c += 4) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
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
                            const int8_t *x = input + (iy * p->in_w + ix) * p->in_c + c;
                            const int8_t *w = filter + (ky * p->k_w + kx) * p->out_c + c;
                            a0 += (x[0] + off) * w[0];
                            a1 += (x[1] + off) * w[1];
                            a2 += (x[2] + off) * w[2];
                            a3 += (x[3] + off) * w[3];
                        }
                    }
                    out[c] = dw_finish(p, a0, bias, mult, shift, c);
                    out[c + 1] = dw_finish(p, a1, bias, mult, shift, c + 1);
                    out[c + 2] = dw_finish(p, a2, bias, mult, shift, c + 2);
                    out[c + 3] = dw_finish(p, a3, bias, mult, shift, c + 3);
                }
            }
            for (int32_t ic = c; ic < p->in_c; ++ic) {
                for (int32_t m = 0; m < p->depth_mult; ++m) {
                    const int32_t oc = ic * p->depth_mult + m;
                    out[oc] = dw_finish(p, dw_one(p, input, filter, iy0, ix0, ic, oc), bias, mult, shift, oc);
                }
            }
        }
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_dwconv_s8(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *output)
{
    lw_dwconv_s8_impl(p, input, filter, bias, mult, shift, output);
}
#endif
