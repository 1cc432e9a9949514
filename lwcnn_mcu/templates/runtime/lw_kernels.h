/*
 * lw_kernels.h - the lwcnn-mcu int8 kernel library (portable C99 reference kernels).
 * One public kernel per file, named lw_<op>_s8 like CMSIS-NN's arm_<op>_s8.
 * Tensors are NHWC, batch 1. Every kernel is bit-exact with TensorFlow Lite Micro.
 */
#ifndef LW_KERNELS_H
#define LW_KERNELS_H

#include "lw_common.h"

void lw_conv_s8(const lw_conv_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias_folded,
                const int32_t *mult, const int32_t *shift, const int32_t *rnd, const int8_t *pad_row, int8_t *scratch,
                int8_t *output);

void lw_dwconv_s8(const lw_dwconv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias_folded,
                  const int32_t *mult, const int32_t *shift, const int32_t *rnd, int8_t *scratch, int8_t *output);
void lw_fc_s8(const lw_fc_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias_folded,
              const int32_t *mult, const int32_t *shift, int8_t *output);
void lw_convpool_s8(const lw_convpool_params_t *p, const int8_t *input, const int8_t *weights,
                    const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, const int32_t *rnd,
                    int8_t *scratch, int8_t *output);
void lw_maxpool_s8(const lw_maxpool_params_t *p, const int8_t *input, int8_t *output);
void lw_avgpool_s8(const lw_avgpool_params_t *p, const int8_t *input, int8_t *output);
void lw_mean_s8(const lw_mean_params_t *p, const int8_t *input, int8_t *output);
void lw_reducemax_s8(const lw_reducemax_params_t *p, const int8_t *input, int8_t *output);
void lw_add_s8(const lw_add_params_t *p, const int8_t *input1, const int32_t *lut1, const int8_t *input2,
               const int32_t *lut2, int8_t *output);
void lw_mul_s8(const lw_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void lw_maxmin_s8(const lw_maxmin_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void lw_concat_s8(const lw_concat_params_t *p, const int8_t *input, int32_t chunk, int32_t offset, int8_t *output);
void lw_pad_s8(const lw_pad_params_t *p, const int8_t *input, int8_t *output);
void lw_reshape_s8(const lw_reshape_params_t *p, const int8_t *input, int8_t *output);
void lw_slice_s8(const lw_slice_params_t *p, const int8_t *input, int8_t *output);
void lw_softmax_s8(const lw_softmax_params_t *p, const int8_t *input, int8_t *output);
void lw_requant_s8(const lw_requant_params_t *p, const int8_t *input, int8_t *output);
void lw_lut_s8(const lw_lut_params_t *p, const int8_t *table, const int8_t *input, int8_t *output);
void lw_prelu_s8(const lw_prelu_params_t *p, const int8_t *input, const int8_t *alpha, int8_t *output);
void lw_tconv_s8(const lw_tconv_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias,
                 const int32_t *tap_offset, const int32_t *mult, const int32_t *shift, const int32_t *rnd,
                 int8_t *output);
void lw_resize_nearest_s8(const lw_resize_nearest_params_t *p, const int8_t *input, const int32_t *row_offsets,
                          const int32_t *col_offsets, int8_t *output);

#endif /* LW_KERNELS_H */
