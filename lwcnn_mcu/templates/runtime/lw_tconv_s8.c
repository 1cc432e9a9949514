/*
 * lw_tconv_s8 - int8 transposed convolution (TFLite TRANSPOSE_CONV, per-channel weights).
 *
 * TFLite Micro scatters each input pixel through every kernel tap into an int32 buffer of the whole
 * output. This kernel gathers instead: output pixel (oy, ox) sums, for every tap (ky, kx) with
 * oy + pad_top - ky = iy * stride_h and ox + pad_left - kx = ix * stride_w inside the input, the
 * dot product of input pixel (iy, ix) with the tap's weights. The integer sums are the same, so
 * the bytes are; no RAM besides the output.
 *
 * p          [in]  shapes, strides, leading pads (top, left), output offset, clamp, rq_fast
 * input      [in]  in_h x in_w x in_c int8
 * weights    [in]  out_c x k_h x k_w x in_c (OHWI), symmetric int8
 * bias       [in]  out_c int32 (zeros for a layer without bias)
 * tap_offset [in]  out_c x k_h x k_w int32: input offset x the sum of the tap's weights over in_c
 * mult       [in]  out_c multipliers; shift [in] out_c shifts (TFLite's)
 * rnd        [in]  out_c fast-requantization roundings (used when p->rq_fast)
 * output     [out] out_h x out_w x out_c int8; must not overlap input
 */
#include "lw_kernels.h"

/* The taps of one axis that reach output position o: the first kernel index *k0 and its input
 * index *i0; each further tap is k0 + t * stride at input i0 - t. Returns how many there are. */
static inline int32_t lw_tconv_taps(int32_t o, int32_t pad, int32_t stride, int32_t k, int32_t in_size, int32_t *k0,
                                    int32_t *i0)
{
    const int32_t pos = o + pad; /* >= 0: pads are never negative */
    int32_t kk = pos % stride;
    int32_t ii = pos / stride;
    if (ii >= in_size) { /* below or right of the input: skip the taps that would read past it */
        kk += (ii - in_size + 1) * stride;
        ii = in_size - 1;
    }
    *k0 = kk;
    *i0 = ii;
    if (kk >= k) {
        return 0;
    }
    const int32_t n = (k - kk + stride - 1) / stride;
    return LW_MIN(n, ii + 1);
}

LW_ALWAYS_INLINE void lw_tconv_s8_impl(const lw_tconv_params_t *p, const int8_t *input, const int8_t *weights,
                                       const int32_t *bias, const int32_t *tap_offset, const int32_t *mult,
                                       const int32_t *shift, const int32_t *rnd, int8_t *output)
{
    const int32_t taps = p->k_h * p->k_w;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        int32_t ky0, iy0;
        const int32_t ny = lw_tconv_taps(oy, p->pad_top, p->stride_h, p->k_h, p->in_h, &ky0, &iy0);
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            int32_t kx0, ix0;
            const int32_t nx = lw_tconv_taps(ox, p->pad_left, p->stride_w, p->k_w, p->in_w, &kx0, &ix0);
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            for (int32_t c = 0; c < p->out_c; ++c) {
                int32_t acc = bias[c];
                for (int32_t t = 0; t < ny; ++t) {
                    const int32_t ky = ky0 + t * p->stride_h;
                    const int8_t *in_row = input + (iy0 - t) * p->in_w * p->in_c;
                    for (int32_t u = 0; u < nx; ++u) {
                        const int32_t tap = c * taps + ky * p->k_w + kx0 + u * p->stride_w;
                        acc += lw_dot_s8(in_row + (ix0 - u) * p->in_c, weights + tap * p->in_c, p->in_c);
                        acc += tap_offset[tap];
                    }
                }
                acc = lw_requant_out(acc, mult[c], shift[c], rnd[c], p->rq_fast, p->out_offset);
                out[c] = (int8_t)lw_clamp_s8(acc, p->act_min, p->act_max);
            }
        }
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_tconv_s8(const lw_tconv_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias,
                 const int32_t *tap_offset, const int32_t *mult, const int32_t *shift, const int32_t *rnd,
                 int8_t *output)
{
    lw_tconv_s8_impl(p, input, weights, bias, tap_offset, mult, shift, rnd, output);
}
#endif
