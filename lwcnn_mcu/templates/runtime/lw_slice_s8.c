/*
 * lw_slice_s8 - copy a strided window of an int8 tensor (TFLite STRIDED_SLICE and SLICE, as
 * Keras Cropping1D/2D produce them). The window is resolved at compile time: a start offset and,
 * for each of four axes (outermost first), how many values to take and how far apart they lie
 * in the input. Bytes are copied as they are (TFLite Micro does not requantize a slice).
 *
 * p      [in]  start: offset of the window's first value in the input (>= 0)
 *              size0..size3: values taken along each axis (>= 1); their product is the output size
 *              step0..step3: input offset between consecutive values of each axis (>= 0);
 *                            step3 == 1 copies each innermost run with one memcpy
 * input  [in]  the whole input tensor (row-major, NHWC for images)
 * output [out] size0 x size1 x size2 x size3 values, row-major; must not overlap the input
 */
#include "lw_kernels.h"

void lw_slice_s8(const lw_slice_params_t *p, const int8_t *input, int8_t *output)
{
    const int8_t *x0 = input + p->start;
    for (int32_t i0 = 0; i0 < p->size0; ++i0, x0 += p->step0) {
        const int8_t *x1 = x0;
        for (int32_t i1 = 0; i1 < p->size1; ++i1, x1 += p->step1) {
            const int8_t *x2 = x1;
            for (int32_t i2 = 0; i2 < p->size2; ++i2, x2 += p->step2) {
                if (p->step3 == 1) {
                    memcpy(output, x2, (size_t)p->size3);
                    output += p->size3;
                    continue;
                }
                const int8_t *x3 = x2;
                for (int32_t i3 = 0; i3 < p->size3; ++i3, x3 += p->step3) {
                    *output++ = *x3;
                }
            }
        }
    }
}
