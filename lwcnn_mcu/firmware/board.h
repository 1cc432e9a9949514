/*
 * board.h - the little the firmware needs from a board: a UART to the host, two counters and a
 * way to stop. Implemented per MCU family in board_<family>.c; the board's constants (clock,
 * UART registers, memory) come from the generated lw_board.h.
 */
#ifndef LW_BOARD_H
#define LW_BOARD_H

#include <stdint.h>

#include "lw_board.h"

/* Clocks, UART (115200 8N1), counters. */
void board_init(void);
/* Core clock in Hz after board_init, computed from the clock registers read back (the reset clock
 * when the clock setup failed and fell back). */
uint32_t board_clock_hz(void);
/* INFO flags (LW_INFO_*): clock fallback and the clock setup step that failed; 0 when all is well. */
uint32_t board_info_flags(void);
void board_putc(uint8_t c);
/* Next received byte, or -1 when none is waiting. */
int32_t board_getc(void);
/* DWT cycle counter (0 where the core or emulator has none). */
uint32_t board_cycles(void);
/* SysTick ticks of the core clock, extended to 32 bits (on QEMU with -icount: virtual time). */
uint32_t board_ticks(void);
/* Restart the SysTick count, so that what follows is measured from the same phase every time
 * (under QEMU -icount this makes tick counts of a deterministic code path deterministic). */
void board_ticks_restart(void);
/* Stop: semihosting exit on emulated boards, a low-power loop on real ones. */
void board_exit(int32_t code);
/* System reset through the NVIC (SCB AIRCR). */
void board_reset(void);

#endif /* LW_BOARD_H */
