/*
 * startup.c - vector table and reset handler for every Cortex-M board (no vendor code).
 * Copies .data from flash, clears .bss, enables the FPU when the build uses it, calls main.
 */
#include <stdint.h>

#include "board.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

void Reset_Handler(void)
{
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 and CP11 */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    (void)main();
    board_exit(0);
    for (;;) {
    }
}

void Default_Handler(void)
{
    static const char msg[] = "\nLWCNN FAULT\n";
    for (const char *p = msg; *p != '\0'; ++p) {
        board_putc((uint8_t)*p);
    }
    board_exit(3);
    for (;;) {
    }
}

typedef void (*lw_vector_t)(void);

__attribute__((section(".isr_vector"), used)) const lw_vector_t lw_vectors[16] = {
    (lw_vector_t)(uintptr_t)&_estack, /* initial stack pointer */
    Reset_Handler,
    Default_Handler, /* NMI */
    Default_Handler, /* HardFault */
    Default_Handler, /* MemManage */
    Default_Handler, /* BusFault */
    Default_Handler, /* UsageFault */
    0,
    0,
    0,
    0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    SysTick_Handler,
};
