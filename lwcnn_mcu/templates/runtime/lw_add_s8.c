/*
 * lw_add_s8 - int8 element-wise addition of two same-shape tensors (TFLite ADD).
 * input2 is either the same size (in2_stride 1) or one constant (in2_stride 0).
 * Both inputs are rescaled to a shared scale with 20 bits of headroom, summed and requantized.
 * output may alias input1 (in-place).
 *
 * p      [in]  size, offsets, the three multiplier/shift pairs, clamp
 * input1 [in]  size int8 values; input2 [in] size (or 1) int8 values
 * output [out] size int8 values
 */
#include "lw_kernels.h"

void lw_add_s8(const lw_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t a = lw_shl(input1[i] + p->in1_offset, p->left_shift);
        const int32_t b = lw_shl(input2[i * p->in2_stride] + p->in2_offset, p->left_shift);
        const int32_t sa = lw_mbqm(a, p->in1_mult, p->in1_shift);
        const int32_t sb = lw_mbqm(b, p->in2_mult, p->in2_shift);
        const int32_t v = lw_mbqm(sa + sb, p->out_mult, p->out_shift) + p->out_offset;
        output[i] = (int8_t)LW_CLAMP(v, p->act_min, p->act_max);
    }
}
