/*
 * lw_dwconv_s8 - int8 depthwise 2-D convolution with depth multiplier (TFLite DEPTHWISE_CONV_2D).
 *
 * p      [in]  shapes, strides, dilation, padding, depth_mult, offsets and clamp
 * input  [in]  NHWC, in_h x in_w x in_c
 * filter [in]  1 x k_h x k_w x out_c (out_c = in_c * depth_mult), symmetric int8
 * bias   [in]  out_c int32 values, or NULL
 * mult   [in]  out_c multipliers; shift [in] out_c shifts
 * output [out] NHWC, out_h x out_w x out_c
 */
#include "lw_kernels.h"

/* depth multiplier 1: four channels at a time, accumulators in registers, only the taps inside the
 * input visited (a padded tap contributes nothing in TFLite's reference either) */
static void dw_m1(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int8_t *output)
{
    const int32_t C = p->in_c;
    const int32_t off = p->in_offset;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            int8_t *out = output + (oy * p->out_w + ox) * C;
            int32_t c = 0;
            for (; c + 4 <= C; c += 4) {
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
                        const int8_t *x = input + (iy * p->in_w + ix) * C + c;
                        const int8_t *w = filter + (ky * p->k_w + kx) * C + c;
                        a0 += (x[0] + off) * w[0];
                        a1 += (x[1] + off) * w[1];
                        a2 += (x[2] + off) * w[2];
                        a3 += (x[3] + off) * w[3];
                    }
                }
                const int32_t acc[4] = {a0, a1, a2, a3};
                for (int32_t j = 0; j < 4; ++j) {
                    int32_t v = acc[j] + (bias != NULL ? bias[c + j] : 0);
                    v = lw_mbqm(v, mult[c + j], shift[c + j]) + p->out_offset;
                    out[c + j] = (int8_t)LW_CLAMP(v, p->act_min, p->act_max);
                }
            }
            for (; c < C; ++c) {
                int32_t acc = 0;
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + p->dil_h * ky;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + p->dil_w * kx;
                        if (ix >= 0 && ix < p->in_w) {
                            acc += (input[(iy * p->in_w + ix) * C + c] + off) * filter[(ky * p->k_w + kx) * C + c];
                        }
                    }
                }
                acc = lw_mbqm(acc + (bias != NULL ? bias[c] : 0), mult[c], shift[c]) + p->out_offset;
                out[c] = (int8_t)LW_CLAMP(acc, p->act_min, p->act_max);
            }
        }
    }
}

void lw_dwconv_s8(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *output)
{
    if (p->depth_mult == 1) {
        dw_m1(p, input, filter, bias, mult, shift, output);
        return;
    }
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            for (int32_t ic = 0; ic < p->in_c; ++ic) {
                for (int32_t m = 0; m < p->depth_mult; ++m) {
                    const int32_t oc = ic * p->depth_mult + m;
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
                            const int32_t x = input[(iy * p->in_w + ix) * p->in_c + ic];
                            const int32_t w = filter[(ky * p->k_w + kx) * p->out_c + oc];
                            acc += (x + p->in_offset) * w;
                        }
                    }
                    if (bias != NULL) {
                        acc += bias[oc];
                    }
                    acc = lw_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
                    output[(oy * p->out_w + ox) * p->out_c + oc] = (int8_t)LW_CLAMP(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
