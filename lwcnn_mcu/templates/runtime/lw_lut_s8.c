/*
 * lw_lut_s8 - an int8 activation by table lookup (TFLite LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU).
 * The compiler runs TFLite Micro's int8 kernel on each of the 256 input codes once (lwcnn_mcu/quant.py)
 * and stores the answers; here every byte is one load from that table. Four bytes per iteration: one
 * word read, its four codes looked up, one word written. output may alias input (in-place).
 *
 * p      [in]  size: number of values
 * table  [in]  256 int8 outputs, for the inputs -128, -127, ..., 127 in that order (flash)
 * input  [in]  size int8 values, any alignment
 * output [out] size int8 values, any alignment; may be input itself
 */
#include "lw_kernels.h"

void lw_lut_s8(const lw_lut_params_t *p, const int8_t *table, const int8_t *input, int8_t *output)
{
    const uint8_t *t = (const uint8_t *)table;
    const int32_t n = p->size; /* once: the byte stores below may alias *p as far as C knows */
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t w;
        memcpy(&w, input + i, 4);
        /* code v sits in its byte as v + 256 (v < 0) or v: flipping the top bit gives v + 128 */
        w ^= 0x80808080u;
        const uint32_t r = (uint32_t)t[w & 0xffu] | (uint32_t)t[(w >> 8) & 0xffu] << 8 |
                           (uint32_t)t[(w >> 16) & 0xffu] << 16 | (uint32_t)t[w >> 24] << 24;
        memcpy(output + i, &r, 4);
    }
    for (; i < n; ++i) {
        output[i] = table[(uint8_t)input[i] ^ 0x80u];
    }
}
