/*
 * lw_conv_s8 - int8 2-D convolution, per-channel requantization (TFLite CONV_2D).
 *
 * p      [in]  shapes, strides, dilation, padding, offsets and clamp (see lw_params.h)
 * input  [in]  NHWC activations, in_h x in_w x in_c, int8 in [-128, 127]
 * filter [in]  OHWI weights, out_c x k_h x k_w x in_c, symmetric int8 in [-127, 127]
 * bias   [in]  out_c int32 values, or NULL
 * bias_folded [in] out_c values: bias + in_offset * sum of the channel's weights (the compiler folds
 *              the input offset in, so windows inside the input need only the raw dot product)
 * mult   [in]  out_c fixed-point multipliers in [2^30, 2^31)
 * shift  [in]  out_c shifts in [-31, 30]
 * output [out] NHWC, out_h x out_w x out_c, clamped to [act_min, act_max]
 */
#include "lw_kernels.h"

void lw_conv_s8(const lw_conv_params_t *p, const int8_t *input, const int8_t *filter,
                const int32_t *bias, const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                int8_t *output)
{
    const int32_t row = p->k_w * p->in_c;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        const int inside_y = iy0 >= 0 && iy0 + (p->k_h - 1) * p->dil_h < p->in_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            if (inside_y && ix0 >= 0 && ix0 + (p->k_w - 1) * p->dil_w < p->in_w && p->dil_w == 1) {
                /* the window is inside the input: contiguous rows of k_w * in_c bytes */
                const int8_t *x0 = input + (iy0 * p->in_w + ix0) * p->in_c;
                int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const int8_t *w = filter + oc * p->k_h * row;
                    int32_t acc = bias_folded[oc];
                    for (int32_t ky = 0; ky < p->k_h; ++ky) {
                        acc += lw_dot_s8(x0 + ky * p->dil_h * p->in_w * p->in_c, w + ky * row, row);
                    }
                    acc = lw_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
                    out[oc] = (int8_t)LW_CLAMP(acc, p->act_min, p->act_max);
                }
                continue;
            }
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
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
                output[(oy * p->out_w + ox) * p->out_c + oc] = (int8_t)LW_CLAMP(acc, p->act_min, p->act_max);
            }
        }
    }
}
