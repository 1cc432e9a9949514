/*
 * board_stm32.c - STM32F4 / STM32F7 / STM32L4 at register level (no HAL): clock (clock_stm32.c),
 * the ST-LINK virtual COM port UART (pins, alternate function, baud from the UART clock read back
 * from the RCC), exit.
 *
 * F4 USART: SR 0x00, DR 0x04, BRR 0x08, CR1 0x0C (UE bit 13).
 * F7/L4 USART and LPUART: CR1 0x00 (UE bit 0), BRR 0x0C, ISR 0x1C, ICR 0x20, RDR 0x24, TDR 0x28.
 * Every wait on a hardware flag is bounded, so an emulator that does not model a clock falls
 * back to the reset clock instead of hanging.
 */
#include "board.h"
#include "lw_clock.h"
#include "lw_proto_codes.h"

#if !LW_FAMILY_MPS2

#define REG(addr) (*(volatile uint32_t *)(addr))
#define RCC(off) REG(LW_UART_RCC + (off))
#define GPIO(off) REG(LW_UART_GPIO + (off))
#define UART(off) REG(LW_UART_BASE + (off))

void counters_init(void);

static lw_clock_t clk;

static int wait_set(volatile uint32_t *reg, uint32_t mask, uint32_t value)
{
    for (uint32_t i = 0; i < 100000u; ++i) {
        if ((*reg & mask) == value) {
            return 1;
        }
    }
    return 0;
}

static void pin_af(uint32_t pin, uint32_t af)
{
    GPIO(0x00) = (GPIO(0x00) & ~(3u << (2u * pin))) | (2u << (2u * pin)); /* MODER: alternate */
    const uint32_t afr = pin < 8u ? 0x20u : 0x24u;
    const uint32_t sh = 4u * (pin & 7u);
    GPIO(afr) = (GPIO(afr) & ~(0xFu << sh)) | (af << sh);
}

void board_init(void)
{
    lw_clock_setup(&clk);
    /* an unknown UART clock (a source this code never selects) leaves the reset clock as the best guess */
    const uint32_t uart_hz = clk.uart_hz != 0u ? clk.uart_hz : LW_RESET_CLOCK_HZ;
#if LW_FAMILY_STM32L4
    RCC(0x58) |= (1u << 28); /* APB1ENR1: PWR */
    REG(0x40007004u) |= (1u << 9); /* PWR_CR2: IOSV, port G is powered by VDDIO2 */
#endif
    RCC(LW_UART_AHB_ENR) |= (1u << LW_UART_GPIO_BIT);
    RCC(LW_UART_APB_ENR) |= (1u << LW_UART_APB_BIT);
    pin_af(LW_UART_TX_PIN, LW_UART_AF);
    pin_af(LW_UART_RX_PIN, LW_UART_AF);
#if LW_FAMILY_STM32F4
    UART(0x08) = (uart_hz + 57600u) / 115200u;
    UART(0x0C) = (1u << 13) | (1u << 3) | (1u << 2); /* UE, TE, RE */
#else
#if LW_UART_LPUART
    UART(0x0C) = (uint32_t)(((uint64_t)uart_hz * 256u + 57600u) / 115200u);
#else
    UART(0x0C) = (uart_hz + 57600u) / 115200u;
#endif
    UART(0x00) = 1u | (1u << 3) | (1u << 2); /* UE, TE, RE */
#endif
    counters_init();
}

uint32_t board_clock_hz(void)
{
    return clk.core_hz;
}

uint32_t board_info_flags(void)
{
    return clk.fallback ? LW_INFO_CLOCK_FALLBACK | ((clk.failed_step << 8) & LW_INFO_CLOCK_STEP) : 0u;
}

void board_putc(uint8_t c)
{
#if LW_FAMILY_STM32F4
    (void)wait_set(&UART(0x00), 1u << 7, 1u << 7);
    UART(0x04) = c;
#else
    (void)wait_set(&UART(0x1C), 1u << 7, 1u << 7);
    UART(0x28) = c;
#endif
}

int32_t board_getc(void)
{
#if LW_FAMILY_STM32F4
    const uint32_t sr = UART(0x00);
    if (sr & ((1u << 5) | (1u << 3))) { /* RXNE or overrun: reading DR clears both */
        return (int32_t)(UART(0x04) & 0xFFu);
    }
#else
    const uint32_t isr = UART(0x1C);
    if (isr & (1u << 3)) {
        UART(0x20) = (1u << 3); /* clear overrun */
    }
    if (isr & (1u << 5)) {
        return (int32_t)(UART(0x24) & 0xFFu);
    }
#endif
    return -1;
}

void board_exit(int32_t code)
{
#if LW_SEMIHOSTING
    register uint32_t r0 __asm__("r0") = 0x18u;
    register uint32_t r1 __asm__("r1") = code == 0 ? 0x20026u : 0x20023u;
    __asm__ volatile("bkpt 0xAB" : : "r"(r0), "r"(r1) : "memory");
#else
    (void)code;
#endif
    for (;;) {
        __asm__ volatile("wfi");
    }
}

#endif /* !LW_FAMILY_MPS2 */
