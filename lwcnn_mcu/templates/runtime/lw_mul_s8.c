/*
 * lw_mul_s8 - int8 element-wise multiplication (TFLite MUL): input2 is the same size
 * (in2_stride 1) or one constant (in2_stride 0). output may alias input1.
 *
 * p      [in]  size, offsets, multiplier/shift of s1*s2/so, clamp, in2_stride
 * input1 [in]  size int8 values; input2 [in] size (or 1) int8 values
 * output [out] size int8 values
 */
#include "lw_kernels.h"

void lw_mul_s8(const lw_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t a = input1[i] + p->in1_offset;
        const int32_t b = input2[i * p->in2_stride] + p->in2_offset;
        const int32_t v = lw_mbqm(a * b, p->mult, p->shift) + p->out_offset;
        output[i] = (int8_t)LW_CLAMP(v, p->act_min, p->act_max);
    }
}
