/*
 * board_mps2.c - QEMU mps2-an386 (Cortex-M4): CMSDK UART0, semihosting exit.
 */
#include "board.h"

#if LW_FAMILY_MPS2

#define UART_DATA (*(volatile uint32_t *)(LW_UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(LW_UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(LW_UART_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(LW_UART_BASE + 0x10u))

void counters_init(void);

void board_init(void)
{
    UART_BAUDDIV = LW_CLOCK_HZ / 115200u;
    UART_CTRL = 0x3u; /* TX and RX enable */
    (void)UART_DATA; /* QEMU quirk: host->guest input stalls until one read after enabling */
    counters_init();
}

uint32_t board_clock_hz(void)
{
    return LW_CLOCK_HZ;
}

uint32_t board_info_flags(void)
{
    return 0u; /* QEMU's fixed clock: nothing to set up */
}

void board_putc(uint8_t c)
{
    while (UART_STATE & 1u) {
    }
    UART_DATA = c;
}

int32_t board_getc(void)
{
    if (UART_STATE & 2u) {
        return (int32_t)(UART_DATA & 0xFFu);
    }
    return -1;
}

void board_exit(int32_t code)
{
    /* semihosting SYS_EXIT with ADP_Stopped_ApplicationExit (0) or RunTimeErrorUnknown (1) */
    register uint32_t r0 __asm__("r0") = 0x18u;
    register uint32_t r1 __asm__("r1") = code == 0 ? 0x20026u : 0x20023u;
    __asm__ volatile("bkpt 0xAB" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

#endif /* LW_FAMILY_MPS2 */
