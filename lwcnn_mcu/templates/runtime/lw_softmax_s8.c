/*
 * lw_softmax_s8 - int8 softmax with int8 output (scale 1/256, zero point -128), computed with
 * the gemmlowp fixed-point exp and reciprocal that TFLite Micro's reference kernel uses:
 * differences to the row maximum are rescaled to Q5.26, exponentiated to Q0.31, summed in
 * Q12.19, and each exp is multiplied by the Newton-Raphson reciprocal of the sum.
 * output may alias input.
 *
 * p      [in]  rows, depth (<= 511), input multiplier/left shift of beta*scale, diff_min
 * input  [in]  rows x depth int8 logits
 * output [out] rows x depth int8 probabilities
 */
#include "lw_kernels.h"

/* SaturatingRoundingMultiplyByPOT for a positive exponent. */
static int32_t lw_sat_shl(int32_t x, int32_t e)
{
    const int32_t threshold = (int32_t)((1u << (31 - e)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return lw_shl(x, e);
}

static int32_t lw_clz32(uint32_t x)
{
    int32_t n = 0;
    if (x == 0u) {
        return 32;
    }
    while ((x & 0x80000000u) == 0u) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8. */
static int32_t lw_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;
    const int32_t one_third = 715827883;
    const int32_t x = a + (1 << 28);
    const int32_t x2 = lw_srdhm(x, x);
    const int32_t x3 = lw_srdhm(x2, x);
    const int32_t x4 = lw_srdhm(x2, x2);
    const int32_t x4_over_4 = lw_rdbpot(x4, 2);
    const int32_t poly = lw_rdbpot(lw_srdhm(x4_over_4 + x3, one_third) + x2, 1);
    return constant_term + lw_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 in Q5.26, result in Q0.31. */
static int32_t lw_exp_on_negative(int32_t a)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24;
    const int32_t a_mod_q_minus_q = (a & (one_quarter - 1)) - one_quarter;
    int32_t result = lw_exp_quarter(lw_sat_shl(a_mod_q_minus_q, 5));
    const int32_t remainder = a_mod_q_minus_q - a;
    for (int32_t k = 0; k < 7; ++k) {
        if (remainder & (1 << (24 + k))) {
            result = lw_srdhm(result, barrel[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (three Newton-Raphson steps in Q2.29). */
static int32_t lw_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + lw_srdhm(half_den, -1010580540);
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t one_minus = (1 << 29) - lw_srdhm(half_den, x);
        x = x + lw_sat_shl(lw_srdhm(x, one_minus), 2);
    }
    return lw_sat_shl(x, 1);
}

void lw_softmax_s8(const lw_softmax_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *x = input + r * p->depth;
        int8_t *y = output + r * p->depth;
        int32_t max_in_row = -128;
        for (int32_t c = 0; c < p->depth; ++c) {
            max_in_row = LW_MAX(max_in_row, (int32_t)x[c]);
        }
        int32_t sum_of_exps = 0; /* Q12.19 */
        for (int32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t rescaled = lw_srdhm(lw_shl(diff, p->left_shift), p->mult);
                sum_of_exps += lw_rdbpot(lw_exp_on_negative(rescaled), 12);
            }
        }
        const int32_t headroom_plus_one = lw_clz32((uint32_t)sum_of_exps);
        const int32_t bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_minus_one = (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t scale = lw_one_over_one_plus_x(shifted_minus_one);
        for (int32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t rescaled = lw_srdhm(lw_shl(diff, p->left_shift), p->mult);
                const int32_t e = lw_exp_on_negative(rescaled);
                const int32_t v = lw_rdbpot(lw_srdhm(scale, e), bits_over_unit + 31 - 8) - 128;
                y[c] = (int8_t)LW_CLAMP(v, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}
