/*
 * lw_conv_s8 - int8 2-D convolution, per-channel requantization (TFLite CONV_2D).
 *
 * Output pixels are computed two at a time and output channels two at a time (a 2x2 register
 * tile, lw_mac_2x2_s8): each pixel's k_h x k_w x in_c window is gathered into a patch (taps
 * outside the input get the input zero point, whose offset-corrected value is 0 - exactly what
 * TFLite's skipped taps contribute), then each pair of weight rows is multiplied with both
 * patches. The input offset is folded into bias_folded at compile time.
 *
 * p           [in]  shapes, strides, dilation, padding, offsets, clamp, row4 and patch_len
 *                   (k_h * row4), rq_fast (see lw_requant) - lw_params.h
 * input       [in]  NHWC activations, in_h x in_w x in_c, int8
 * weights     [in]  out_c rows of patch_len int8 (OHWI, each kernel row zero-padded to row4 bytes),
 *                   pairs of rows word-interleaved, an odd last row plain (ir.conv_weight_layout)
 * bias_folded [in]  out_c int32: bias + in_offset * sum of the channel's weights
 * mult        [in]  out_c fixed-point multipliers in [2^30, 2^31); shift [in] out_c shifts in [-31, 30]
 * scratch     [-]   2 * patch_len bytes, 4-byte aligned (two patches, word-interleaved); NULL for an unpadded 1x1 window of
 *                   in_c % 4 == 0 (the input pixel is the patch)
 * output      [out] NHWC, out_h x out_w x out_c, clamped to [act_min, act_max]
 */
#include "lw_kernels.h"

/* the input pixel of output pixel pix, for a window read in place */
LW_ALWAYS_INLINE const int8_t *conv_pixel(const lw_conv_params_t *p, const int8_t *input, int32_t pix)
{
    const int32_t oy = pix / p->out_w, ox = pix % p->out_w;
    return input + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
}

/* gather output pixel pix's window into slot s of the interleaved pair of patches */
LW_ALWAYS_INLINE void conv_gather(const lw_conv_params_t *p, const int8_t *input, int32_t pix, int8_t *pair,
                                  int32_t s)
{
    const int32_t oy = pix / p->out_w, ox = pix % p->out_w;
    lw_gather_pair_s8(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w, p->row4,
                      oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left, (int8_t)(-p->in_offset), pair,
                      s);
}

LW_ALWAYS_INLINE int8_t conv_out(const lw_conv_params_t *p, int32_t acc, int32_t m, int32_t s)
{
    acc = lw_requant(acc, m, s, p->rq_fast) + p->out_offset;
    return (int8_t)lw_clamp_s8(acc, p->act_min, p->act_max);
}

LW_ALWAYS_INLINE void lw_conv_s8_impl(const lw_conv_params_t *p, const int8_t *input, const int8_t *weights,
                                      const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                      int8_t *scratch, int8_t *output)
{
    const int32_t n = p->patch_len, npix = p->out_h * p->out_w, oc_n = p->out_c;
    for (int32_t i = 0; i < npix; i += 2) {
        const int32_t j = i + 1 < npix ? i + 1 : i; /* a lone last pixel is computed twice, stored once */
        const int8_t *x0 = NULL, *x1 = NULL;
        if (scratch != NULL) {
            conv_gather(p, input, i, scratch, 0);
            conv_gather(p, input, j, scratch, 1);
        } else {
            x0 = conv_pixel(p, input, i);
            x1 = conv_pixel(p, input, j);
        }
        int8_t *y0 = output + i * oc_n, *y1 = output + j * oc_n;
        const int8_t *w = weights;
        int32_t oc = 0;
        for (; oc + 2 <= oc_n; oc += 2, w += 2 * n) {
            int32_t a[4] = {bias_folded[oc], bias_folded[oc + 1], bias_folded[oc], bias_folded[oc + 1]};
            if (scratch != NULL) {
                lw_mac_2x2i_s8(scratch, w, n, a);
            } else {
                lw_mac_2x2_s8(x0, x1, w, n, a);
            }
            y0[oc] = conv_out(p, a[0], mult[oc], shift[oc]);
            y0[oc + 1] = conv_out(p, a[1], mult[oc + 1], shift[oc + 1]);
            y1[oc] = conv_out(p, a[2], mult[oc], shift[oc]);
            y1[oc + 1] = conv_out(p, a[3], mult[oc + 1], shift[oc + 1]);
        }
        if (oc < oc_n) { /* odd channel count: the last row is stored plain */
            int32_t a[2] = {bias_folded[oc], bias_folded[oc]};
            if (scratch != NULL) {
                lw_mac_2x1i_s8(scratch, w, n, a);
            } else {
                a[0] += lw_dot_s8(x0, w, n);
                a[1] += lw_dot_s8(x1, w, n);
            }
            y0[oc] = conv_out(p, a[0], mult[oc], shift[oc]);
            y1[oc] = conv_out(p, a[1], mult[oc], shift[oc]);
        }
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_conv_s8(const lw_conv_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias_folded,
                const int32_t *mult, const int32_t *shift, int8_t *scratch, int8_t *output)
{
    lw_conv_s8_impl(p, input, weights, bias_folded, mult, shift, scratch, output);
}
#endif
