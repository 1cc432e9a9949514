/*
 * clock_model.c - a register model of the STM32 RCC, PWR and FLASH interface (and the Cortex-M7
 * cache maintenance registers) to run lwcnn_mcu/firmware/clock_stm32.c on the host.
 *
 * The firmware's lw_reg_read / lw_reg_write land here (-DLW_REG_MODEL). The model keeps the
 * registers at their reset values, sets ready bits some accesses after their enable (time passes
 * one core clock cycle per access), and after every write checks what the reference manuals
 * require, printing "violation <rule> <what>" for each broken rule:
 *
 *   latency          HCLK above what the flash wait states allow (raise them before the clock,
 *                    lower them after): RM0368 Table 6, RM0432 Table 12, RM0385 Table 5
 *   voltage          HCLK above the voltage scale's limit (F401 scale 2: 84 MHz; L4+ range 1
 *                    normal 80, boost 120, range 2 26; F7 scale 1: 180, 216 with over-drive)
 *   apb              APB1/APB2 above their limit (F401 42/84, F7 54/108 (45/90 without
 *                    over-drive), L4+ 120/120)
 *   pll_not_ready    SYSCLK switched to the PLL before PLLRDY
 *   osc_not_ready    a source used (SYSCLK or PLL input) before its ready bit
 *   pll_range        PLL turned on with M, N, VCO input/output or output dividers out of range
 *   pllcfgr_while_on RCC_PLLCFGR written while the PLL is on
 *   reserved_bits    a reserved bit of RCC_PLLCFGR changed from its reset value
 *   pll_off_in_use   PLL turned off while it drives SYSCLK
 *   pwr_clock        a PWR register accessed while RCC_APB1ENR(1).PWREN is clear
 *   boost_range1     (L4+) boost mode (R1MODE = 0) while VOS is not range 1
 *   boost_ahb_div2   (L4+) R1MODE cleared while the AHB prescaler is /1 (RM0432 5.1.8 step 1)
 *   ahb_div2_step    (L4+) SYSCLK raised above 80 MHz with the AHB prescaler at /1
 *   boost_1us        (L4+) AHB prescaler back to /1 less than 1 us after that step
 *   vosf             (L4+) VOS changed again, or the clock raised, while VOSF is set
 *   vos_while_pll_on (F7) VOS written while the PLL is on
 *   od_order         (F7) ODEN set with the PLL off, ODSWEN set before ODRDY, ODEN cleared before
 *                    ODSWEN (RM0385 4.1.4)
 *   cache            (F7) I-cache enabled without ICIALLU, D-cache without invalidating every set and
 *                    way of the L1 data cache
 *   unmodelled       an access to a register the model does not know
 *
 * Usage: clock_model SCENARIO
 *   ok          the hardware does what it should
 *   no_hsirdy, no_pllrdy, no_vosf, no_odrdy, no_odswrdy, sws_stuck, acr_stuck
 *               that ready bit never comes / SWS never follows SW / FLASH_ACR ignores LATENCY
 *   qemu        every read gives 0 and writes are ignored (QEMU's unimplemented-device RCC)
 *   rules       wrong sequences written by hand, one per rule, each must be caught
 * Prints "key value" lines: the firmware's lw_clock_t, the model's clocks, the final registers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lw_clock.h"
#include "lw_proto_codes.h"

#define MHZ 1000000u

typedef struct {
    const char *name;
    uint32_t addr;
    uint32_t reset;
    uint32_t value;
} reg_t;

#if LW_FAMILY_STM32L4
enum { CR, CFGR, PLLCFGR, PWRENR, CCIPR, CSR, ACR, PWR1, PWRSR2, PWR5, NREGS };
static reg_t regs[NREGS] = {
    {"RCC_CR", 0x40021000u, 0x00000063u, 0},       /* MSION, MSIRDY, MSIRANGE 6 */
    {"RCC_CFGR", 0x40021008u, 0x00000000u, 0},
    {"RCC_PLLCFGR", 0x4002100Cu, 0x00001000u, 0},  /* PLLN 16 */
    {"RCC_APB1ENR1", 0x40021058u, 0x00000000u, 0},
    {"RCC_CCIPR", 0x40021088u, 0x00000000u, 0},
    {"RCC_CSR", 0x40021094u, 0x00000600u, 0},      /* MSISRANGE 6: 4 MHz */
    {"FLASH_ACR", 0x40022000u, 0x00000600u, 0},    /* ICEN, DCEN */
    {"PWR_CR1", 0x40007000u, 0x00000200u, 0},      /* VOS range 1 */
    {"PWR_SR2", 0x40007014u, 0x00000000u, 0},
    {"PWR_CR5", 0x40007080u, 0x00000100u, 0},      /* R1MODE: range 1 normal */
};
#define PWREN_REG PWRENR
#else
enum { CR, PLLCFGR, CFGR, PWRENR, ACR, PWR1, PWRCSR1,
#if LW_FAMILY_STM32F7
       DCKCFGR2, CCR, CCSIDR, CSSELR, ICIALLU, DCISW,
#endif
       NREGS };
static reg_t regs[NREGS] = {
    {"RCC_CR", 0x40023800u, 0x00000083u, 0},       /* HSION, HSIRDY, HSITRIM 16 */
    {"RCC_PLLCFGR", 0x40023804u, 0x24003010u, 0},
    {"RCC_CFGR", 0x40023808u, 0x00000000u, 0},
    {"RCC_APB1ENR", 0x40023840u, 0x00000000u, 0},
    {"FLASH_ACR", 0x40023C00u, 0x00000000u, 0},
#if LW_FAMILY_STM32F7
    {"PWR_CR1", 0x40007000u, 0x0000C000u, 0},      /* VOS scale 1 */
#else
    {"PWR_CR", 0x40007000u, 0x00008000u, 0},       /* STM32F401: VOS scale 2 */
#endif
    {"PWR_CSR1", 0x40007004u, 0x00000000u, 0},
#if LW_FAMILY_STM32F7
    {"RCC_DCKCFGR2", 0x40023890u, 0x00000000u, 0},
    {"SCB_CCR", 0xE000ED14u, 0x00000200u, 0},
    {"SCB_CCSIDR", 0xE000ED80u, 0xF003E019u, 0},   /* L1 D-cache: 4 KB, 4 ways, 32-byte lines, 32 sets */
    {"SCB_CSSELR", 0xE000ED84u, 0x00000000u, 0},
    {"SCB_ICIALLU", 0xE000EF50u, 0x00000000u, 0},
    {"SCB_DCISW", 0xE000EF60u, 0x00000000u, 0},
#endif
};
#define PWREN_REG PWRENR
#endif

#define V(r) (regs[r].value)

/* scenario */
static int no_hsirdy, no_pllrdy, no_vosf, no_odrdy, no_odswrdy, sws_stuck, acr_stuck, qemu, quiet;

/* model state */
static int violations;
static char fired[32][24];
static int n_fired;
static double now_ns, above80_ns;
static long hsi_wait, pll_wait, vosf_wait, od_wait, odsw_wait;
static uint32_t prev_sysclk;
#if LW_FAMILY_STM32F7
static int icache_invalidated;
static unsigned char dcache_line_done[32 * 4];
#endif

static void violation(const char *rule, const char *what, uint32_t value)
{
    ++violations;
    int known = 0;
    for (int i = 0; i < n_fired; ++i) {
        known |= strcmp(fired[i], rule) == 0;
    }
    if (!known && n_fired < 32) {
        strncpy(fired[n_fired], rule, sizeof fired[0] - 1u);
        fired[n_fired][sizeof fired[0] - 1u] = '\0';
        ++n_fired;
    }
    if (!quiet) {
        printf("violation %s %s (0x%08X)\n", rule, what, (unsigned)value);
    }
}

static int find(uint32_t addr)
{
    for (int i = 0; i < NREGS; ++i) {
        if (regs[i].addr == addr) {
            return i;
        }
    }
    return -1;
}

static void model_reset(void)
{
    for (int i = 0; i < NREGS; ++i) {
        regs[i].value = regs[i].reset;
    }
    violations = 0;
    n_fired = 0;
    now_ns = 0.0;
    above80_ns = -1.0;
    hsi_wait = pll_wait = vosf_wait = od_wait = odsw_wait = -1;
#if LW_FAMILY_STM32F7
    icache_invalidated = 0;
    memset(dcache_line_done, 0, sizeof dcache_line_done);
#endif
    prev_sysclk = 0;
}

/* ---- clocks, computed by the model from its registers (independently of the firmware's code) ---- */

static uint32_t ahb_div(uint32_t code)
{
    static const uint32_t d[16] = {1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 8, 16, 64, 128, 256, 512};
    return d[code & 15u];
}

static uint32_t apb_div(uint32_t code)
{
    static const uint32_t d[8] = {1, 1, 1, 1, 2, 4, 8, 16};
    return d[code & 7u];
}

#if LW_FAMILY_STM32L4
#define PPRE1_SH 8u
#define PPRE2_SH 11u
static uint32_t msi_hz(void)
{
    static const uint32_t khz[12] = {100, 200, 400, 800, 1000, 2000, 4000, 8000, 16000, 24000, 32000, 48000};
    const uint32_t range = (V(CR) & 8u) ? (V(CR) >> 4) & 15u : (V(CSR) >> 8) & 15u;
    return range < 12u ? khz[range] * 1000u : 0u;
}

static uint32_t pll_in_hz(void)
{
    const uint32_t src = V(PLLCFGR) & 3u;
    return src == 1u ? msi_hz() : src == 2u ? 16u * MHZ : 0u;
}

static uint32_t pll_m(void)
{
    return ((V(PLLCFGR) >> 4) & 15u) + 1u;
}

static uint32_t pll_n(void)
{
    return (V(PLLCFGR) >> 8) & 127u;
}

static uint32_t pll_out_hz(void) /* the R output, SYSCLK's */
{
    if (!(V(PLLCFGR) & (1u << 24))) {
        return 0u;
    }
    return (uint32_t)((double)pll_in_hz() / pll_m() * pll_n() / ((((V(PLLCFGR) >> 25) & 3u) + 1u) * 2u));
}

static uint32_t sysclk_hz(void)
{
    switch ((V(CFGR) >> 2) & 3u) {
    case 0:
        return msi_hz();
    case 1:
        return 16u * MHZ;
    case 3:
        return pll_out_hz();
    default:
        return 0u;
    }
}
#else
#define PPRE1_SH 10u
#define PPRE2_SH 13u
static uint32_t pll_in_hz(void)
{
    return (V(PLLCFGR) & (1u << 22)) ? 0u : 16u * MHZ;
}

static uint32_t pll_m(void)
{
    return V(PLLCFGR) & 63u;
}

static uint32_t pll_n(void)
{
    return (V(PLLCFGR) >> 6) & 511u;
}

static uint32_t pll_out_hz(void) /* the P output, SYSCLK's */
{
    if (pll_m() == 0u) {
        return 0u;
    }
    return (uint32_t)((double)pll_in_hz() / pll_m() * pll_n() / ((((V(PLLCFGR) >> 16) & 3u) + 1u) * 2u));
}

static uint32_t sysclk_hz(void)
{
    const uint32_t sws = (V(CFGR) >> 2) & 3u;
    return sws == 0u ? 16u * MHZ : sws == 2u ? pll_out_hz() : 0u;
}
#endif

static uint32_t hclk_hz(void)
{
    return sysclk_hz() / ahb_div((V(CFGR) >> 4) & 15u);
}

static uint32_t pclk1_hz(void)
{
    return hclk_hz() / apb_div((V(CFGR) >> PPRE1_SH) & 7u);
}

static uint32_t pclk2_hz(void)
{
    return hclk_hz() / apb_div((V(CFGR) >> PPRE2_SH) & 7u);
}

static uint32_t uart_hz(void)
{
#if LW_FAMILY_STM32L4 || LW_FAMILY_STM32F7
#if LW_FAMILY_STM32L4
    const uint32_t sel = (V(CCIPR) >> 10) & 3u;
#else
    const uint32_t sel = (V(DCKCFGR2) >> 4) & 3u;
#endif
    return sel == 0u ? pclk1_hz() : sel == 1u ? sysclk_hz() : sel == 2u ? 16u * MHZ : 32768u;
#else
    return pclk1_hz();
#endif
}

/* ---- the manuals' limits ---- */

#if LW_FAMILY_STM32L4
static int boost(void)
{
    return (V(PWR5) & (1u << 8)) == 0u;
}

static uint32_t vos(void)
{
    return (V(PWR1) >> 9) & 3u; /* 1: range 1, 2: range 2 */
}

static uint32_t max_hclk(void)
{
    return vos() == 2u ? 26u * MHZ : boost() ? 120u * MHZ : 80u * MHZ;
}

static uint32_t ws_needed(uint32_t hz) /* RM0432 Table 12 */
{
    const uint32_t step = vos() == 2u ? 8u * MHZ : 20u * MHZ;
    if (vos() == 2u && hz > 16u * MHZ) {
        return 2u;
    }
    return hz == 0u ? 0u : (hz - 1u) / step;
}

static uint32_t max_apb1(void)
{
    return max_hclk();
}

static uint32_t max_apb2(void)
{
    return max_hclk();
}
#elif LW_FAMILY_STM32F7
static int overdrive(void)
{
    return (V(PWRCSR1) & (1u << 17)) != 0u; /* ODSWRDY: the regulator is in over-drive */
}

static uint32_t max_hclk(void)
{
    const uint32_t v = (V(PWR1) >> 14) & 3u; /* 3: scale 1, 2: scale 2, 1: scale 3 */
    const uint32_t base = v == 3u ? 180u : v == 2u ? 168u : 144u;
    const uint32_t od = v == 3u ? 216u : v == 2u ? 180u : 144u;
    return (overdrive() ? od : base) * MHZ;
}

static uint32_t ws_needed(uint32_t hz) /* RM0385 Table 5, 2.7-3.6 V: 30 MHz per wait state up to 210, 7 to 216 */
{
    return hz == 0u ? 0u : (hz - 1u) / (30u * MHZ);
}

static uint32_t max_apb1(void)
{
    return (overdrive() ? 54u : 45u) * MHZ;
}

static uint32_t max_apb2(void)
{
    return (overdrive() ? 108u : 90u) * MHZ;
}
#else
static uint32_t max_hclk(void) /* STM32F401: VOS 10 scale 2 (84 MHz), 01 scale 3 (60 MHz) */
{
    return ((V(PWR1) >> 14) & 3u) == 1u ? 60u * MHZ : 84u * MHZ;
}

static uint32_t ws_needed(uint32_t hz) /* RM0368 Table 6, 2.7-3.6 V */
{
    return hz <= 30u * MHZ ? 0u : hz <= 64u * MHZ ? 1u : 2u;
}

static uint32_t max_apb1(void)
{
    return 42u * MHZ;
}

static uint32_t max_apb2(void)
{
    return 84u * MHZ;
}
#endif

static int pll_config_ok(void)
{
    const double in = (double)pll_in_hz() / (pll_m() ? pll_m() : 1u);
    const double vco = in * pll_n();
    const uint32_t out = pll_out_hz();
#if LW_FAMILY_STM32L4 /* RM0432 RCC_PLLCFGR: VCO input 2.66-16 MHz, VCO 64-344 MHz, N 8-127, R output <= 120 MHz */
    return in >= 2.66e6 && in <= 16e6 && vco >= 64e6 && vco <= 344e6 && pll_n() >= 8u && out <= 120u * MHZ;
#elif LW_FAMILY_STM32F7 /* RM0385 RCC_PLLCFGR: M 2-63, VCO input 1-2 MHz, N 50-432, VCO 100-432 MHz, P <= 216 MHz,
                         * Q 2-15 with Q <= 48 MHz */
    const uint32_t q = (V(PLLCFGR) >> 24) & 15u;
    return pll_m() >= 2u && in >= 1e6 && in <= 2e6 && pll_n() >= 50u && pll_n() <= 432u && vco >= 100e6
           && vco <= 432e6 && out <= 216u * MHZ && q >= 2u && vco / q <= 48e6 + 1.0;
#else /* RM0368 RCC_PLLCFGR: M 2-63, VCO input 1-2 MHz, N 192-432, VCO 192-432 MHz, P <= 84 MHz, Q 2-15,
       * Q <= 48 MHz */
    const uint32_t q = (V(PLLCFGR) >> 24) & 15u;
    return pll_m() >= 2u && in >= 1e6 && in <= 2e6 && pll_n() >= 192u && pll_n() <= 432u && vco >= 192e6
           && vco <= 432e6 && out <= 84u * MHZ && q >= 2u && vco / q <= 48e6 + 1.0;
#endif
}

static void check_limits(void)
{
    const uint32_t sys = sysclk_hz(), hclk = hclk_hz();
    if ((V(ACR) & 15u) < ws_needed(hclk)) {
        violation("latency", "HCLK above what the flash wait states allow", hclk);
    }
    if (hclk > max_hclk()) {
        violation("voltage", "HCLK above the voltage scale's maximum", hclk);
    }
    if (pclk1_hz() > max_apb1() || pclk2_hz() > max_apb2()) {
        violation("apb", "an APB clock above its maximum", pclk1_hz());
    }
#if LW_FAMILY_STM32L4
    if (prev_sysclk <= 80u * MHZ && sys > 80u * MHZ) {
        if (ahb_div((V(CFGR) >> 4) & 15u) < 2u) {
            violation("ahb_div2_step", "SYSCLK raised above 80 MHz with AHB /1", sys);
        }
        above80_ns = now_ns;
    }
    if ((V(PWR5) & (1u << 8)) == 0u && vos() != 1u) {
        violation("boost_range1", "boost mode while VOS is not range 1", V(PWR1));
    }
    if (V(PWRSR2) & (1u << 10) && hclk > 26u * MHZ) {
        violation("vosf", "clock raised while the regulator is still changing (VOSF)", hclk);
    }
#endif
    prev_sysclk = sys;
}

/* ---- time: one core clock cycle per access; ready bits come after a few hundred cycles ---- */

static void advance(double cycles)
{
    const uint32_t h = hclk_hz();
    now_ns += cycles * 1e9 / (h ? h : 16u * MHZ);
    const long n = (long)cycles;
    if (hsi_wait > 0 && (hsi_wait -= n) <= 0 && !no_hsirdy) {
        V(CR) |= LW_FAMILY_STM32L4 ? (1u << 10) : (1u << 1);
    }
    if (pll_wait > 0 && (pll_wait -= n) <= 0 && !no_pllrdy) {
        V(CR) |= 1u << 25;
    }
#if LW_FAMILY_STM32L4
    if (vosf_wait > 0 && (vosf_wait -= n) <= 0 && !no_vosf) {
        V(PWRSR2) &= ~(1u << 10);
    }
#endif
#if LW_FAMILY_STM32F7
    if (od_wait > 0 && (od_wait -= n) <= 0 && !no_odrdy) {
        V(PWRCSR1) |= 1u << 16;
    }
    if (odsw_wait > 0 && (odsw_wait -= n) <= 0 && !no_odswrdy) {
        V(PWRCSR1) |= 1u << 17;
    }
#endif
}

static int pwr_clocked(void)
{
    return (V(PWREN_REG) & (1u << 28)) != 0u;
}

static int is_pwr(int r)
{
#if LW_FAMILY_STM32L4
    return r == PWR1 || r == PWRSR2 || r == PWR5;
#else
    return r == PWR1 || r == PWRCSR1;
#endif
}

uint32_t lw_reg_read(uint32_t addr)
{
    advance(1.0);
    if (qemu) {
        return 0u;
    }
    const int r = find(addr);
    if (r < 0) {
        violation("unmodelled", "read of a register the model does not know", addr);
        return 0u;
    }
    if (is_pwr(r) && !pwr_clocked()) {
        violation("pwr_clock", "PWR read without its bus clock (PWREN)", addr);
        return 0u;
    }
    return regs[r].value;
}

static void write_cr(uint32_t old, uint32_t v)
{
#if LW_FAMILY_STM32L4
    const uint32_t ro = (1u << 1) | (1u << 10) | (1u << 25); /* MSIRDY, HSIRDY, PLLRDY */
    const uint32_t hsion = 1u << 8;
#else
    const uint32_t ro = (1u << 1) | (1u << 17) | (1u << 25); /* HSIRDY, HSERDY, PLLRDY */
    const uint32_t hsion = 1u << 0;
#endif
    V(CR) = (v & ~ro) | (old & ro);
    if ((v & hsion) && !(old & hsion)) {
        hsi_wait = 200;
    }
    if ((v & (1u << 24)) && !(old & (1u << 24))) { /* PLLON */
        if (!pll_config_ok()) {
            violation("pll_range", "PLL turned on with M, N, VCO or output out of range", V(PLLCFGR));
        }
#if LW_FAMILY_STM32L4
        const int src_ready = (V(PLLCFGR) & 3u) == 2u ? (old & (1u << 10)) != 0u : (V(PLLCFGR) & 3u) == 1u;
#else
        const int src_ready = (old & (1u << 1)) != 0u;
#endif
        if (!src_ready) {
            violation("osc_not_ready", "PLL turned on before its input oscillator is ready", V(CR));
        }
        pll_wait = 400;
    }
    if (!(v & (1u << 24)) && (old & (1u << 24))) {
#if LW_FAMILY_STM32L4
        const uint32_t sws_pll = 3u;
#else
        const uint32_t sws_pll = 2u;
#endif
        if (((V(CFGR) >> 2) & 3u) == sws_pll) {
            violation("pll_off_in_use", "PLL turned off while it drives SYSCLK", V(CR));
        }
        V(CR) &= ~(1u << 25);
        pll_wait = -1;
    }
}

static void write_cfgr(uint32_t old, uint32_t v)
{
    V(CFGR) = (v & ~(3u << 2)) | (old & (3u << 2)); /* SWS is the hardware's: it follows SW below */
    const uint32_t sw = v & 3u;
    if (sw != ((old >> 2) & 3u)) { /* a switch to another source */
#if LW_FAMILY_STM32L4
        const int ready = sw == 0u ? (V(CR) & 2u) != 0u : sw == 1u ? (V(CR) & (1u << 10)) != 0u
                          : sw == 3u ? (V(CR) & (1u << 25)) != 0u : 0;
        const uint32_t pll = 3u;
#else
        const int ready = sw == 0u ? (V(CR) & 2u) != 0u : sw == 2u ? (V(CR) & (1u << 25)) != 0u : 0;
        const uint32_t pll = 2u;
#endif
        if (!ready) {
            violation(sw == pll ? "pll_not_ready" : "osc_not_ready", "SYSCLK switched to a source that is not ready",
                      V(CR));
        } else if (!sws_stuck) {
            V(CFGR) = (V(CFGR) & ~(3u << 2)) | (sw << 2);
        }
    }
#if LW_FAMILY_STM32L4
    /* RM0432 5.1.8 step 5: the AHB prescaler goes back to /1 at least 1 us after the step above 80 MHz */
    if (ahb_div((old >> 4) & 15u) > 1u && ahb_div((v >> 4) & 15u) == 1u && sysclk_hz() > 80u * MHZ
        && (above80_ns < 0.0 || now_ns - above80_ns < 1000.0)) {
        violation("boost_1us", "AHB back to /1 less than 1 us after SYSCLK went above 80 MHz", v);
    }
#endif
}

static void write_pwr(int r, uint32_t old, uint32_t v)
{
#if LW_FAMILY_STM32L4
    if (r == PWRSR2) {
        return; /* read-only */
    }
    regs[r].value = v;
    if (r == PWR1 && ((v ^ old) & (3u << 9))) {
        if (V(PWRSR2) & (1u << 10)) {
            violation("vosf", "VOS changed while VOSF is set", v);
        }
        V(PWRSR2) |= 1u << 10;
        vosf_wait = 300;
    }
    if (r == PWR5 && (old & (1u << 8)) && !(v & (1u << 8))) { /* entering boost */
        if (vos() != 1u) {
            violation("boost_range1", "R1MODE cleared while VOS is not range 1", V(PWR1));
        }
        if (ahb_div((V(CFGR) >> 4) & 15u) < 2u) {
            violation("boost_ahb_div2", "R1MODE cleared with the AHB prescaler at /1 (RM0432 5.1.8 step 1)", V(CFGR));
        }
    }
#elif LW_FAMILY_STM32F7
    if (r == PWRCSR1) {
        return; /* status flags: read-only here */
    }
    regs[r].value = v;
    const uint32_t oden = 1u << 16, odswen = 1u << 17;
    if (((v ^ old) & (3u << 14)) && (V(CR) & (1u << 24))) {
        violation("vos_while_pll_on", "VOS written while the PLL is on", v);
    }
    if ((v & oden) && !(old & oden)) {
        if (!(V(CR) & (1u << 24))) {
            violation("od_order", "ODEN set with the PLL off (RM0385 4.1.4 step 2 before 3)", V(CR));
        }
        od_wait = 300;
    }
    if ((v & odswen) && !(old & odswen)) {
        if (!(V(PWRCSR1) & oden)) {
            violation("od_order", "ODSWEN set before ODRDY", V(PWRCSR1));
        }
        odsw_wait = 300;
    }
    if (!(v & odswen) && (old & odswen)) {
        V(PWRCSR1) &= ~(1u << 17);
        odsw_wait = -1;
    }
    if (!(v & oden) && (old & oden)) {
        if (v & odswen) {
            violation("od_order", "ODEN cleared while ODSWEN is set", v);
        }
        V(PWRCSR1) &= ~(1u << 16);
        od_wait = -1;
    }
#else
    (void)old;
    if (r == PWRCSR1) {
        return;
    }
    regs[r].value = v;
#endif
}

#if LW_FAMILY_STM32F7
static void write_scb(int r, uint32_t old, uint32_t v)
{
    if (r == CCSIDR) {
        return; /* read-only */
    }
    regs[r].value = v;
    if (r == ICIALLU) {
        icache_invalidated = 1;
    } else if (r == DCISW) {
        const uint32_t set = (v >> 5) & 31u, way = v >> 30;
        if (V(CSSELR) == 0u) {
            dcache_line_done[set * 4u + way] = 1;
        }
    } else if (r == CCR) {
        if ((v & (1u << 17)) && !(old & (1u << 17)) && !icache_invalidated) {
            violation("cache", "I-cache enabled without ICIALLU", v);
        }
        if ((v & (1u << 16)) && !(old & (1u << 16))) {
            for (unsigned i = 0; i < sizeof dcache_line_done; ++i) {
                if (!dcache_line_done[i]) {
                    violation("cache", "D-cache enabled before every set and way was invalidated", i);
                    break;
                }
            }
        }
    }
}
#endif

void lw_reg_write(uint32_t addr, uint32_t value)
{
    advance(1.0);
    if (qemu) {
        return;
    }
    const int r = find(addr);
    if (r < 0) {
        violation("unmodelled", "write to a register the model does not know", addr);
        return;
    }
    if (is_pwr(r) && !pwr_clocked()) {
        violation("pwr_clock", "PWR written without its bus clock (PWREN)", addr);
        return;
    }
    const uint32_t old = regs[r].value;
    if (r == CR) {
        write_cr(old, value);
    } else if (r == CFGR) {
        write_cfgr(old, value);
    } else if (r == PLLCFGR) {
        if (V(CR) & (1u << 24)) {
            violation("pllcfgr_while_on", "RCC_PLLCFGR written while the PLL is on", value);
        }
#if LW_FAMILY_STM32L4
        const uint32_t reserved = ~0xFF737FF3u;
#else
        const uint32_t reserved = ~0x0F437FFFu;
#endif
        if ((value ^ regs[r].reset) & reserved) {
            violation("reserved_bits", "a reserved bit of RCC_PLLCFGR changed", value);
        }
        V(PLLCFGR) = value;
    } else if (r == ACR) {
        V(ACR) = acr_stuck ? (value & ~15u) | (old & 15u) : value;
    } else if (is_pwr(r)) {
        write_pwr(r, old, value);
#if LW_FAMILY_STM32F7
    } else if (r >= CCR) {
        write_scb(r, old, value);
#endif
    } else {
        regs[r].value = value;
    }
    check_limits();
}

static int barriers;

void lw_reg_barrier(void)
{
    ++barriers;
}

void lw_reg_delay(uint32_t cycles)
{
    advance((double)cycles);
}

/* ---- wrong sequences, one per rule: each must be caught ---- */

static uint32_t good_pllcfgr(void)
{
#if LW_FAMILY_STM32L4
    return (regs[PLLCFGR].reset & ~0xFF737FF3u) | (1u << 24) | (0u << 25) | (60u << 8) | (3u << 4) | 2u;
#elif LW_FAMILY_STM32F7
    return (regs[PLLCFGR].reset & ~0x0F437FFFu) | (9u << 24) | (0u << 16) | (216u << 6) | 8u;
#else
    return (regs[PLLCFGR].reset & ~0x0F437FFFu) | (7u << 24) | (1u << 16) | (336u << 6) | 16u;
#endif
}

#if LW_FAMILY_STM32L4
#define SW_PLL_CODE 3u
#else
#define SW_PLL_CODE 2u
#endif

static void spin(int n)
{
    for (int i = 0; i < n; ++i) {
        (void)lw_reg_read(regs[CR].addr);
    }
}

static void hsi_on(void)
{
#if LW_FAMILY_STM32L4
    lw_reg_write(regs[CR].addr, V(CR) | (1u << 8));
    spin(300);
#endif
}

static void pwr_on(void)
{
    lw_reg_write(regs[PWREN_REG].addr, V(PWREN_REG) | (1u << 28));
}

static void pll_locked(void)
{
    hsi_on();
    lw_reg_write(regs[PLLCFGR].addr, good_pllcfgr());
    lw_reg_write(regs[CR].addr, V(CR) | (1u << 24));
    spin(500);
}

static void bad_switch_before_pllrdy(void)
{
    hsi_on();
    lw_reg_write(regs[PLLCFGR].addr, good_pllcfgr());
    lw_reg_write(regs[CR].addr, V(CR) | (1u << 24));
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | SW_PLL_CODE);
}

static void bad_clock_before_wait_states(void)
{
    pll_locked();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | SW_PLL_CODE);
}

static void bad_pllcfgr_while_on(void)
{
    pll_locked();
    lw_reg_write(regs[PLLCFGR].addr, good_pllcfgr());
}

static void bad_pll_range(void)
{
    hsi_on();
#if LW_FAMILY_STM32L4
    lw_reg_write(regs[PLLCFGR].addr, (good_pllcfgr() & ~(127u << 8)) | (100u << 8)); /* VCO 400 MHz */
#else
    lw_reg_write(regs[PLLCFGR].addr, (good_pllcfgr() & ~(511u << 6)) | (40u << 6)); /* N below 50 (F7), 192 (F4) */
#endif
    lw_reg_write(regs[CR].addr, V(CR) | (1u << 24));
}

static void bad_pll_off_in_use(void)
{
    pwr_on();
#if LW_FAMILY_STM32L4
    lw_reg_write(regs[PLLCFGR].addr, (good_pllcfgr() & ~(3u << 25)) | (3u << 25)); /* /8: 30 MHz */
    lw_reg_write(regs[ACR].addr, V(ACR) | 4u);
    hsi_on();
#else
    lw_reg_write(regs[PLLCFGR].addr, (good_pllcfgr() & ~(3u << 16)) | (3u << 16)); /* /8 */
    lw_reg_write(regs[ACR].addr, V(ACR) | 7u);
#endif
    lw_reg_write(regs[CR].addr, V(CR) | (1u << 24));
    spin(500);
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | SW_PLL_CODE);
    lw_reg_write(regs[CR].addr, V(CR) & ~(1u << 24));
}

static void bad_switch_to_hse(void) /* no HSE is turned on: not ready */
{
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | (LW_FAMILY_STM32L4 ? 2u : 1u));
}

static void bad_pwr_clock(void)
{
    lw_reg_write(regs[PWR1].addr, V(PWR1));
}

#if !LW_FAMILY_STM32L4
static void bad_reserved_bits(void)
{
    lw_reg_write(regs[PLLCFGR].addr, good_pllcfgr() & ~(1u << 29));
}
#endif

#if LW_FAMILY_STM32L4
static void bad_boost_without_div2(void)
{
    pwr_on();
    lw_reg_write(regs[PWR5].addr, V(PWR5) & ~(1u << 8));
}

static void bad_boost_in_range2(void)
{
    pwr_on();
    lw_reg_write(regs[PWR1].addr, (V(PWR1) & ~(3u << 9)) | (2u << 9));
    spin(400);
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~(15u << 4)) | (8u << 4));
    lw_reg_write(regs[PWR5].addr, V(PWR5) & ~(1u << 8));
}

static void bad_step_above_80_at_div1(void)
{
    pwr_on();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~(15u << 4)) | (8u << 4));
    lw_reg_write(regs[PWR5].addr, V(PWR5) & ~(1u << 8));
    lw_reg_write(regs[ACR].addr, (V(ACR) & ~15u) | 5u);
    lw_reg_write(regs[CFGR].addr, V(CFGR) & ~(15u << 4));
    pll_locked();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | 3u);
}

static void bad_no_1us(void)
{
    pwr_on();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~(15u << 4)) | (8u << 4));
    lw_reg_write(regs[PWR5].addr, V(PWR5) & ~(1u << 8));
    lw_reg_write(regs[ACR].addr, (V(ACR) & ~15u) | 5u);
    pll_locked();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | 3u);
    lw_reg_write(regs[CFGR].addr, V(CFGR) & ~(15u << 4));
}

static void bad_120_without_boost(void)
{
    pwr_on();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~(15u << 4)) | (8u << 4));
    lw_reg_write(regs[ACR].addr, (V(ACR) & ~15u) | 5u);
    pll_locked();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | 3u);
    spin(200);
    lw_reg_write(regs[CFGR].addr, V(CFGR) & ~(15u << 4));
}
#endif

#if LW_FAMILY_STM32F7
static void bad_oden_pll_off(void)
{
    pwr_on();
    lw_reg_write(regs[PWR1].addr, V(PWR1) | (1u << 16));
}

static void bad_odswen_before_odrdy(void)
{
    pwr_on();
    pll_locked();
    lw_reg_write(regs[PWR1].addr, V(PWR1) | (1u << 16));
    lw_reg_write(regs[PWR1].addr, V(PWR1) | (1u << 17));
}

static void bad_216_without_overdrive(void)
{
    pwr_on();
    lw_reg_write(regs[ACR].addr, (V(ACR) & ~15u) | 7u);
    lw_reg_write(regs[CFGR].addr, V(CFGR) | (5u << 10) | (4u << 13));
    pll_locked();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | 2u);
}

static void bad_vos_while_pll_on(void)
{
    pwr_on();
    pll_locked();
    lw_reg_write(regs[PWR1].addr, (V(PWR1) & ~(3u << 14)) | (2u << 14));
}

static void bad_apb_over(void)
{
    pwr_on();
    lw_reg_write(regs[PWR1].addr, V(PWR1));
    lw_reg_write(regs[ACR].addr, (V(ACR) & ~15u) | 7u);
    pll_locked();
    lw_reg_write(regs[PWR1].addr, V(PWR1) | (1u << 16));
    spin(400);
    lw_reg_write(regs[PWR1].addr, V(PWR1) | (1u << 17));
    spin(400);
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | 2u); /* APB1 216 MHz */
}

static void bad_dcache_without_invalidate(void)
{
    lw_reg_write(regs[CCR].addr, V(CCR) | (1u << 16));
}

static void bad_icache_without_invalidate(void)
{
    lw_reg_write(regs[CCR].addr, V(CCR) | (1u << 17));
}
#endif

#if LW_FAMILY_STM32F4
static void bad_apb_over(void)
{
    lw_reg_write(regs[ACR].addr, (V(ACR) & ~15u) | 2u);
    pll_locked();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | 2u); /* APB1 84 MHz */
}

static void bad_over_scale3(void)
{
    pwr_on();
    lw_reg_write(regs[PWR1].addr, (V(PWR1) & ~(3u << 14)) | (1u << 14)); /* scale 3: 60 MHz */
    lw_reg_write(regs[ACR].addr, (V(ACR) & ~15u) | 2u);
    lw_reg_write(regs[CFGR].addr, V(CFGR) | (4u << 10));
    pll_locked();
    lw_reg_write(regs[CFGR].addr, (V(CFGR) & ~3u) | 2u);
}
#endif

static void rule(const char *label, const char *name, void (*bad)(void))
{
    model_reset();
    quiet = 1;
    bad();
    quiet = 0;
    int hit = 0;
    for (int i = 0; i < n_fired; ++i) {
        hit |= strcmp(fired[i], name) == 0;
    }
    printf("rule %s %s %s\n", label, name, hit ? "caught" : "MISSED");
}

static void rules(void)
{
    rule("switch_before_pllrdy", "pll_not_ready", bad_switch_before_pllrdy);
    rule("clock_before_wait_states", "latency", bad_clock_before_wait_states);
    rule("pllcfgr_while_on", "pllcfgr_while_on", bad_pllcfgr_while_on);
    rule("pll_range", "pll_range", bad_pll_range);
    rule("pll_off_in_use", "pll_off_in_use", bad_pll_off_in_use);
    rule("pwr_clock", "pwr_clock", bad_pwr_clock);
    rule("switch_to_hse", "osc_not_ready", bad_switch_to_hse);
#if LW_FAMILY_STM32L4
    rule("boost_without_div2", "boost_ahb_div2", bad_boost_without_div2);
    rule("boost_in_range2", "boost_range1", bad_boost_in_range2);
    rule("step_above_80_at_div1", "ahb_div2_step", bad_step_above_80_at_div1);
    rule("no_1us", "boost_1us", bad_no_1us);
    rule("120_without_boost", "voltage", bad_120_without_boost);
#else
    rule("reserved_bits", "reserved_bits", bad_reserved_bits);
    rule("apb_over", "apb", bad_apb_over);
#endif
#if LW_FAMILY_STM32F7
    rule("oden_pll_off", "od_order", bad_oden_pll_off);
    rule("odswen_before_odrdy", "od_order", bad_odswen_before_odrdy);
    rule("216_without_overdrive", "voltage", bad_216_without_overdrive);
    rule("vos_while_pll_on", "vos_while_pll_on", bad_vos_while_pll_on);
    rule("dcache_without_invalidate", "cache", bad_dcache_without_invalidate);
    rule("icache_without_invalidate", "cache", bad_icache_without_invalidate);
#endif
#if LW_FAMILY_STM32F4
    rule("over_scale3", "voltage", bad_over_scale3);
#endif
}

int main(int argc, char **argv)
{
    const char *s = argc > 1 ? argv[1] : "ok";
    no_hsirdy = strcmp(s, "no_hsirdy") == 0;
    no_pllrdy = strcmp(s, "no_pllrdy") == 0;
    no_vosf = strcmp(s, "no_vosf") == 0;
    no_odrdy = strcmp(s, "no_odrdy") == 0;
    no_odswrdy = strcmp(s, "no_odswrdy") == 0;
    sws_stuck = strcmp(s, "sws_stuck") == 0;
    acr_stuck = strcmp(s, "acr_stuck") == 0;
    qemu = strcmp(s, "qemu") == 0;
    if (strcmp(s, "rules") == 0) {
        rules();
        return 0;
    }
    model_reset();
#if LW_FAMILY_STM32L4
    if (no_hsirdy) { /* an HSI that is not ready out of reset either */
        V(CR) &= ~(1u << 10);
    }
#else
    if (no_hsirdy) {
        V(CR) &= ~(1u << 1);
    }
#endif
    if (no_vosf) { /* a regulator that never settles */
#if LW_FAMILY_STM32L4
        V(PWRSR2) |= 1u << 10;
#endif
    }
    lw_clock_t clk;
    memset(&clk, 0xA5, sizeof clk);
    lw_clock_setup(&clk);
    printf("fw_core_hz %u\nfw_uart_hz %u\nfw_fallback %u\nfw_failed_step %u\n", (unsigned)clk.core_hz,
           (unsigned)clk.uart_hz, (unsigned)clk.fallback, (unsigned)clk.failed_step);
    if (!qemu) {
        printf("model_sysclk_hz %u\nmodel_hclk_hz %u\nmodel_pclk1_hz %u\nmodel_pclk2_hz %u\nmodel_uart_hz %u\n",
               (unsigned)sysclk_hz(), (unsigned)hclk_hz(), (unsigned)pclk1_hz(), (unsigned)pclk2_hz(),
               (unsigned)uart_hz());
        for (int i = 0; i < NREGS; ++i) {
            printf("reg %s 0x%08X\n", regs[i].name, (unsigned)regs[i].value);
        }
    }
    printf("barriers %d\nelapsed_us %.1f\nviolations %d\n", barriers, now_ns / 1000.0, violations);
    return 0;
}
