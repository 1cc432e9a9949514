/*
 * lw_pad_s8 - int8 constant padding of an NHWC tensor (TFLite PAD / PADV2).
 *
 * p      [in]  input and output shapes, leading pads (top, left, front channels), fill value
 * input  [in]  in_h x in_w x in_c
 * output [out] out_h x out_w x out_c
 */
#include "lw_kernels.h"

void lw_pad_s8(const lw_pad_params_t *p, const int8_t *input, int8_t *output)
{
    memset(output, (int8_t)p->value, (size_t)(p->out_h * p->out_w * p->out_c));
    for (int32_t y = 0; y < p->in_h; ++y) {
        for (int32_t x = 0; x < p->in_w; ++x) {
            int8_t *dst = output + ((y + p->pad_top) * p->out_w + x + p->pad_left) * p->out_c + p->pad_front;
            memcpy(dst, input + (y * p->in_w + x) * p->in_c, (size_t)p->in_c);
        }
    }
}
