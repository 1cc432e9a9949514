/*
 * lw_prelu_s8 - int8 parametric ReLU (TFLite PRELU): alpha is an int8 constant broadcast against the
 * input through per-dimension strides (0 where alpha has size 1: Keras PReLU's [H, W, C], or [1, 1, C]
 * with shared_axes). At or above the input zero point the input is requantized by
 * in_scale / out_scale; below it, (x - in_zp) * (alpha - alpha_zp) by in_scale * alpha_scale /
 * out_scale. output may alias input (in-place).
 *
 * p      [in]  output height, width, channels; alpha strides (elements) per height, width and
 *              channel step; input, alpha and output offsets; multiplier/shift of each side
 * input  [in]  out_h * out_w * out_c int8 values, HWC
 * alpha  [in]  int8 values read at h * alpha_stride_h + w * alpha_stride_w + c * alpha_stride_c (flash)
 * output [out] out_h * out_w * out_c int8 values, HWC; may be input itself
 */
#include "lw_kernels.h"

void lw_prelu_s8(const lw_prelu_params_t *p, const int8_t *input, const int8_t *alpha, int8_t *output)
{
    /* the parameters in locals: the byte stores below may alias *p as far as C knows */
    const int32_t out_h = p->out_h, out_w = p->out_w, out_c = p->out_c;
    const int32_t stride_h = p->alpha_stride_h, stride_w = p->alpha_stride_w, stride_c = p->alpha_stride_c;
    const int32_t in_offset = p->in_offset, alpha_offset = p->alpha_offset, out_offset = p->out_offset;
    const int32_t pos_mult = p->pos_mult, pos_shift = p->pos_shift, neg_mult = p->neg_mult, neg_shift = p->neg_shift;
    for (int32_t h = 0; h < out_h; ++h) {
        for (int32_t w = 0; w < out_w; ++w) {
            const int8_t *a = alpha + h * stride_h + w * stride_w;
            for (int32_t c = 0; c < out_c; ++c) {
                const int32_t x = *input++ + in_offset;
                int32_t v;
                if (x >= 0) {
                    v = lw_mbqm(x, pos_mult, pos_shift);
                } else {
                    v = lw_mbqm(x * (a[c * stride_c] + alpha_offset), neg_mult, neg_shift);
                }
                *output++ = (int8_t)LW_CLAMP(v + out_offset, -128, 127);
            }
        }
    }
}
