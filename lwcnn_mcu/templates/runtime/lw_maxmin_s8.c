/*
 * lw_maxmin_s8 - int8 element-wise maximum or minimum with broadcasting (TFLite MAXIMUM and
 * MINIMUM). Like TFLite Micro, it compares the int8 codes and writes the chosen one unchanged (the
 * compiler only accepts inputs quantized exactly as the output). The output is walked in memory
 * order as four nested loops (n0 outermost, n3 innermost, one row); each input steps in1_s* /
 * in2_s* elements per loop iteration, 0 where it is broadcast. output may alias input1 when input1
 * has the output's shape.
 *
 * p      [in]  maximum (1: MAXIMUM, 0: MINIMUM), the loops
 * input1 [in]  int8 values, laid out as the loops' in1 steps say (NHWC, right-aligned broadcasting)
 * input2 [in]  int8 values, laid out as the loops' in2 steps say
 * output [out] n0 * n1 * n2 * n3 int8 values
 */
#include "lw_kernels.h"

/* one output row of n3 elements; a and b step sa and sb (0 or 1) elements per element */
static void lw_maxmin_row(const lw_maxmin_params_t *p, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                          int8_t *output)
{
    for (int32_t i = 0; i < p->n3; ++i) {
        const int8_t x = a[i * sa];
        const int8_t y = b[i * sb];
        output[i] = (int8_t)(p->maximum ? LW_MAX(x, y) : LW_MIN(x, y));
    }
}

void lw_maxmin_s8(const lw_maxmin_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    for (int32_t i0 = 0; i0 < p->n0; ++i0) {
        for (int32_t i1 = 0; i1 < p->n1; ++i1) {
            for (int32_t i2 = 0; i2 < p->n2; ++i2) {
                const int8_t *a = input1 + i0 * p->in1_s0 + i1 * p->in1_s1 + i2 * p->in1_s2;
                const int8_t *b = input2 + i0 * p->in2_s0 + i1 * p->in2_s1 + i2 * p->in2_s2;
                lw_maxmin_row(p, a, p->in1_s3, b, p->in2_s3, output);
                output += p->n3;
            }
        }
    }
}
