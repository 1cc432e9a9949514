/*
 * lw_requant_s8 - int8 to int8 requantization with a clamp (TFLite QUANTIZE int8->int8, and
 * RELU / RELU6 as separate ops). output may alias input.
 *
 * p      [in]  size, zero points, multiplier/shift of in_scale/out_scale, clamp
 * input  [in]  size int8 values
 * output [out] size int8 values
 */
#include "lw_kernels.h"

void lw_requant_s8(const lw_requant_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t v = lw_mbqm(input[i] - p->in_zp, p->mult, p->shift) + p->out_zp;
        output[i] = (int8_t)LW_CLAMP(v, p->act_min, p->act_max);
    }
}
