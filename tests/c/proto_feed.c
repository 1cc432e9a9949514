/* Host harness for lwcnn_mcu/firmware/lw_proto.c: feeds stdin byte by byte, prints one line per event:
 *   F <type> <seq> <len> <sum of payload bytes>     a valid frame
 *   E <code>                                        an error (the parser resynchronises)
 * With one argument SIZE (`proto_feed 3000`) every valid INPUT frame is also staged into an input
 * buffer of exactly SIZE bytes on the heap (AddressSanitizer sees a write past it), as the firmware
 * does, and an INFER frame with an empty payload reports whether the whole input is staged:
 *   S <code> <staged>                               an INPUT chunk: lw_proto_stage's result, bytes staged
 *   I <1 if all SIZE bytes are staged, else 0>      an INFER of the staged input
 *   B <the buffer in hex>                           at the end of the input
 */
#include <stdio.h>
#include <stdlib.h>

#include "lw_proto.h"

int main(int argc, char **argv)
{
    static lw_proto_rx_t rx;
    const long size = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
    uint8_t *input = size > 0 ? malloc((size_t)size) : NULL;
    uint32_t staged = 0;
    if (input != NULL) {
        for (long i = 0; i < size; ++i) {
            input[i] = 0;
        }
    }
    lw_proto_reset(&rx);
    int c;
    while ((c = getchar()) != EOF) {
        const int r = lw_proto_feed(&rx, (uint8_t)c);
        if (r == LW_PROTO_FRAME) {
            unsigned long sum = 0;
            for (uint16_t i = 0; i < rx.len; ++i) {
                sum += rx.payload[i];
            }
            printf("F %u %u %u %lu\n", rx.type, rx.seq, rx.len, sum);
            if (input != NULL && rx.type == LW_MSG_INPUT) {
                const uint8_t err = lw_proto_stage(input, (uint32_t)size, &staged, rx.payload, rx.len);
                printf("S %u %lu\n", err, (unsigned long)staged);
            } else if (input != NULL && rx.type == LW_MSG_INFER && rx.len == 0u) {
                printf("I %d\n", staged == (uint32_t)size ? 1 : 0);
            }
        } else if (r == LW_PROTO_ERROR) {
            printf("E %u\n", rx.error);
        }
    }
    if (input != NULL) {
        printf("B ");
        for (long i = 0; i < size; ++i) {
            printf("%02x", input[i]);
        }
        printf("\n");
        free(input);
    }
    return 0;
}
