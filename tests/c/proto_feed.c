/* Host harness for lwcnn_mcu/firmware/lw_proto.c: feeds stdin byte by byte, prints one line per event:
 *   F <type> <seq> <len> <sum of payload bytes>     a valid frame
 *   E <code>                                        an error (the parser resynchronises)
 */
#include <stdio.h>

#include "lw_proto.h"

int main(void)
{
    static lw_proto_rx_t rx;
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
        } else if (r == LW_PROTO_ERROR) {
            printf("E %u\n", rx.error);
        }
    }
    return 0;
}
