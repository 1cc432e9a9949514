/*
 * lw_reducemax_s8 - int8 maximum over height and width (TFLite REDUCE_MAX; input and output
 * share scale and zero point).
 *
 * p      [in]  count = H*W, channels
 * input  [in]  count x channels (NHWC)
 * output [out] channels values
 */
#include "lw_kernels.h"

void lw_reducemax_s8(const lw_reducemax_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t c = 0; c < p->channels; ++c) {
        int8_t m = -128;
        for (int32_t i = 0; i < p->count; ++i) {
            const int8_t v = input[i * p->channels + c];
            m = v > m ? v : m;
        }
        output[c] = m;
    }
}
