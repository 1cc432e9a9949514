/*
 * lw_conv_s8 - int8 2-D convolution, per-channel requantization (TFLite CONV_2D).
 *
 * Output pixels are computed two at a time and output channels two at a time (a 2x2 register
 * tile, lw_mac_2x2_s8): each pixel's k_h x k_w x in_c window is gathered into a patch (taps
 * outside the input get the input zero point, whose offset-corrected value is 0 - exactly what
 * TFLite's skipped taps contribute), then each pair of weight rows is multiplied with both
 * patches. The input offset is folded into bias_folded at compile time. In place, a pixel pair
 * whose windows cross the input's border lists its taps' addresses once (2 x LW_CONV_MAX_TAPS
 * pointers on the stack) and every pair of weight rows goes through them tap by tap.
 *
 * p           [in]  shapes, strides, dilation, padding, offsets, clamp, row4 and patch_len
 *                   (k_h * row4), rq_fast (see lw_requant) - lw_params.h
 * input       [in]  NHWC activations, in_h x in_w x in_c, int8
 * weights     [in]  out_c rows of patch_len int8 (OHWI, each kernel row zero-padded to row4 bytes),
 *                   pairs of rows word-interleaved, an odd last row plain (backend.conv_weight_layout);
 *                   with pw16, one int32 record per channel (backend.pw16_weight_layout), and
 *                   bias_folded, mult, shift and rnd are NULL
 * bias_folded [in]  out_c int32: bias + in_offset * sum of the channel's weights
 * mult        [in]  out_c fixed-point multipliers in [2^30, 2^31); shift [in] out_c shifts in [-31, 30]
 * rnd         [in]  out_c int32: 2^(-shift-1) + out_offset * 2^-shift (used when rq_fast)
 * pad_row     [in]  in_place (at most LW_CONV_MAX_TAPS taps): in_c bytes of the input zero point (read
 *                   for taps outside the input); else NULL
 * scratch     [-]   2 * patch_len bytes, 4-byte aligned (two patches, word-interleaved); NULL when
 *                   in_place (4k input channels, no horizontal dilation: windows are read where
 *                   they are, a whole kernel row at a time)
 * output      [out] NHWC, out_h x out_w x out_c, clamped to [act_min, act_max]
 */
#include "lw_kernels.h"

/* the addresses of the k_h x k_w taps of the window whose top-left tap is (iy, ix), read in place:
 * in_c bytes each, pad_row for the taps outside the input (listed once per pixel pair, so each
 * pair of output channels only reads them) */
LW_ALWAYS_INLINE void conv_taps(const lw_conv_params_t *p, const int8_t *input, const int8_t *pad_row, int32_t iy,
                                int32_t ix, const int8_t **tap)
{
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t y = iy + p->dil_h * ky;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t x = ix + kx;
            *tap++ = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w ? input + (y * p->in_w + x) * p->in_c : pad_row;
        }
    }
}

/* acc[0..3] += the windows of two output pixels (read in place, in_place mode; top-left taps
 * (iy0, ix0) and (iy1, ix1)) times a pair of weight rows: whole kernel rows when both windows lie
 * inside the input (inside != 0), else tap by tap from the lists tap0 and tap1 (conv_taps) */
LW_ALWAYS_INLINE void conv_in_place(const lw_conv_params_t *p, const int8_t *input, int32_t iy0, int32_t ix0,
                                    int32_t iy1, int32_t ix1, int32_t inside, const int8_t *w,
                                    const int8_t *const *tap0, const int8_t *const *tap1, int32_t a[4])
{
    if (inside) {
        lw_mac_2x2_rows(input + (iy0 * p->in_w + ix0) * p->in_c, input + (iy1 * p->in_w + ix1) * p->in_c,
                        p->dil_h * p->in_w * p->in_c, p->k_h, p->row4, w, a);
        return;
    }
    const int32_t taps = p->k_h * p->k_w;
    for (int32_t t = 0; t < taps; ++t, w += 2 * p->in_c) {
        lw_mac_2x2_rows(tap0[t], tap1[t], 0, 1, p->in_c, w, a);
    }
}

/* is the window with top-left tap (iy, ix) entirely inside the input? */
LW_ALWAYS_INLINE int32_t conv_inside(const lw_conv_params_t *p, int32_t iy, int32_t ix)
{
    return iy >= 0 && iy + p->dil_h * (p->k_h - 1) < p->in_h && ix >= 0 && ix + p->k_w <= p->in_w;
}

/* gather output pixel pix's window into slot s of the interleaved pair of patches */
LW_ALWAYS_INLINE void conv_gather(const lw_conv_params_t *p, const int8_t *input, int32_t pix, int8_t *pair, int32_t s)
{
    const int32_t oy = pix / p->out_w, ox = pix % p->out_w;
    lw_gather_pair_s8(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w, p->row4,
                      oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left, (int8_t)(-p->in_offset), pair, s);
}

LW_ALWAYS_INLINE int8_t conv_out(const lw_conv_params_t *p, int32_t acc, const int32_t *mult, const int32_t *shift,
                                 const int32_t *rnd, int32_t oc)
{
    acc = lw_requant_out(acc, mult[oc], shift[oc], rnd[oc], p->rq_fast, p->out_offset);
    return (int8_t)lw_clamp_s8(acc, p->act_min, p->act_max);
}

/* requantize channel oc of two pixels (accumulators u0, u1) into y0[oc], y1[oc], the channel's
 * constants read once for both (an int8 store may alias them: GCC would read them again) */
LW_ALWAYS_INLINE void conv_out2(const lw_conv_params_t *p, int32_t u0, int32_t u1, const int32_t *mult,
                                const int32_t *shift, const int32_t *rnd, int32_t oc, int8_t *y0, int8_t *y1)
{
    const int32_t m = mult[oc], s = shift[oc], r = rnd[oc];
    const int32_t v0 = lw_requant_out_mla(u0, m, s, r, p->rq_fast, p->out_offset);
    const int32_t v1 = lw_requant_out_mla(u1, m, s, r, p->rq_fast, p->out_offset);
    y0[oc] = (int8_t)lw_clamp_s8(v0, p->act_min, p->act_max);
    y1[oc] = (int8_t)lw_clamp_s8(v1, p->act_min, p->act_max);
}

/* pw16: a 1x1 unpadded convolution of in_c <= 64 (4k) channels, or any convolution whose patch is
 * at most 16 bytes (a first layer), and out_c <= 128, one output pixel at a time (the lw_pw_*
 * helpers of lw_common.h): 16 input bytes at a time (the input pixel, or the gathered patch) are
 * unpacked once into int16 pairs held in registers, then every output channel is 8 SMLADs
 * against its record (partial sums of wider inputs in part[]). */
LW_ALWAYS_INLINE void conv_pw16(const lw_conv_params_t *p, const int8_t *input, const int32_t *rec, int8_t *scratch,
                                int8_t *output)
{
    /* chunks of 8 pairs: the last starts at c_last (a constant once inlined), and is the one that
     * ends with the record tail; each chunk is its own loop over the channels, so none tests c */
    const int32_t half = p->patch_len / 2, len = half + 4, c_last = (half - 1) / 8 * 8, n_last = half - c_last;
    int32_t part[LW_PW_MAX_OC];
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            int8_t *y = output + (oy * p->out_w + ox) * p->out_c;
            const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
            const int32_t *r;
            int32_t xv[8] = {0};
            for (int32_t c = 0; c < c_last; c += 8) { /* partial sums of all chunks but the last */
                lw_pw_load(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w, p->row4, p->in_place,
                           iy0, ix0, (int8_t)(-p->in_offset), scratch, c, 8, xv);
                r = rec + c;
                int32_t *s = part;
                if (c == 0) {
                    for (int32_t oc = 0; oc < p->out_c; ++oc, r += len - 8) {
                        *s++ = lw_pw_dot(&r, xv, 8, 0, 1);
                    }
                } else {
                    for (int32_t oc = 0; oc < p->out_c; ++oc, r += len - 8, ++s) {
                        *s = lw_pw_dot(&r, xv, 8, *s, 0);
                    }
                }
            }
            lw_pw_load(input, p->in_h, p->in_w, p->in_c, p->k_h, p->k_w, p->dil_h, p->dil_w, p->row4, p->in_place, iy0,
                       ix0, (int8_t)(-p->in_offset), scratch, c_last, n_last, xv);
            r = rec + c_last;
            const int32_t *s = part;
            for (int32_t oc = 0; oc < p->out_c; ++oc, r += c_last) {
                const int32_t acc = lw_pw_dot(&r, xv, n_last, c_last == 0 ? 0 : *s++, c_last == 0);
                *y++ = lw_pw_out(&r, acc, p->rq_fast, p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}

LW_ALWAYS_INLINE void lw_conv_s8_impl(const lw_conv_params_t *p, const int8_t *input, const int8_t *weights,
                                      const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                      const int32_t *rnd, const int8_t *pad_row, int8_t *scratch, int8_t *output)
{
    const int32_t n = p->patch_len, npix = p->out_h * p->out_w, oc_n = p->out_c;
    if (p->pw16) {
        conv_pw16(p, input, (const int32_t *)(const void *)weights, scratch, output);
        return;
    }
    for (int32_t i = 0; i < npix; i += 2) {
        const int32_t j = i + 1 < npix ? i + 1 : i; /* a lone last pixel is computed twice, stored once */
        const int32_t iy0 = (i / p->out_w) * p->stride_h - p->pad_top, ix0 = (i % p->out_w) * p->stride_w - p->pad_left;
        const int32_t iy1 = (j / p->out_w) * p->stride_h - p->pad_top, ix1 = (j % p->out_w) * p->stride_w - p->pad_left;
        const int32_t inside = conv_inside(p, iy0, ix0) && conv_inside(p, iy1, ix1);
        const int8_t *tap0[LW_CONV_MAX_TAPS], *tap1[LW_CONV_MAX_TAPS];
        if (!p->in_place) {
            conv_gather(p, input, i, scratch, 0);
            conv_gather(p, input, j, scratch, 1);
        } else if (!inside || oc_n % 2) {
            conv_taps(p, input, pad_row, iy0, ix0, tap0);
            conv_taps(p, input, pad_row, iy1, ix1, tap1);
        }
        int8_t *y0 = output + i * oc_n, *y1 = output + j * oc_n;
        const int8_t *w = weights;
        int32_t oc = 0;
        for (; oc + 2 <= oc_n; oc += 2, w += 2 * n) {
            int32_t a[4] = {bias_folded[oc], bias_folded[oc + 1], bias_folded[oc], bias_folded[oc + 1]};
            if (p->in_place) {
                conv_in_place(p, input, iy0, ix0, iy1, ix1, inside, w, tap0, tap1, a);
            } else {
                lw_mac_2x2i_s8(scratch, w, n, a);
            }
            conv_out2(p, a[0], a[2], mult, shift, rnd, oc, y0, y1);
            conv_out2(p, a[1], a[3], mult, shift, rnd, oc + 1, y0, y1);
        }
        if (oc < oc_n) { /* odd channel count: the last row is stored plain */
            if (p->in_place) { /* one pixel at a time: the last row is plain */
                const int8_t *const *tap[2] = {tap0, tap1};
                int8_t *yy[2] = {y0, y1};
                for (int32_t u = 0; u < 2; ++u) {
                    int32_t acc = bias_folded[oc];
                    for (int32_t t = 0; t < p->k_h * p->k_w; ++t) {
                        acc += lw_dot_s8(tap[u][t], w + t * p->in_c, p->in_c);
                    }
                    yy[u][oc] = conv_out(p, acc, mult, shift, rnd, oc);
                }
            } else {
                int32_t a[2] = {bias_folded[oc], bias_folded[oc]};
                lw_mac_2x1i_s8(scratch, w, n, a);
                y0[oc] = conv_out(p, a[0], mult, shift, rnd, oc);
                y1[oc] = conv_out(p, a[1], mult, shift, rnd, oc);
            }
        }
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_conv_s8(const lw_conv_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias_folded,
                const int32_t *mult, const int32_t *shift, const int32_t *rnd, const int8_t *pad_row, int8_t *scratch,
                int8_t *output)
{
    lw_conv_s8_impl(p, input, weights, bias_folded, mult, shift, rnd, pad_row, scratch, output);
}
#endif
