/*
 * lw_add_s8 - int8 element-wise addition or subtraction with broadcasting (TFLite ADD and SUB).
 * Both inputs are rescaled to a shared scale with 20 bits of headroom, added (or the second
 * subtracted), and requantized: TFLite Micro's AddFunc / SubElementwise, which its same-shape and
 * broadcast paths share. The output is walked in memory order as four nested loops (n0 outermost,
 * n3 innermost, one row); each input steps in1_s* / in2_s* elements per loop iteration, 0 where it
 * is broadcast (same-shape inputs: one row of the whole size, steps 1). output may alias input1
 * when input1 has the output's shape (each element is read before it is written).
 * With tables (p->add_lut), each input's rescaled value is read from its table instead of computed:
 * the same int32 the general path computes, so the sum and the output are the same bytes.
 *
 * p      [in]  offsets, the three multiplier/shift pairs, clamp, subtract (0: ADD, 1: SUB), add_lut,
 *              rq_fast and out_rnd (the output requantization's SMMULR path), the loops
 * input1 [in]  int8 values, laid out as the loops' in1 steps say (NHWC, right-aligned broadcasting)
 * lut1   [in]  with add_lut: input1's rescaled values, indexed by the code -128..127 (points at entry
 *              128 of 256 int32); else NULL
 * input2 [in]  int8 values, laid out as the loops' in2 steps say
 * lut2   [in]  with add_lut: input2's rescaled values (negated for SUB), as lut1; else NULL
 * output [out] n0 * n1 * n2 * n3 int8 values
 */
#include "lw_kernels.h"

/* one output row of n3 elements; a and b step sa and sb (0 or 1) elements per element */
static void lw_add_row(const lw_add_params_t *p, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                       int8_t *output)
{
    for (int32_t i = 0; i < p->n3; ++i) {
        const int32_t x = lw_shl(a[i * sa] + p->in1_offset, p->left_shift);
        const int32_t y = lw_shl(b[i * sb] + p->in2_offset, p->left_shift);
        const int32_t sx = lw_mbqm(x, p->in1_mult, p->in1_shift);
        const int32_t sy = lw_mbqm(y, p->in2_mult, p->in2_shift);
        const int32_t raw = p->subtract ? sx - sy : sx + sy;
        const int32_t v = lw_mbqm(raw, p->out_mult, p->out_shift) + p->out_offset;
        output[i] = (int8_t)LW_CLAMP(v, p->act_min, p->act_max);
    }
}

/* n elements through the tables: t1[a] + t2[b] is the general path's raw sum. Inlined into each call
 * below with constant steps, fast and clamp, so each combination gets its own tight loop (no
 * stride multiplies for contiguous rows, no bound checks when the clamp is int8's own range). */
LW_ALWAYS_INLINE void lw_add_lut_loop(int32_t n, const int8_t *a, int32_t sa, const int32_t *t1, const int8_t *b,
                                      int32_t sb, const int32_t *t2, int8_t *output, int32_t mult, int32_t shift,
                                      int32_t rnd, int32_t out_offset, int32_t lo, int32_t hi, int32_t fast,
                                      int32_t clamp)
{
    for (int32_t i = 0; i < n; ++i) {
        const int32_t raw = t1[a[i * sa]] + t2[b[i * sb]];
        int32_t v;
        if (fast) { /* lw_requant_out's SMMULR path, the output offset inside rnd */
            const int32_t r = lw_smmulr(raw * 2, mult);
            v = (r + (r < 0 ? -1 : 0) + rnd) >> -shift;
        } else {
            v = lw_mbqm(raw, mult, shift) + out_offset;
        }
        output[i] = (int8_t)(clamp ? lw_clamp_s8(v, lo, hi) : lw_clamp_s8(v, -128, 127));
    }
}

/* one output row through the tables. The parameters are read once into locals: the int8 stores may
 * alias *p (char types alias anything), so the compiler would otherwise reload them after every store. */
static void lw_add_row_lut(const lw_add_params_t *p, const int8_t *a, int32_t sa, const int32_t *t1, const int8_t *b,
                           int32_t sb, const int32_t *t2, int8_t *output)
{
    const int32_t n = p->n3;
    const int32_t mult = p->out_mult;
    const int32_t shift = p->out_shift;
    const int32_t rnd = p->out_rnd;
    const int32_t off = p->out_offset;
    const int32_t lo = p->act_min;
    const int32_t hi = p->act_max;
    const int32_t clamp = lo > -128 || hi < 127;
    if (p->rq_fast && sa == 1 && sb == 1 && !clamp) {
        lw_add_lut_loop(n, a, 1, t1, b, 1, t2, output, mult, shift, rnd, off, lo, hi, 1, 0);
    } else if (p->rq_fast && sa == 1 && sb == 1) {
        lw_add_lut_loop(n, a, 1, t1, b, 1, t2, output, mult, shift, rnd, off, lo, hi, 1, 1);
    } else if (p->rq_fast) {
        lw_add_lut_loop(n, a, sa, t1, b, sb, t2, output, mult, shift, rnd, off, lo, hi, 1, 1);
    } else {
        lw_add_lut_loop(n, a, sa, t1, b, sb, t2, output, mult, shift, rnd, off, lo, hi, 0, 1);
    }
}

void lw_add_s8(const lw_add_params_t *p, const int8_t *input1, const int32_t *lut1, const int8_t *input2,
               const int32_t *lut2, int8_t *output)
{
    for (int32_t i0 = 0; i0 < p->n0; ++i0) {
        for (int32_t i1 = 0; i1 < p->n1; ++i1) {
            for (int32_t i2 = 0; i2 < p->n2; ++i2) {
                const int8_t *a = input1 + i0 * p->in1_s0 + i1 * p->in1_s1 + i2 * p->in1_s2;
                const int8_t *b = input2 + i0 * p->in2_s0 + i1 * p->in2_s1 + i2 * p->in2_s2;
                if (p->add_lut) {
                    lw_add_row_lut(p, a, p->in1_s3, lut1, b, p->in2_s3, lut2, output);
                } else {
                    lw_add_row(p, a, p->in1_s3, b, p->in2_s3, output);
                }
                output += p->n3;
            }
        }
    }
}
