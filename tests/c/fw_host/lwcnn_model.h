/* Host test build of the firmware: a pretend model of FAKE_LAYERS layers (default 300, more than
 * one LAYERS_OK reply holds). Layer i "takes" i + 1 ticks of the host board's clock. */
#ifndef LWCNN_MODEL_H
#define LWCNN_MODEL_H

#include <stdint.h>

#ifndef FAKE_LAYERS
#define FAKE_LAYERS 300
#endif

#define LWCNN_MODEL_NAME "fake"
#define LWCNN_MODEL_HASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define LWCNN_INPUT_SIZE 16
#define LWCNN_OUTPUT_SIZE 4
#define LWCNN_ARENA_BYTES 64
#define LWCNN_NUM_LAYERS FAKE_LAYERS

int lwcnn_invoke(const int8_t *input, int8_t *output);
const char *lwcnn_layer_name(int i);

#endif /* LWCNN_MODEL_H */
