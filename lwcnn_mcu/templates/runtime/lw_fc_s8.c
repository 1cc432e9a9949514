/*
 * lw_fc_s8 - int8 fully connected layer (TFLite FULLY_CONNECTED, per-tensor or per-channel).
 *
 * With fc4 (in_n % 4 == 0), outputs are computed four at a time: each input word is loaded and
 * sign-extended once (SXTB16) for four rows whose weights are stored word-interleaved, so four
 * rows' next words are consecutive: 16 MACs per 5 loads, 10 SXTB16 and 8 SMLAD.
 *
 * p       [in]  in_n, out_n, offsets, clamp, rq_fast, fc4
 * input   [in]  in_n int8 values
 * weights [in]  out_n x in_n, symmetric int8: one row per output; with fc4, each block of four rows
 *               (the first out_n / 4 * 4 rows) is word-interleaved: word j of rows 0, 1, 2, 3, then
 *               word j + 1; the rows after the last block stay plain
 * bias_folded [in] out_n values: bias + in_offset * sum of the row's weights
 * mult    [in]  out_n multipliers (a per-tensor scale is repeated); shift [in] out_n shifts
 * output  [out] out_n int8 values
 */
#include "lw_kernels.h"

LW_ALWAYS_INLINE void lw_fc_s8_impl(const lw_fc_params_t *p, const int8_t *input, const int8_t *weights,
                                    const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                    int8_t *output)
{
    const int32_t blocks_end = p->fc4 ? p->out_n / 4 * 4 : 0; /* the rows in blocks of four */
    for (int32_t o = 0; o < blocks_end; o += 4) {
        int32_t a0 = bias_folded[o], a1 = bias_folded[o + 1], a2 = bias_folded[o + 2], a3 = bias_folded[o + 3];
        const int8_t *w = weights + o * p->in_n;
        for (int32_t j = 0; j < p->in_n; j += 4, w += 16) {
            lw_mac_1x4_step(input + j, w, &a0, &a1, &a2, &a3);
        }
        const int32_t acc[4] = {a0, a1, a2, a3};
        for (int32_t r = 0; r < 4; ++r) {
            const int32_t v = lw_requant(acc[r], mult[o + r], shift[o + r], p->rq_fast) + p->out_offset;
            output[o + r] = (int8_t)lw_clamp_s8(v, p->act_min, p->act_max);
        }
    }
    for (int32_t o = blocks_end; o < p->out_n; ++o) {
        int32_t acc = bias_folded[o] + lw_dot_s8(input, weights + o * p->in_n, p->in_n);
        acc = lw_requant(acc, mult[o], shift[o], p->rq_fast) + p->out_offset;
        output[o] = (int8_t)lw_clamp_s8(acc, p->act_min, p->act_max);
    }
}

#ifndef LW_KERNEL_INLINE_ONLY
void lw_fc_s8(const lw_fc_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias_folded,
              const int32_t *mult, const int32_t *shift, int8_t *output)
{
    lw_fc_s8_impl(p, input, weights, bias_folded, mult, shift, output);
}
#endif
