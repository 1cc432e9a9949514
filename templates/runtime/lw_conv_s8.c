/*
 * lw_conv_s8 - int8 2-D convolution, per-channel requantization (TFLite CONV_2D).
 *
 * For each output pixel the k_h x k_w x in_c window is gathered into a patch (taps outside the
 * input get the input zero point, whose offset-corrected value is 0 - exactly what TFLite's
 * skipped taps contribute), then every output channel is one dot product of the patch with its
 * weight row. The input offset is folded into bias_folded at compile time.
 *
 * p           [in]  shapes, strides, dilation, padding, offsets, clamp, patch_len (see lw_params.h)
 * input       [in]  NHWC activations, in_h x in_w x in_c, int8
 * weights     [in]  out_c rows of patch_len int8 (OHWI order, zero-padded to a multiple of 4)
 * bias_folded [in]  out_c int32: bias + in_offset * sum of the channel's weights
 * mult        [in]  out_c fixed-point multipliers in [2^30, 2^31); shift [in] out_c shifts in [-31, 30]
 * scratch     [-]   patch_len bytes, 4-byte aligned; NULL for an unpadded 1x1 window of in_c % 4 == 0
 * output      [out] NHWC, out_h x out_w x out_c, clamped to [act_min, act_max]
 */
#include "lw_kernels.h"

void lw_conv_s8(const lw_conv_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias_folded,
                const int32_t *mult, const int32_t *shift, int8_t *scratch, int8_t *output)
{
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int8_t *patch = scratch;
            if (scratch == NULL) { /* 1x1, unpadded, in_c a multiple of 4: the input pixel is the patch */
                patch = input + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
            } else {
                lw_gather_s8(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w,
                             oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left, (int8_t)(-p->in_offset),
                             p->patch_len, scratch);
            }
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            const int8_t *w = weights;
            for (int32_t oc = 0; oc < p->out_c; ++oc, w += p->patch_len) {
                int32_t acc = bias_folded[oc] + lw_dot_s8(patch, w, p->patch_len);
                acc = lw_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
                out[oc] = (int8_t)LW_CLAMP(acc, p->act_min, p->act_max);
            }
        }
    }
}
