/*
 * lw_mean_s8 - int8 mean over height and width (TFLite MEAN as TFLite Micro's
 * QuantizedMeanOrSum computes it: sum, remove the zero point, one requantization that
 * folds 1/count into the multiplier).
 *
 * p      [in]  count = H*W, channels, zero points, folded multiplier and shift
 * input  [in]  count x channels (NHWC)
 * output [out] channels values
 */
#include "lw_kernels.h"

void lw_mean_s8(const lw_mean_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t c = 0; c < p->channels; ++c) {
        int32_t sum = 0;
        for (int32_t i = 0; i < p->count; ++i) {
            sum += input[i * p->channels + c];
        }
        int32_t v = lw_mbqm(sum - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
        output[c] = (int8_t)LW_CLAMP(v, -128, 127);
    }
}
