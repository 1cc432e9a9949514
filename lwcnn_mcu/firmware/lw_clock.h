/*
 * lw_clock.h - the STM32 boards' clock setup (clock_stm32.c) and the clock it reads back.
 *
 * The settings come from the generated lw_board.h (LW_CLK_*: lwcnn_mcu/boards.py, which cites the
 * reference-manual section of each value). Every register access goes through lw_reg_read /
 * lw_reg_write: on the target they are volatile loads and stores; the host test build defines
 * LW_REG_MODEL and links a simulated register file (tests/c/clock_model.c) whose write hook
 * enforces the manuals' ordering rules and sets the ready bits.
 */
#ifndef LW_CLOCK_H
#define LW_CLOCK_H

#include <stdint.h>

#include "lw_board.h"

typedef struct {
    uint32_t core_hz; /* HCLK, computed from the RCC registers read back (0: unknown source) */
    uint32_t uart_hz; /* kernel clock of the host UART, likewise */
    uint32_t fallback; /* 1: a step failed and the reset clock was restored */
    uint32_t failed_step; /* LW_CLOCK_STEP_* of the step that failed, 0 when none did */
} lw_clock_t;

/* Program the board's clock tree; on any failure return to the reset clock. Then measure. */
void lw_clock_setup(lw_clock_t *out);
/* core_hz and uart_hz from the RCC registers as they are now. */
void lw_clock_measure(lw_clock_t *out);

#ifdef LW_REG_MODEL
uint32_t lw_reg_read(uint32_t addr);
void lw_reg_write(uint32_t addr, uint32_t value);
void lw_reg_barrier(void); /* DSB + ISB */
void lw_reg_delay(uint32_t cycles); /* at least this many core clock cycles */
#else
static inline uint32_t lw_reg_read(uint32_t addr)
{
    return *(volatile uint32_t *)(uintptr_t)addr;
}

static inline void lw_reg_write(uint32_t addr, uint32_t value)
{
    *(volatile uint32_t *)(uintptr_t)addr = value;
}

static inline void lw_reg_barrier(void)
{
    __asm__ volatile("dsb 0xF\n isb 0xF" ::: "memory");
}

static inline void lw_reg_delay(uint32_t cycles)
{
    for (uint32_t i = 0; i < cycles; ++i) { /* each pass takes at least one cycle */
        __asm__ volatile("nop");
    }
}
#endif

#endif /* LW_CLOCK_H */
