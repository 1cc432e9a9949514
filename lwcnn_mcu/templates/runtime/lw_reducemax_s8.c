/*
 * lw_reducemax_s8 - int8 maximum over one contiguous block of axes (TFLite REDUCE_MAX:
 * GlobalMaxPooling1D/2D, or over the channels; input and output share scale and zero point).
 *
 * p      [in]  outer: independent blocks (>= 1); count: values reduced into each output (>= 1);
 *              channels: outputs per block, the distance between the values of one output (>= 1)
 * input  [in]  outer x count x channels values (for H,W of NHWC: 1 x H*W x C)
 * output [out] outer x channels values
 */
#include "lw_kernels.h"

void lw_reducemax_s8(const lw_reducemax_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t o = 0; o < p->outer; ++o, input += p->count * p->channels, output += p->channels) {
        for (int32_t c = 0; c < p->channels; ++c) {
            int8_t m = -128;
            for (int32_t i = 0; i < p->count; ++i) {
                const int8_t v = input[i * p->channels + c];
                m = v > m ? v : m;
            }
            output[c] = m;
        }
    }
}
