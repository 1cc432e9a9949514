/*
 * counters.c - DWT cycle counter and a 32-bit SysTick tick counter, shared by all boards.
 * SysTick counts the core clock (CLKSOURCE = processor); its 24-bit wrap is extended in the
 * interrupt. Under QEMU with -icount shift=0 one instruction is 1 ns of virtual time, so ticks
 * are a deterministic instruction count (ticks * 1e9 / clock).
 */
#include "board.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

static volatile uint32_t systick_wraps;

void board_reset(void)
{
    __asm__ volatile("dsb" ::: "memory");
    *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u; /* AIRCR: VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}

void SysTick_Handler(void)
{
    systick_wraps++;
}

void counters_init(void);
void counters_init(void)
{
    DEMCR |= (1u << 24); /* TRCENA */
#if defined(__ARM_ARCH_7EM__) && LW_CORE_M7
    DWT_LAR = 0xC5ACCE55u;
#endif
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* enable, interrupt, processor clock */
}

uint32_t board_cycles(void)
{
    return DWT_CYCCNT;
}

void board_ticks_restart(void)
{
    SYST_CVR = 0u; /* any write clears the count; it reloads at the next tick */
    for (uint32_t i = 0; i < 1000u && SYST_CVR == 0u; ++i) { /* bounded: never hang on an odd timer */
    }
    /* the count now starts at a tick boundary; drop a wrap the write may have pended */
    *(volatile uint32_t *)0xE000ED04u = (1u << 25); /* ICSR.PENDSTCLR */
    systick_wraps = 0u;
}

uint32_t board_ticks(void)
{
    uint32_t hi, lo;
    do {
        hi = systick_wraps;
        lo = SYST_CVR;
    } while (hi != systick_wraps);
    return (hi << 24) + (0x00FFFFFFu - lo);
}
