/*
 * lw_proto.c - byte-at-a-time frame parser and encoder (see lw_proto.h).
 * States: 0 hunt A5, 1 expect 5A, 2 type, 3 seq, 4 len lo, 5 len hi, 6 payload, 7 crc lo, 8 crc hi.
 * Any error returns to the hunt, so the parser resynchronises on the next magic and can never
 * write past payload[] whatever arrives.
 */
#include "lw_proto.h"

uint16_t lw_crc16(uint16_t crc, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (int b = 0; b < 8; ++b) {
            if (crc & 0x8000u) {
                crc = (uint16_t)((uint16_t)(crc << 1) ^ 0x1021u);
            } else {
                crc = (uint16_t)(crc << 1);
            }
        }
    }
    return crc;
}

void lw_proto_reset(lw_proto_rx_t *rx)
{
    rx->state = 0;
    rx->pos = 0;
    rx->len = 0;
}

int lw_proto_busy(const lw_proto_rx_t *rx)
{
    return rx->state > 1;
}

static int fail(lw_proto_rx_t *rx, uint8_t code)
{
    rx->error = code;
    lw_proto_reset(rx);
    return LW_PROTO_ERROR;
}

int lw_proto_feed(lw_proto_rx_t *rx, uint8_t byte)
{
    switch (rx->state) {
    case 0:
        if (byte == 0xA5u) {
            rx->state = 1;
        }
        return LW_PROTO_NONE;
    case 1:
        rx->state = byte == 0x5Au ? 2 : (byte == 0xA5u ? 1 : 0);
        return LW_PROTO_NONE;
    case 2:
        rx->type = byte;
        rx->crc = lw_crc16(0xFFFFu, &byte, 1);
        rx->state = 3;
        return LW_PROTO_NONE;
    case 3:
        rx->seq = byte;
        rx->crc = lw_crc16(rx->crc, &byte, 1);
        rx->state = 4;
        return LW_PROTO_NONE;
    case 4:
        rx->len = byte;
        rx->crc = lw_crc16(rx->crc, &byte, 1);
        rx->state = 5;
        return LW_PROTO_NONE;
    case 5:
        rx->len = (uint16_t)(rx->len | ((uint16_t)byte << 8));
        rx->crc = lw_crc16(rx->crc, &byte, 1);
        if (rx->len > LW_PROTO_RX_MAX) {
            return fail(rx, LW_ERR_BAD_LENGTH);
        }
        rx->pos = 0;
        rx->state = rx->len ? 6 : 7;
        return LW_PROTO_NONE;
    case 6:
        rx->payload[rx->pos++] = byte;
        if (rx->pos == rx->len) {
            rx->crc = lw_crc16(rx->crc, rx->payload, rx->len);
            rx->state = 7;
        }
        return LW_PROTO_NONE;
    case 7:
        rx->crc_lo = byte;
        rx->state = 8;
        return LW_PROTO_NONE;
    default: {
        const uint16_t got = (uint16_t)(rx->crc_lo | ((uint16_t)byte << 8));
        const uint16_t want = rx->crc;
        rx->state = 0; /* keep type, seq, len and payload for the caller */
        if (got != want) {
            rx->error = LW_ERR_BAD_CRC;
            return LW_PROTO_ERROR;
        }
        return LW_PROTO_FRAME;
    }
    }
}

size_t lw_proto_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len)
{
    const size_t total = (size_t)len + 8u;
    if (total > cap) {
        return 0;
    }
    out[0] = 0xA5u;
    out[1] = 0x5Au;
    out[2] = type;
    out[3] = seq;
    out[4] = (uint8_t)(len & 0xFFu);
    out[5] = (uint8_t)(len >> 8);
    for (uint16_t i = 0; i < len; ++i) {
        out[6 + i] = payload[i];
    }
    const uint16_t crc = lw_crc16(0xFFFFu, out + 2, (size_t)len + 4u);
    out[6 + len] = (uint8_t)(crc & 0xFFu);
    out[7 + len] = (uint8_t)(crc >> 8);
    return total;
}

void lw_proto_send(void (*put)(uint8_t), uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len)
{
    const uint8_t head[6] = {0xA5u, 0x5Au, type, seq, (uint8_t)(len & 0xFFu), (uint8_t)(len >> 8)};
    uint16_t crc = lw_crc16(0xFFFFu, head + 2, 4);
    crc = lw_crc16(crc, payload, len);
    for (int i = 0; i < 6; ++i) {
        put(head[i]);
    }
    for (uint16_t i = 0; i < len; ++i) {
        put(payload[i]);
    }
    put((uint8_t)(crc & 0xFFu));
    put((uint8_t)(crc >> 8));
}

uint32_t lw_proto_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint8_t lw_proto_stage(uint8_t *dst, uint32_t size, uint32_t *staged, const uint8_t *payload, uint16_t len)
{
    if (len <= 4u) {
        return LW_ERR_BAD_OFFSET;
    }
    const uint32_t offset = lw_proto_rd32(payload);
    const uint32_t n = (uint32_t)len - 4u;
    if (offset >= size || n > size - offset) { /* written so that offset + n cannot wrap */
        return LW_ERR_BAD_OFFSET;
    }
    if (offset > *staged) {
        return LW_ERR_INPUT_INCOMPLETE;
    }
    for (uint32_t i = 0; i < n; ++i) {
        dst[offset + i] = payload[4u + i];
    }
    if (offset == 0u) {
        *staged = n;
    } else if (offset + n > *staged) {
        *staged = offset + n;
    }
    return 0u;
}
