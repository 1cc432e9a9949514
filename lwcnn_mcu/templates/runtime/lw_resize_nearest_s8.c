/*
 * lw_resize_nearest_s8 - int8 nearest-neighbour resize of an NHWC tensor (TFLite
 * RESIZE_NEAREST_NEIGHBOR; Keras UpSampling1D/2D). A gather copy: each output pixel is the input
 * pixel the compiler chose for it, computed once with TFLite Micro's own single-precision
 * arithmetic (align_corners, half_pixel_centers) and stored as offsets. Codes are copied as they
 * are, as TFLite Micro does.
 *
 * p           [in]  in_h, in_w, channels, out_h, out_w
 * input       [in]  in_h x in_w x channels
 * row_offsets [in]  out_h values: where output row y's source row starts in input (in_y * in_w * channels)
 * col_offsets [in]  out_w values: where output column x's source pixel starts in that row (in_x * channels)
 * output      [out] out_h x out_w x channels; must not overlap input
 */
#include "lw_kernels.h"

void lw_resize_nearest_s8(const lw_resize_nearest_params_t *p, const int8_t *input, const int32_t *row_offsets,
                          const int32_t *col_offsets, int8_t *output)
{
    const int32_t c = p->channels;
    const size_t row_bytes = (size_t)(p->out_w * c);
    for (int32_t y = 0; y < p->out_h; ++y) {
        int8_t *dst = output + (size_t)y * row_bytes;
        if (y > 0 && row_offsets[y] == row_offsets[y - 1]) { /* the same source row: repeat the row just written */
            memcpy(dst, dst - row_bytes, row_bytes);
            continue;
        }
        const int8_t *src = input + row_offsets[y];
        for (int32_t x = 0; x < p->out_w; ++x) {
            memcpy(dst + x * c, src + col_offsets[x], (size_t)c);
        }
    }
}
