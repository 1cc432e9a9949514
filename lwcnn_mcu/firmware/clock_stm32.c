/*
 * clock_stm32.c - the STM32 boards' core clock at register level (no HAL), programmed from the
 * board registry's values (lw_board.h LW_CLK_*; docs/boards.md lists them with their sources):
 *
 *   STM32F4 (RM0368): HSI -> PLL; wait states raised and read back before the switch (3.4.1).
 *   STM32L4+ (RM0432): HSI16 -> PLL; Range 1 boost entered as 5.1.8 says: AHB /2, R1MODE = 0,
 *     wait states, switch to the PLL, at least 1 us, AHB /1.
 *   STM32F7 (RM0385): HSI -> PLL; over-drive entered as 4.1.4 says: PLL on, ODEN then ODRDY,
 *     ODSWEN then ODSWRDY, wait states and prescalers, PLLRDY, switch; then the Cortex-M7 L1
 *     instruction and data caches, invalidated first (PM0253).
 *
 * Every wait on a hardware flag is bounded. When a step fails, the reset clock is restored (reset
 * oscillator, PLL off, prescalers /1, reset flash settings, normal regulator mode) and the step is
 * reported. The clock reported is always computed from the RCC registers read back, never the
 * value meant: on QEMU, which models no RCC, that is the reset clock.
 */
#include "lw_clock.h"
#include "lw_proto_codes.h"

#if LW_FAMILY_STM32F4 || LW_FAMILY_STM32F7 || LW_FAMILY_STM32L4

/* polls of a ready flag before giving up: about 0.1 s at 16 MHz, far above any lock or switch time */
#define WAIT_LIMIT 200000u

#if LW_FAMILY_STM32L4 /* RM0432 */
#define RCC_BASE 0x40021000u
#define RCC_CR (RCC_BASE + 0x00u)
#define RCC_CFGR (RCC_BASE + 0x08u)
#define RCC_PLLCFGR (RCC_BASE + 0x0Cu)
#define RCC_PWR_ENR (RCC_BASE + 0x58u) /* RCC_APB1ENR1 */
#define RCC_CSR (RCC_BASE + 0x94u)
#define FLASH_ACR 0x40022000u
#define PWR_CR1 0x40007000u
#define PWR_SR2 0x40007014u
#define PWR_CR5 0x40007080u
#define CR_RESET_ON (1u << 0) /* MSION */
#define CR_RESET_RDY (1u << 1) /* MSIRDY */
#define CR_HSION (1u << 8)
#define CR_HSIRDY (1u << 10)
#define SW_PLL 3u
#define PPRE1_SHIFT 8u
#define PPRE2_SHIFT 11u
#define ACR_RESET ((1u << 9) | (1u << 10)) /* ICEN, DCEN are on out of reset */
#define ACR_CACHE ((1u << 9) | (1u << 10))
#define PWR_VOS_MASK (3u << 9)
#define PWR_VOS_RANGE1 (1u << 9)
#define PWR_VOSF (1u << 10)
#define PWR_R1MODE (1u << 8)
/* PLLSRC 1:0, PLLM 7:4, PLLN 14:8, PLLPEN 16, PLLP 17, PLLQEN 20, PLLQ 22:21, PLLREN 24, PLLR 26:25,
 * PLLPDIV 31:27; the other bits are reserved and keep their reset value */
#define PLLCFGR_FIELDS 0xFF737FF3u
#define PLLCFGR_VALUE                                                                                                  \
    ((1u << 24) | ((LW_CLK_PLL_SYSDIV / 2u - 1u) << 25) | (LW_CLK_PLLN << 8) | ((LW_CLK_PLLM - 1u) << 4) |             \
     2u /* HSI16 */)
#else /* STM32F4 (RM0368) and STM32F7 (RM0385): the same RCC layout */
#define RCC_BASE 0x40023800u
#define RCC_CR (RCC_BASE + 0x00u)
#define RCC_PLLCFGR (RCC_BASE + 0x04u)
#define RCC_CFGR (RCC_BASE + 0x08u)
#define RCC_PWR_ENR (RCC_BASE + 0x40u) /* RCC_APB1ENR */
#define FLASH_ACR 0x40023C00u
#define PWR_CR1 0x40007000u
#define PWR_CSR1 0x40007004u
#define CR_RESET_ON (1u << 0) /* HSION */
#define CR_RESET_RDY (1u << 1) /* HSIRDY */
#define CR_HSION CR_RESET_ON
#define CR_HSIRDY CR_RESET_RDY
#define SW_PLL 2u
#define PPRE1_SHIFT 10u
#define PPRE2_SHIFT 13u
#define ACR_RESET 0u
#if LW_FAMILY_STM32F7
#define ACR_CACHE (1u << 9) /* ARTEN */
#else
#define ACR_CACHE ((1u << 9) | (1u << 10)) /* ICEN, DCEN */
#endif
#define PWR_VOS_MASK (3u << 14)
#define PWR_VOS_SCALE1 (3u << 14)
#define PWR_ODEN (1u << 16)
#define PWR_ODSWEN (1u << 17)
#define PWR_ODRDY (1u << 16)
#define PWR_ODSWRDY (1u << 17)
/* PLLM 5:0, PLLN 14:6, PLLP 17:16, PLLSRC 22 (0: HSI), PLLQ 27:24; the other bits are reserved */
#define PLLCFGR_FIELDS 0x0F437FFFu
#define PLLCFGR_VALUE ((LW_CLK_PLLQ << 24) | ((LW_CLK_PLL_SYSDIV / 2u - 1u) << 16) | (LW_CLK_PLLN << 6) | LW_CLK_PLLM)
#endif

#define CR_PLLON (1u << 24)
#define CR_PLLRDY (1u << 25)
#define RCC_PWREN (1u << 28)
#define CFGR_SW 3u
#define CFGR_SWS (3u << 2)
#define CFGR_HPRE (0xFu << 4)
#define CFGR_PPRE1 (7u << PPRE1_SHIFT)
#define CFGR_PPRE2 (7u << PPRE2_SHIFT)
#define SW_RESET 0u /* HSI on F4/F7, MSI on L4 */
#define ACR_LATENCY 0xFu
#define ACR_PRFTEN (1u << 8)

/* Cortex-M7 system control block (ARMv7-M) */
#define SCB_CCR 0xE000ED14u
#define SCB_CCSIDR 0xE000ED80u
#define SCB_CSSELR 0xE000ED84u
#define SCB_ICIALLU 0xE000EF50u
#define SCB_DCISW 0xE000EF60u
#define CCR_DC (1u << 16)
#define CCR_IC (1u << 17)

static int wait_bits(uint32_t addr, uint32_t mask, uint32_t value)
{
    for (uint32_t i = 0; i < WAIT_LIMIT; ++i) {
        if ((lw_reg_read(addr) & mask) == value) {
            return 1;
        }
    }
    return 0;
}

static void modify(uint32_t addr, uint32_t clear, uint32_t set)
{
    lw_reg_write(addr, (lw_reg_read(addr) & ~clear) | set);
}

/* ---------------------------------------------------------------------------------------------
 * What the registers say: SYSCLK from SWS and the PLL configuration, then the bus prescalers. */

static uint32_t ahb_div(uint32_t code)
{
    return code < 8u ? 1u : code < 12u ? 2u << (code - 8u) : 64u << (code - 12u);
}

static uint32_t apb_div(uint32_t code)
{
    return code < 4u ? 1u : 2u << (code - 4u);
}

#if LW_FAMILY_STM32L4
static uint32_t msi_hz(void)
{
    static const uint32_t khz[12] = {100u,  200u,  400u,   800u,   1000u,  2000u,
                                     4000u, 8000u, 16000u, 24000u, 32000u, 48000u};
    const uint32_t cr = lw_reg_read(RCC_CR);
    /* MSIRGSEL: the range in RCC_CR.MSIRANGE, else RCC_CSR.MSISRANGE (the one used out of reset) */
    const uint32_t range = (cr & (1u << 3)) ? (cr >> 4) & 0xFu : (lw_reg_read(RCC_CSR) >> 8) & 0xFu;
    return range < 12u ? khz[range] * 1000u : 0u;
}

static uint32_t pll_hz(void)
{
    const uint32_t c = lw_reg_read(RCC_PLLCFGR);
    const uint32_t src = c & 3u;
    const uint32_t in = src == 1u ? msi_hz() : src == 2u ? 16000000u : 0u; /* HSE: not fitted, unknown */
    const uint32_t m = ((c >> 4) & 0xFu) + 1u;
    const uint32_t n = (c >> 8) & 0x7Fu;
    const uint32_t r = (((c >> 25) & 3u) + 1u) * 2u;
    return (c & (1u << 24)) ? in / m * n / r : 0u;
}

static uint32_t sysclk_hz(void)
{
    const uint32_t sws = (lw_reg_read(RCC_CFGR) & CFGR_SWS) >> 2;
    return sws == 0u ? msi_hz() : sws == 1u ? 16000000u : sws == 3u ? pll_hz() : 0u;
}
#else
static uint32_t pll_hz(void)
{
    const uint32_t c = lw_reg_read(RCC_PLLCFGR);
    const uint32_t m = c & 0x3Fu;
    const uint32_t n = (c >> 6) & 0x1FFu;
    const uint32_t p = (((c >> 16) & 3u) + 1u) * 2u;
    return (c & (1u << 22)) || m == 0u ? 0u : 16000000u / m * n / p; /* HSE source: unknown */
}

static uint32_t sysclk_hz(void)
{
    const uint32_t sws = (lw_reg_read(RCC_CFGR) & CFGR_SWS) >> 2;
    return sws == 0u ? 16000000u : sws == 2u ? pll_hz() : 0u;
}
#endif

void lw_clock_measure(lw_clock_t *out)
{
    const uint32_t sys = sysclk_hz();
    const uint32_t cfgr = lw_reg_read(RCC_CFGR);
    out->core_hz = sys / ahb_div((cfgr & CFGR_HPRE) >> 4);
    const uint32_t pclk1 = out->core_hz / apb_div((cfgr & CFGR_PPRE1) >> PPRE1_SHIFT);
#ifdef LW_UART_CLKSEL
    /* the UART's kernel clock mux: 00 PCLK1, 01 SYSCLK, 10 HSI 16 MHz, 11 LSE */
    const uint32_t sel = (lw_reg_read(RCC_BASE + LW_UART_CLKSEL) >> LW_UART_CLKSEL_SHIFT) & 3u;
    out->uart_hz = sel == 0u ? pclk1 : sel == 1u ? sys : sel == 2u ? 16000000u : 32768u;
#else
    out->uart_hz = pclk1;
#endif
}

/* ---------------------------------------------------------------------------------------------
 * Back to the reset clock: the reset oscillator as SYSCLK (SWS read back), then prescalers /1, PLL
 * off, reset flash settings, normal regulator mode: each lowered only once the clock is low. */

static int to_reset_clock(void)
{
    if ((lw_reg_read(RCC_CFGR) & CFGR_SWS) != (SW_RESET << 2) && (lw_reg_read(RCC_CR) & CR_RESET_RDY) == 0u) {
        modify(RCC_CR, 0u, CR_RESET_ON);
        if (!wait_bits(RCC_CR, CR_RESET_RDY, CR_RESET_RDY)) {
            return 0;
        }
    }
    modify(RCC_CFGR, CFGR_SW, SW_RESET);
    if (!wait_bits(RCC_CFGR, CFGR_SWS, SW_RESET << 2)) {
        return 0;
    }
    modify(RCC_CFGR, CFGR_HPRE | CFGR_PPRE1 | CFGR_PPRE2, 0u);
    modify(RCC_CR, CR_PLLON, 0u);
    (void)wait_bits(RCC_CR, CR_PLLRDY, 0u);
    modify(FLASH_ACR, ACR_LATENCY | ACR_PRFTEN | ACR_CACHE, ACR_RESET);
#if LW_FAMILY_STM32L4
    modify(PWR_CR5, 0u, PWR_R1MODE); /* Range 1 normal mode */
#elif LW_FAMILY_STM32F7
    if (lw_reg_read(PWR_CR1) & (PWR_ODEN | PWR_ODSWEN)) { /* leave over-drive: ODSWEN first, then ODEN */
        modify(PWR_CR1, PWR_ODSWEN, 0u);
        (void)wait_bits(PWR_CSR1, PWR_ODSWRDY, 0u);
        modify(PWR_CR1, PWR_ODEN, 0u);
    }
#endif
    return 1;
}

#if LW_CLK_SETUP

#if LW_CLK_PLL_SRC_HZ != 16000000
#error "this clock code drives the PLL from the 16 MHz HSI/HSI16 only (boards.py ClockSetup.pll_source)"
#endif
#if !(LW_CLK_AHB_DIV == 1 || LW_CLK_AHB_DIV == 2 || LW_CLK_AHB_DIV == 4 || LW_CLK_AHB_DIV == 8)
#error "LW_CLK_AHB_DIV must be 1, 2, 4 or 8"
#endif
#if !(LW_CLK_APB1_DIV == 1 || LW_CLK_APB1_DIV == 2 || LW_CLK_APB1_DIV == 4 || LW_CLK_APB1_DIV == 8 ||                  \
      LW_CLK_APB1_DIV == 16) ||                                                                                        \
    !(LW_CLK_APB2_DIV == 1 || LW_CLK_APB2_DIV == 2 || LW_CLK_APB2_DIV == 4 || LW_CLK_APB2_DIV == 8 ||                  \
      LW_CLK_APB2_DIV == 16)
#error "LW_CLK_APB1_DIV and LW_CLK_APB2_DIV must be 1, 2, 4, 8 or 16"
#endif
#if !(LW_CLK_PLL_SYSDIV == 2 || LW_CLK_PLL_SYSDIV == 4 || LW_CLK_PLL_SYSDIV == 6 || LW_CLK_PLL_SYSDIV == 8)
#error "LW_CLK_PLL_SYSDIV (PLLP or PLLR) must be 2, 4, 6 or 8"
#endif

#define HPRE_CODE(d) ((d) == 1u ? 0u : (d) == 2u ? 8u : (d) == 4u ? 9u : 10u)
#define PPRE_CODE(d) ((d) == 1u ? 0u : (d) == 2u ? 4u : (d) == 4u ? 5u : (d) == 8u ? 6u : 7u)
#define CFGR_BUSES ((PPRE_CODE(LW_CLK_APB1_DIV) << PPRE1_SHIFT) | (PPRE_CODE(LW_CLK_APB2_DIV) << PPRE2_SHIFT))
#define ACR_TARGET (LW_CLK_FLASH_LATENCY | (LW_CLK_PREFETCH ? ACR_PRFTEN : 0u) | (LW_CLK_FLASH_CACHE ? ACR_CACHE : 0u))

/* wait states (and accelerators) first, read back before anything raises the clock */
static int flash_for_target(void)
{
    modify(FLASH_ACR, ACR_LATENCY | ACR_PRFTEN | ACR_CACHE, ACR_TARGET);
    return wait_bits(FLASH_ACR, ACR_LATENCY | ACR_PRFTEN | ACR_CACHE, ACR_TARGET);
}

static int pll_on(void)
{
    /* the PLL is off (to_reset_clock): its configuration may be written */
    lw_reg_write(RCC_PLLCFGR, (lw_reg_read(RCC_PLLCFGR) & ~PLLCFGR_FIELDS) | PLLCFGR_VALUE);
    modify(RCC_CR, 0u, CR_PLLON);
    return 1;
}

static int switch_to_pll(void)
{
    modify(RCC_CFGR, CFGR_SW, SW_PLL);
    return wait_bits(RCC_CFGR, CFGR_SWS, SW_PLL << 2);
}

#if LW_CLK_CPU_CACHES
/* Cortex-M7 L1 caches: invalidate, then enable (PM0253 cache maintenance; AN4839) */
static void cpu_caches_on(void)
{
    if ((lw_reg_read(SCB_CCR) & CCR_IC) == 0u) {
        lw_reg_barrier();
        lw_reg_write(SCB_ICIALLU, 0u);
        lw_reg_barrier();
        modify(SCB_CCR, 0u, CCR_IC);
        lw_reg_barrier();
    }
    if ((lw_reg_read(SCB_CCR) & CCR_DC) == 0u) {
        lw_reg_write(SCB_CSSELR, 0u); /* level 1 data cache */
        lw_reg_barrier();
        const uint32_t ccsidr = lw_reg_read(SCB_CCSIDR);
        const uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
        const uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
        const uint32_t line_shift = (ccsidr & 7u) + 4u; /* log2(line bytes) */
        uint32_t way_shift = 32u; /* 32 - log2(ways), rounded up */
        for (uint32_t w = ways - 1u; w != 0u; w >>= 1) {
            --way_shift;
        }
        for (uint32_t s = 0; s < sets; ++s) {
            for (uint32_t w = 0; w < ways; ++w) {
                lw_reg_write(SCB_DCISW, (s << line_shift) | (way_shift < 32u ? w << way_shift : 0u));
            }
        }
        lw_reg_barrier();
        modify(SCB_CCR, 0u, CCR_DC);
        lw_reg_barrier();
    }
}
#endif

/* the setup; returns 0, or the LW_CLOCK_STEP_* that failed */
static uint32_t setup(void)
{
#if !LW_FAMILY_STM32F4
    modify(RCC_PWR_ENR, 0u, RCC_PWREN); /* the PWR registers need their bus clock */
    (void)lw_reg_read(RCC_PWR_ENR); /* read back: the enable has taken effect */
#endif
    if (!to_reset_clock()) {
        return LW_CLOCK_STEP_RESET_CLOCK;
    }
#if LW_FAMILY_STM32L4
    if ((lw_reg_read(PWR_CR1) & PWR_VOS_MASK) != PWR_VOS_RANGE1) { /* range 1 is the reset value */
        modify(PWR_CR1, PWR_VOS_MASK, PWR_VOS_RANGE1);
    }
    if (!wait_bits(PWR_SR2, PWR_VOSF, 0u)) {
        return LW_CLOCK_STEP_VOLTAGE;
    }
#elif LW_FAMILY_STM32F7
    if ((lw_reg_read(PWR_CR1) & PWR_VOS_MASK) != PWR_VOS_SCALE1) { /* writable while the PLL is off */
        modify(PWR_CR1, PWR_VOS_MASK, PWR_VOS_SCALE1);
        if ((lw_reg_read(PWR_CR1) & PWR_VOS_MASK) != PWR_VOS_SCALE1) {
            return LW_CLOCK_STEP_VOLTAGE;
        }
    }
#endif
    if ((lw_reg_read(RCC_CR) & CR_HSIRDY) == 0u) { /* HSI 16 MHz: the PLL's input */
        modify(RCC_CR, 0u, CR_HSION);
        if (!wait_bits(RCC_CR, CR_HSIRDY, CR_HSIRDY)) {
            return LW_CLOCK_STEP_HSI;
        }
    }

#if LW_FAMILY_STM32L4
#if LW_CLK_BOOST
    /* RM0432 5.1.8, Range 1 boost: 1. AHB /2, 2. R1MODE = 0, 3. wait states, 4. switch, 5. 1 us, AHB /1 */
    modify(RCC_CFGR, CFGR_HPRE, HPRE_CODE(2u) << 4);
    if (!wait_bits(RCC_CFGR, CFGR_HPRE, HPRE_CODE(2u) << 4)) {
        return LW_CLOCK_STEP_AHB_DIV2;
    }
    modify(PWR_CR5, PWR_R1MODE, 0u);
#endif
    if (!flash_for_target()) {
        return LW_CLOCK_STEP_FLASH;
    }
    modify(RCC_CFGR, CFGR_PPRE1 | CFGR_PPRE2, CFGR_BUSES);
    if ((lw_reg_read(RCC_CFGR) & (CFGR_PPRE1 | CFGR_PPRE2)) != CFGR_BUSES) {
        return LW_CLOCK_STEP_PRESCALERS;
    }
    (void)pll_on();
    if (!wait_bits(RCC_CR, CR_PLLRDY, CR_PLLRDY)) {
        return LW_CLOCK_STEP_PLL;
    }
    if (!switch_to_pll()) {
        return LW_CLOCK_STEP_SWITCH;
    }
#if LW_CLK_BOOST
    lw_reg_delay(2u * (LW_CLOCK_HZ / 1000000u)); /* 2 us at the full clock, 4 us at the halved one */
#endif
    modify(RCC_CFGR, CFGR_HPRE, HPRE_CODE(LW_CLK_AHB_DIV) << 4);
    if (!wait_bits(RCC_CFGR, CFGR_HPRE, HPRE_CODE(LW_CLK_AHB_DIV) << 4)) {
        return LW_CLOCK_STEP_AHB_DIV1;
    }

#elif LW_FAMILY_STM32F7
    /* RM0385 4.1.4, entering over-drive: PLL on, ODEN/ODRDY, ODSWEN/ODSWRDY, wait states and prescalers,
     * PLL lock, switch */
    (void)pll_on();
#if LW_CLK_OVERDRIVE
    modify(PWR_CR1, 0u, PWR_ODEN);
    if (!wait_bits(PWR_CSR1, PWR_ODRDY, PWR_ODRDY)) {
        return LW_CLOCK_STEP_OVERDRIVE;
    }
    modify(PWR_CR1, 0u, PWR_ODSWEN);
    if (!wait_bits(PWR_CSR1, PWR_ODSWRDY, PWR_ODSWRDY)) {
        return LW_CLOCK_STEP_OVERDRIVE_SWITCH;
    }
#endif
    if (!flash_for_target()) {
        return LW_CLOCK_STEP_FLASH;
    }
    modify(RCC_CFGR, CFGR_HPRE | CFGR_PPRE1 | CFGR_PPRE2, (HPRE_CODE(LW_CLK_AHB_DIV) << 4) | CFGR_BUSES);
    if ((lw_reg_read(RCC_CFGR) & (CFGR_HPRE | CFGR_PPRE1 | CFGR_PPRE2)) !=
        ((HPRE_CODE(LW_CLK_AHB_DIV) << 4) | CFGR_BUSES)) {
        return LW_CLOCK_STEP_PRESCALERS;
    }
    if (!wait_bits(RCC_CR, CR_PLLRDY, CR_PLLRDY)) {
        return LW_CLOCK_STEP_PLL;
    }
    if (!switch_to_pll()) {
        return LW_CLOCK_STEP_SWITCH;
    }

#else /* STM32F4: RM0368 3.4.1, increasing the CPU frequency */
    if (!flash_for_target()) {
        return LW_CLOCK_STEP_FLASH;
    }
    modify(RCC_CFGR, CFGR_HPRE | CFGR_PPRE1 | CFGR_PPRE2, (HPRE_CODE(LW_CLK_AHB_DIV) << 4) | CFGR_BUSES);
    if ((lw_reg_read(RCC_CFGR) & (CFGR_HPRE | CFGR_PPRE1 | CFGR_PPRE2)) !=
        ((HPRE_CODE(LW_CLK_AHB_DIV) << 4) | CFGR_BUSES)) {
        return LW_CLOCK_STEP_PRESCALERS;
    }
    (void)pll_on();
    if (!wait_bits(RCC_CR, CR_PLLRDY, CR_PLLRDY)) {
        return LW_CLOCK_STEP_PLL;
    }
    if (!switch_to_pll()) {
        return LW_CLOCK_STEP_SWITCH;
    }
#endif
    return 0u;
}
#endif /* LW_CLK_SETUP */

void lw_clock_setup(lw_clock_t *out)
{
    out->fallback = 0u;
    out->failed_step = 0u;
#if LW_CLK_SETUP
    const uint32_t step = setup();
    if (step != 0u) {
        (void)to_reset_clock();
        out->fallback = 1u;
        out->failed_step = step;
    }
#if LW_CLK_CPU_CACHES
    cpu_caches_on(); /* whatever the clock */
#endif
#else
    (void)to_reset_clock;
#endif
    lw_clock_measure(out);
}

#endif /* STM32 */
