/*
 * lw_maxpool_s8 - int8 max pooling (TFLite MAX_POOL_2D); padded taps are ignored.
 *
 * p      [in]  window, stride, padding, clamp
 * input  [in]  NHWC, in_h x in_w x in_c
 * output [out] NHWC, out_h x out_w x in_c
 */
#include "lw_kernels.h"

void lw_maxpool_s8(const lw_maxpool_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        const int32_t ky0 = LW_MAX(0, -iy0);
        const int32_t ky1 = LW_MIN(p->k_h, p->in_h - iy0);
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            const int32_t kx0 = LW_MAX(0, -ix0);
            const int32_t kx1 = LW_MIN(p->k_w, p->in_w - ix0);
            for (int32_t c = 0; c < p->in_c; ++c) {
                int32_t m = -128;
                for (int32_t ky = ky0; ky < ky1; ++ky) {
                    for (int32_t kx = kx0; kx < kx1; ++kx) {
                        const int32_t v = input[((iy0 + ky) * p->in_w + ix0 + kx) * p->in_c + c];
                        m = LW_MAX(m, v);
                    }
                }
                output[(oy * p->out_w + ox) * p->out_c + c] = (int8_t)LW_CLAMP(m, p->act_min, p->act_max);
            }
        }
    }
}
