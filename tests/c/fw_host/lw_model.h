/* The pretend model as the firmware sees it (what builder.model_table generates for one model). */
#ifndef LW_MODEL_H
#define LW_MODEL_H

#include <stdint.h>

#include "lwcnn_model.h"

typedef struct {
    const char *name;
    const char *hash;
    int32_t input_size, output_size, arena_bytes, num_layers;
    int (*invoke)(void *arena, const int8_t *input, int8_t *output);
} lw_model_t;

#define LW_MODEL_COUNT 1
#define LW_MODEL_MAX_INPUT LWCNN_INPUT_SIZE
#define LW_MODEL_MAX_OUTPUT LWCNN_OUTPUT_SIZE
#define LW_MODEL_MAX_LAYERS LWCNN_NUM_LAYERS

extern const lw_model_t lw_models[LW_MODEL_COUNT];
extern int32_t lw_arena[1];

#endif /* LW_MODEL_H */
