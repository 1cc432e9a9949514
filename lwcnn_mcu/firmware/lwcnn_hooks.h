/*
 * lwcnn_hooks.h - firmware layer hooks: per-layer cycle/tick timing while a LAYERS request runs.
 * The generated model calls LWCNN_LAYER_BEGIN/END around every layer (LWCNN_HAVE_HOOKS).
 */
#ifndef LWCNN_HOOKS_H
#define LWCNN_HOOKS_H

#include <stdint.h>

#include "board.h"
#include "lw_model.h" /* the models this firmware runs: LW_MODEL_MAX_LAYERS */

#define LW_MAX_LAYERS (LW_MODEL_MAX_LAYERS > 0 ? LW_MODEL_MAX_LAYERS : 1)
extern volatile uint32_t lw_profile_on;
extern uint32_t lw_layer_cycles[LW_MAX_LAYERS];
extern uint32_t lw_layer_ticks[LW_MAX_LAYERS];
extern uint32_t lw_layer_c0, lw_layer_t0;

#define LWCNN_LAYER_BEGIN(i)                                                                                           \
    do {                                                                                                               \
        if (lw_profile_on) {                                                                                           \
            lw_layer_c0 = board_cycles();                                                                              \
            lw_layer_t0 = board_ticks();                                                                               \
        }                                                                                                              \
    } while (0)
#define LWCNN_LAYER_END(i, data, size)                                                                                 \
    do {                                                                                                               \
        if (lw_profile_on && (i) < LW_MAX_LAYERS) {                                                                    \
            lw_layer_ticks[(i)] = board_ticks() - lw_layer_t0;                                                         \
            lw_layer_cycles[(i)] = board_cycles() - lw_layer_c0;                                                       \
        }                                                                                                              \
    } while (0)

#endif /* LWCNN_HOOKS_H */
