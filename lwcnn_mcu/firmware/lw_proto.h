/*
 * lw_proto.h - frame codec of the lwcnn-mcu benchmark protocol (see docs/protocol.md).
 * Frame: A5 5A | type | seq | len (u16 LE) | payload | crc16 (LE, CCITT-FALSE over type..payload).
 * Pure C99, no I/O: the same file is unit-tested on the host with random and truncated frames.
 */
#ifndef LW_PROTO_H
#define LW_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "lw_proto_codes.h"

#ifndef LW_PROTO_RX_MAX
#define LW_PROTO_RX_MAX LW_PROTO_MAX_PAYLOAD
#endif

/* lw_proto_feed results */
#define LW_PROTO_NONE 0 /* need more bytes */
#define LW_PROTO_FRAME 1 /* rx->type, rx->seq, rx->len, rx->payload hold a valid frame */
#define LW_PROTO_ERROR 2 /* rx->error holds an LW_ERR_* code; the parser is hunting again */

typedef struct {
    uint8_t state;
    uint8_t type;
    uint8_t seq;
    uint8_t error;
    uint16_t len;
    uint16_t pos;
    uint16_t crc;
    uint8_t crc_lo;
    uint8_t payload[LW_PROTO_RX_MAX];
} lw_proto_rx_t;

/* CRC-16/CCITT-FALSE update. */
uint16_t lw_crc16(uint16_t crc, const uint8_t *data, size_t n);

/* Forget any partial frame and hunt for the next magic. */
void lw_proto_reset(lw_proto_rx_t *rx);

/* 1 if a frame is partly received (used for the inter-byte timeout). */
int lw_proto_busy(const lw_proto_rx_t *rx);

/* Feed one received byte. */
int lw_proto_feed(lw_proto_rx_t *rx, uint8_t byte);

/* Send a frame byte by byte through put (no buffer needed). */
void lw_proto_send(void (*put)(uint8_t), uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len);

/* Write a frame into out (capacity cap); returns its size, or 0 when it does not fit. */
size_t lw_proto_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len);

/* The u32 (little-endian) at p. */
uint32_t lw_proto_rd32(const uint8_t *p);

/*
 * Stage one INPUT chunk into an input buffer (the model's own: no other copy of the input is kept).
 *   dst      out: the input buffer, `size` bytes; bytes [offset, offset + n) are written on success only
 *   size     in:  the model's input size in bytes, >= 1
 *   staged   in/out: bytes staged so far from offset 0 without a gap (0 after boot or SELECT); a chunk
 *            at offset 0 starts a new input (staged = n), a later one extends it (staged = max(staged,
 *            offset + n)), so a chunk sent again after a lost reply changes nothing
 *   payload  in: the INPUT payload, u32 offset (LE) then the n = len - 4 bytes
 *   len      in: payload length
 * Returns 0 when staged, LW_ERR_BAD_OFFSET for an empty chunk or one not within [0, size), or
 * LW_ERR_INPUT_INCOMPLETE for a chunk that starts past *staged (bytes before it are missing: the
 * device reset since they came).
 */
uint8_t lw_proto_stage(uint8_t *dst, uint32_t size, uint32_t *staged, const uint8_t *payload, uint16_t len);

#endif /* LW_PROTO_H */
