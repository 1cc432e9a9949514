/* Host build hooks: record every layer's output for lwcnn-mcu verify's per-layer trace. */
#ifndef LWCNN_HOOKS_H
#define LWCNN_HOOKS_H
#include <stdint.h>
void lw_host_trace(int layer, const int8_t *data, int32_t size);
#define LWCNN_LAYER_END(i, data, size) lw_host_trace((i), (data), (size))
#endif
