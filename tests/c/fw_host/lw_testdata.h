/* Host test build of the firmware: one built-in test input. */
#ifndef LW_TESTDATA_H
#define LW_TESTDATA_H

#include <stdint.h>

#include "lwcnn_model.h"

#define LW_TEST_COUNT 1

/* the rest of a larger input is zeros */
static const int8_t lw_test_inputs[LW_TEST_COUNT][LWCNN_INPUT_SIZE] = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                                                        15, 16}};

#endif /* LW_TESTDATA_H */
