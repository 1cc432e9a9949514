/* Host test build of the firmware: a pretend model of FAKE_LAYERS layers (default 300, more than
 * one LAYERS_OK reply holds). Layer i "takes" i + 1 ticks of the host board's clock. Its input and
 * output sizes are FAKE_INPUT and FAKE_OUTPUT bytes (default 16 and 4; larger than a frame holds to
 * test INPUT and OUTPUT chunks). */
#ifndef LWCNN_MODEL_H
#define LWCNN_MODEL_H

#include <stdint.h>

#ifndef FAKE_LAYERS
#define FAKE_LAYERS 300
#endif

#define LWCNN_MODEL_NAME "fake"
#define LWCNN_MODEL_HASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#ifndef FAKE_INPUT
#define FAKE_INPUT 16
#endif
#ifndef FAKE_OUTPUT
#define FAKE_OUTPUT 4
#endif

#define LWCNN_INPUT_SIZE FAKE_INPUT
#define LWCNN_OUTPUT_SIZE FAKE_OUTPUT
#define LWCNN_ARENA_BYTES 64
#define LWCNN_NUM_LAYERS FAKE_LAYERS

int lwcnn_invoke(const int8_t *input, int8_t *output);
const char *lwcnn_layer_name(int i);

#endif /* LWCNN_MODEL_H */
