/*
 * lw_concat_s8 - copy one input of a concatenation into its place in the output (TFLite
 * CONCATENATION; inputs share the output's quantization, so this is a strided copy).
 * Called once per input.
 *
 * p      [in]  outer = product of the dimensions before the axis, out_chunk = output bytes per outer slice
 * input  [in]  outer x chunk int8 values
 * chunk  [in]  this input's bytes per outer slice
 * offset [in]  where this input's chunk starts inside each output slice
 * output [out] outer x out_chunk int8 values
 */
#include "lw_kernels.h"

void lw_concat_s8(const lw_concat_params_t *p, const int8_t *input, int32_t chunk, int32_t offset, int8_t *output)
{
    for (int32_t o = 0; o < p->outer; ++o) {
        memcpy(output + o * p->out_chunk + offset, input + o * chunk, (size_t)chunk);
    }
}
