/*
 * main.c - lwcnn-mcu firmware: announce the board and model, run the built-in test images
 * through the generated model, print each output with its counters, then stop (emulated
 * boards) or idle.
 *
 * Output lines (115200 8N1):
 *   LWCNN READY board=<name> model=<sha256 prefix> arena=<bytes> clock=<hz>
 *   RESULT <i> <output bytes as hex> cycles=<DWT> ticks=<SysTick>
 *   DONE
 */
#include <stdint.h>

#include "board.h"
#include "lw_testdata.h"
#include "lwcnn_model.h"

static void put_str(const char *s)
{
    while (*s != '\0') {
        board_putc((uint8_t)*s++);
    }
}

static void put_u32(uint32_t v)
{
    char buf[11];
    int32_t n = 0;
    do {
        buf[n++] = (char)('0' + (v % 10u));
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        board_putc((uint8_t)buf[--n]);
    }
}

static void put_hex8(uint8_t v)
{
    static const char digits[] = "0123456789abcdef";
    board_putc((uint8_t)digits[v >> 4]);
    board_putc((uint8_t)digits[v & 0xFu]);
}

static int8_t output[LWCNN_OUTPUT_SIZE];

int main(void)
{
    board_init();
    put_str("\nLWCNN READY board=" LW_BOARD_NAME " model=");
    put_str(LW_MODEL_HASH_PREFIX);
    put_str(" arena=");
    put_u32(LWCNN_ARENA_BYTES);
    put_str(" clock=");
    put_u32(board_clock_hz());
    put_str("\n");
    for (int32_t i = 0; i < LW_TEST_COUNT; ++i) {
        const uint32_t c0 = board_cycles();
        const uint32_t t0 = board_ticks();
        (void)lwcnn_invoke(lw_test_inputs[i], output);
        const uint32_t t1 = board_ticks();
        const uint32_t c1 = board_cycles();
        put_str("RESULT ");
        put_u32((uint32_t)i);
        put_str(" ");
        for (int32_t k = 0; k < LWCNN_OUTPUT_SIZE; ++k) {
            put_hex8((uint8_t)output[k]);
        }
        put_str(" cycles=");
        put_u32(c1 - c0);
        put_str(" ticks=");
        put_u32(t1 - t0);
        put_str("\n");
    }
    put_str("DONE\n");
    board_exit(0);
    return 0;
}
