/*
 * lw_fc_s8 - int8 fully connected layer (TFLite FULLY_CONNECTED, per-tensor or per-channel).
 *
 * p       [in]  in_n, out_n, offsets and clamp
 * input   [in]  in_n int8 values
 * weights [in]  out_n x in_n, symmetric int8 (row-major: one row per output)
 * bias_folded [in] out_n values: bias + in_offset * sum of the row's weights
 * mult    [in]  out_n multipliers (a per-tensor scale is repeated); shift [in] out_n shifts
 * output  [out] out_n int8 values
 */
#include "lw_kernels.h"

LW_ALWAYS_INLINE void lw_fc_s8_impl(const lw_fc_params_t *p, const int8_t *input, const int8_t *weights,
                                    const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                    int8_t *output)
{
    for (int32_t o = 0; o < p->out_n; ++o) {
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
