/* Host test build of the firmware: the pretend model. output[k] = input[k mod input size] XOR 0x55 XOR
 * (k / input size); layer i advances the host board's clock by i + 1, so LAYERS must report exactly
 * (i + 1, i + 1). */
#include "lwcnn_hooks.h"
#include "lw_model.h"
#include "lwcnn_model.h"

extern uint32_t host_clock;

int lwcnn_invoke(const int8_t *input, int8_t *output)
{
    for (int i = 0; i < LWCNN_NUM_LAYERS; ++i) {
        LWCNN_LAYER_BEGIN(i);
        host_clock += (uint32_t)i + 1u;
        LWCNN_LAYER_END(i, output, LWCNN_OUTPUT_SIZE);
    }
    for (int k = 0; k < LWCNN_OUTPUT_SIZE; ++k) {
        output[k] = (int8_t)(input[k % LWCNN_INPUT_SIZE] ^ 0x55 ^ (k / LWCNN_INPUT_SIZE));
    }
    return 0;
}

const char *lwcnn_layer_name(int i)
{
    (void)i;
    return "fake";
}

static int fake_invoke_with_arena(void *arena, const int8_t *input, int8_t *output)
{
    (void)arena;
    return lwcnn_invoke(input, output);
}

int32_t lw_arena[1];

const lw_model_t lw_models[LW_MODEL_COUNT] = {
    {"fake", LWCNN_MODEL_HASH, LWCNN_INPUT_SIZE, LWCNN_OUTPUT_SIZE, LWCNN_ARENA_BYTES, LWCNN_NUM_LAYERS,
     fake_invoke_with_arena},
};
