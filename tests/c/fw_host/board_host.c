/* Host test build of the firmware: board.h over stdin/stdout (a pseudo-terminal in the test), with
 * a clock that only the pretend model advances. End of input ends the program. */
#include <stdio.h>
#include <stdlib.h>

#include "board.h"

uint32_t host_clock;

void board_init(void)
{
}

uint32_t board_clock_hz(void)
{
    return LW_CLOCK_HZ;
}

uint32_t board_info_flags(void)
{
    return 0u;
}

void board_putc(uint8_t c)
{
    (void)putchar(c);
}

int32_t board_getc(void)
{
    (void)fflush(stdout); /* everything sent before waiting for the host */
    const int c = getchar();
    if (c == EOF) {
        exit(0);
    }
    return (int32_t)c;
}

uint32_t board_cycles(void)
{
    return host_clock;
}

uint32_t board_ticks(void)
{
    return host_clock;
}

void board_ticks_restart(void)
{
}

void board_exit(int32_t code)
{
    (void)fflush(stdout);
    exit((int)code);
}

void board_reset(void)
{
    (void)fflush(stdout);
    exit(3);
}
