/*
 * lw_mean_s8 - int8 mean over one contiguous block of axes (TFLite MEAN as TFLite Micro's
 * QuantizedMeanOrSum computes it for every int8 MEAN: sum, remove the zero point, one
 * requantization that folds 1/count into the multiplier). Height and width of NHWC
 * (GlobalAveragePooling2D), the steps of (N, T, C) (GlobalAveragePooling1D), or the channels.
 *
 * p      [in]  outer: independent blocks (>= 1); count: values averaged into each output (>= 1);
 *              channels: outputs per block, the distance between the values of one output (>= 1);
 *              zero points, folded multiplier and shift
 * input  [in]  outer x count x channels values (for H,W of NHWC: 1 x H*W x C)
 * output [out] outer x channels values
 */
#include "lw_kernels.h"

static void lw_mean_block(const lw_mean_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t c = 0;
#if LW_SIMD
    if (p->channels % 4 == 0 && p->count <= 255) { /* 4 channels per word; |sum| <= 255 * 128 fits int16 */
        for (; c < p->channels; c += 4) {
            int32_t s02 = 0, s13 = 0;
            const int8_t *x = input + c;
            for (int32_t i = 0; i < p->count; ++i, x += p->channels) {
                const int32_t v = lw_load32(x);
                s02 = lw_sadd16(s02, lw_sxtb16(v));
                s13 = lw_sadd16(s13, lw_sxtb16_ror8(v));
            }
            const int32_t sums[4] = {(int16_t)(s02 & 0xffff), (int16_t)(s13 & 0xffff), (int16_t)((s02 >> 16) & 0xffff),
                                     (int16_t)((s13 >> 16) & 0xffff)};
            for (int32_t j = 0; j < 4; ++j) {
                const int32_t v = lw_mbqm(sums[j] - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
                output[c + j] = (int8_t)LW_CLAMP(v, -128, 127);
            }
        }
    }
#endif
    for (; c < p->channels; ++c) {
        int32_t sum = 0;
        for (int32_t i = 0; i < p->count; ++i) {
            sum += input[i * p->channels + c];
        }
        int32_t v = lw_mbqm(sum - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
        output[c] = (int8_t)LW_CLAMP(v, -128, 127);
    }
}

void lw_mean_s8(const lw_mean_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t o = 0; o < p->outer; ++o) {
        lw_mean_block(p, input + o * p->count * p->channels, output + o * p->channels);
    }
}
