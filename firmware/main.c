/*
 * main.c - lwcnn-mcu firmware.
 *
 * 1. Announces itself in text and runs the built-in test images (for people and `selftest`):
 *      LWCNN READY board=<name> model=<sha256 prefix> arena=<bytes> clock=<hz>
 *      RESULT <i> <output bytes as hex> cycles=<DWT> ticks=<SysTick>
 *      DONE
 * 2. Sends a READY frame and serves the benchmark protocol (docs/protocol.md) forever:
 *    INFO, INFER, TIME, LAYERS, RESET. A bad frame gets an ERROR reply; the parser resynchronises
 *    on the next start marker, and a frame whose bytes stop arriving is dropped after 20 ms.
 */
#include <stdint.h>

#include "board.h"
#include "lw_proto.h"
#include "lw_testdata.h"
#include "lwcnn_hooks.h"
#include "lwcnn_model.h"

#define LW_FIRMWARE_VERSION "lwcnn-fw 1"

volatile uint32_t lw_profile_on;
uint32_t lw_layer_cycles[LW_MAX_LAYERS];
uint32_t lw_layer_ticks[LW_MAX_LAYERS];
uint32_t lw_layer_c0, lw_layer_t0;

/* sized by the build for this model: the largest reply (INFO, INFER_OK or LAYERS_OK) */
#ifndef LW_REPLY_MAX
#define LW_REPLY_MAX LW_PROTO_MAX_PAYLOAD
#endif

static lw_proto_rx_t rx;
static uint8_t reply[LW_REPLY_MAX];
static int8_t input[LWCNN_INPUT_SIZE];
static int8_t output[LWCNN_OUTPUT_SIZE];
static int have_input;

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

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void send(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len)
{
    lw_proto_send(board_putc, type, seq, payload, len);
}

static void send_error(uint8_t seq, uint8_t code, uint8_t type)
{
    const uint8_t p[2] = {code, type};
    send(LW_MSG_ERROR, seq, p, 2);
}

static uint16_t append_str(uint16_t n, const char *s)
{
    while (*s != '\0' && n < sizeof reply - 1u) {
        reply[n++] = (uint8_t)*s++;
    }
    reply[n++] = 0;
    return n;
}

static void send_info(uint8_t type, uint8_t seq)
{
    reply[0] = LW_PROTO_VERSION;
    reply[1] = LW_COUNTER_KIND;
    reply[2] = 0;
    reply[3] = 0;
    wr32(reply + 4, board_clock_hz());
    wr32(reply + 8, LWCNN_ARENA_BYTES);
    wr32(reply + 12, LWCNN_INPUT_SIZE);
    wr32(reply + 16, LWCNN_OUTPUT_SIZE);
    wr32(reply + 20, LWCNN_NUM_LAYERS);
    uint16_t n = 24;
    n = append_str(n, LW_BOARD_NAME);
    n = append_str(n, LW_FIRMWARE_VERSION);
    n = append_str(n, LWCNN_MODEL_HASH);
    send(type, seq, reply, n);
}

static void infer(uint32_t *cycles, uint32_t *ticks)
{
    board_ticks_restart();
    const uint32_t c0 = board_cycles();
    const uint32_t t0 = board_ticks();
    (void)lwcnn_invoke(input, output);
    const uint32_t t1 = board_ticks();
    const uint32_t c1 = board_cycles();
    *cycles = c1 - c0;
    *ticks = t1 - t0;
}

static void handle(void)
{
    const uint8_t seq = rx.seq;
    switch (rx.type) {
    case LW_MSG_INFO:
        send_info(LW_MSG_INFO_OK, seq);
        break;
    case LW_MSG_INFER: {
        if (rx.len != LWCNN_INPUT_SIZE) {
            send_error(seq, LW_ERR_BAD_INPUT_SIZE, rx.type);
            break;
        }
        for (uint16_t i = 0; i < rx.len; ++i) {
            input[i] = (int8_t)rx.payload[i];
        }
        have_input = 1;
        uint32_t c, t;
        infer(&c, &t);
        wr32(reply, c);
        wr32(reply + 4, t);
        for (int32_t i = 0; i < LWCNN_OUTPUT_SIZE; ++i) {
            reply[8 + i] = (uint8_t)output[i];
        }
        send(LW_MSG_INFER_OK, seq, reply, (uint16_t)(8 + LWCNN_OUTPUT_SIZE));
        break;
    }
    case LW_MSG_TIME: {
        if (!have_input) {
            send_error(seq, LW_ERR_NO_INPUT, rx.type);
            break;
        }
        const uint32_t k = rx.len >= 2 ? (uint32_t)(rx.payload[0] | (rx.payload[1] << 8)) : 1u;
        uint32_t total_c = 0, total_t = 0, min_t = 0xFFFFFFFFu, max_t = 0;
        for (uint32_t i = 0; i < k; ++i) {
            uint32_t c, t;
            infer(&c, &t);
            total_c += c;
            total_t += t;
            min_t = t < min_t ? t : min_t;
            max_t = t > max_t ? t : max_t;
        }
        wr32(reply, k);
        wr32(reply + 4, total_c);
        wr32(reply + 8, total_t);
        wr32(reply + 12, k ? min_t : 0u);
        wr32(reply + 16, max_t);
        send(LW_MSG_TIME_OK, seq, reply, 20);
        break;
    }
    case LW_MSG_LAYERS: {
        if (!have_input) {
            send_error(seq, LW_ERR_NO_INPUT, rx.type);
            break;
        }
        uint32_t c, t;
        lw_profile_on = 1;
        infer(&c, &t);
        lw_profile_on = 0;
        const int32_t n = LWCNN_NUM_LAYERS < LW_MAX_LAYERS ? LWCNN_NUM_LAYERS : LW_MAX_LAYERS;
        for (int32_t i = 0; i < n; ++i) {
            wr32(reply + 8 * i, lw_layer_cycles[i]);
            wr32(reply + 8 * i + 4, lw_layer_ticks[i]);
        }
        send(LW_MSG_LAYERS_OK, seq, reply, (uint16_t)(8 * n));
        break;
    }
    case LW_MSG_RESET:
        board_reset();
        break;
    default:
        send_error(seq, LW_ERR_UNKNOWN_TYPE, rx.type);
        break;
    }
}

static void selftest(void)
{
    put_str("\nLWCNN READY board=" LW_BOARD_NAME " model=");
    put_str(LW_MODEL_HASH_PREFIX);
    put_str(" arena=");
    put_u32(LWCNN_ARENA_BYTES);
    put_str(" clock=");
    put_u32(board_clock_hz());
    put_str("\n");
    for (int32_t i = 0; i < LW_TEST_COUNT; ++i) {
        for (int32_t k = 0; k < LWCNN_INPUT_SIZE; ++k) {
            input[k] = lw_test_inputs[i][k];
        }
        uint32_t c, t;
        infer(&c, &t);
        put_str("RESULT ");
        put_u32((uint32_t)i);
        put_str(" ");
        for (int32_t k = 0; k < LWCNN_OUTPUT_SIZE; ++k) {
            put_hex8((uint8_t)output[k]);
        }
        put_str(" cycles=");
        put_u32(c);
        put_str(" ticks=");
        put_u32(t);
        put_str("\n");
    }
    put_str("DONE\n");
}

int main(void)
{
    board_init();
    selftest();
    lw_proto_reset(&rx);
    send_info(LW_MSG_READY, 0);
    const uint32_t byte_timeout = board_clock_hz() / 50u; /* 20 ms without a byte ends a frame */
    uint32_t last = board_ticks();
    for (;;) {
        const int32_t b = board_getc();
        if (b < 0) {
            const uint32_t now = board_ticks();
            if (now < last) { /* an inference restarted the tick count */
                last = now;
            }
            if (lw_proto_busy(&rx) && now - last > byte_timeout) {
                lw_proto_reset(&rx);
                send_error(rx.seq, LW_ERR_TIMEOUT, rx.type);
            }
            continue;
        }
        last = board_ticks();
        const int r = lw_proto_feed(&rx, (uint8_t)b);
        if (r == LW_PROTO_FRAME) {
            handle();
        } else if (r == LW_PROTO_ERROR) {
            send_error(rx.seq, rx.error, rx.type);
        }
    }
}
