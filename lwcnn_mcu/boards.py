"""The boards registry: every board fact in one place. Linker scripts, the firmware's board header
(clock tree, UART registers, memory), ``platformio.ini`` environments, the emulator's command line
and counter rate, the flashing tools' targets, ``lwcnn-mcu boards``, the README's boards table and
``docs/boards.md`` are all built from it.

Clock settings (:class:`ClockSetup`) carry the reference-manual section each value comes from. The
firmware's clock code (``lwcnn_mcu/firmware/clock_stm32.c``) programs exactly these values and reports the
clock it reads back from the RCC registers; ``tests/test_clock.py`` runs that C against a register
model that enforces the manuals' ordering rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lwcnn_mcu.errors import LwcnnError


@dataclass(frozen=True)
class ClockSetup:
    """The clock tree the firmware programs at boot (register-level, no HAL).

    ``pll_sys_div`` is the divider from the VCO to SYSCLK: PLLP on STM32F4/F7, PLLR on STM32L4.
    ``pll_q`` is the 48 MHz-domain divider (F4/F7; ``None`` leaves it at its reset value with the
    output disabled, as on the L4+ where nothing uses it). ``flash_cache`` is the flash interface's
    instruction and data caches (ICEN, DCEN on F4/L4) or the ART accelerator (ARTEN on F7);
    ``cpu_caches`` the Cortex-M7's own L1 instruction and data caches.
    """

    manual: str
    pll_source: str
    pll_source_hz: int
    pll_m: int
    pll_n: int
    pll_sys_div: int
    pll_q: int | None
    ahb_div: int
    apb1_div: int
    apb2_div: int
    flash_latency: int
    prefetch: bool
    flash_cache: bool
    voltage: str
    boost: bool = False  # STM32L4+: Range 1 boost mode (PWR_CR5.R1MODE = 0)
    overdrive: bool = False  # STM32F7: over-drive (PWR_CR1.ODEN, ODSWEN)
    cpu_caches: bool = False  # Cortex-M7 L1 I- and D-cache
    sources: tuple[tuple[str, str], ...] = ()  # (setting, where in the manual it comes from)

    @property
    def vco_in_hz(self) -> int:
        return self.pll_source_hz // self.pll_m

    @property
    def vco_hz(self) -> int:
        return self.vco_in_hz * self.pll_n

    @property
    def sysclk_hz(self) -> int:
        return self.vco_hz // self.pll_sys_div

    @property
    def hclk_hz(self) -> int:
        return self.sysclk_hz // self.ahb_div

    @property
    def pclk1_hz(self) -> int:
        return self.hclk_hz // self.apb1_div

    @property
    def pclk2_hz(self) -> int:
        return self.hclk_hz // self.apb2_div

    @property
    def pll_q_hz(self) -> int | None:
        return None if self.pll_q is None else self.vco_hz // self.pll_q

    def summary(self) -> str:
        mhz = lambda hz: f"{hz / 1e6:g} MHz"  # noqa: E731
        div = "R" if self.pll_q is None else "P"
        parts = [f"PLL from {self.pll_source} {mhz(self.pll_source_hz)}: /M={self.pll_m} ({mhz(self.vco_in_hz)}) "
                 f"xN={self.pll_n} (VCO {mhz(self.vco_hz)}) /{div}={self.pll_sys_div} -> {mhz(self.sysclk_hz)}"
                 + (f", /Q={self.pll_q} -> {mhz(self.pll_q_hz or 0)}" if self.pll_q else ""),
                 f"AHB /{self.ahb_div}, APB1 /{self.apb1_div} ({mhz(self.pclk1_hz)}), "
                 f"APB2 /{self.apb2_div} ({mhz(self.pclk2_hz)})",
                 f"{self.voltage}",
                 f"{self.flash_latency} flash wait states"
                 + (", prefetch" if self.prefetch else "")
                 + ((", ART accelerator" if self.cpu_caches else ", flash I/D caches") if self.flash_cache else "")
                 + (", Cortex-M7 L1 I/D caches" if self.cpu_caches else "")]
        return "; ".join(parts)


#: QEMU machines: the rate the firmware's SysTick counter runs at under QEMU (the core clock QEMU
#: models, whatever the firmware programs: QEMU 7.2 models no STM32 RCC). With ``-icount shift=0``
#: one instruction is 1 ns, so instructions = ticks x 1e9 / this rate.
QEMU_COUNTER_HZ = {"mps2-an386": 25_000_000, "netduinoplus2": 168_000_000}


@dataclass(frozen=True)
class Board:
    name: str
    mcu: str
    core: str  # cortex-m4 | cortex-m7
    family: str  # firmware driver: stm32f4 | stm32l4 | stm32f7 | mps2
    clock_hz: int  # the core clock (HCLK) the board is rated for and the firmware sets up
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    fpu: str | None  # -mfpu, or None for soft float
    reset_clock_hz: int  # the core clock out of reset (what the firmware falls back to)
    reset_clock: str  # its oscillator, for people
    clock: ClockSetup | None = None  # None: the firmware leaves the reset clock alone
    uart: dict[str, int] = field(default_factory=dict)  # register-level UART description
    uart_name: str = ""
    qemu_machine: str | None = None  # machine that runs this image
    qemu_serial_index: int = 0  # which of QEMU's -serial ports is the host link
    runs_here: bool = False  # an emulator runs it on this machine
    pio_board: str | None = None
    openocd_target: str | None = None  # OpenOCD target script (target/<name>)
    counter: str = "dwt"  # dwt (cycles) | icount (QEMU instructions via SysTick)
    note: str = ""
    stack_bytes: int = 4096
    #: a data RAM beside the main one (CCM on an STM32F405, the MPS2 board's 16 MB PSRAM): (name, origin,
    #: bytes); `build --arena NAME` places the firmware's arena there
    extra_ram: tuple[str, int, int] | None = None

    def __post_init__(self) -> None:
        if self.clock is not None and self.clock.hclk_hz != self.clock_hz:
            raise ValueError(f"{self.name}: its clock setup gives {self.clock.hclk_hz} Hz, registered {self.clock_hz}")
        if self.clock is None and self.clock_hz != self.reset_clock_hz:
            raise ValueError(f"{self.name}: no clock setup, so it runs at its reset clock {self.reset_clock_hz} Hz")

    @property
    def cpu_flags(self) -> list[str]:
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.fpu:
            flags += [f"-mfpu={self.fpu}", "-mfloat-abi=hard"]
        else:
            flags += ["-mfloat-abi=soft"]
        return flags

    @property
    def emulator_counter_hz(self) -> int | None:
        """SysTick rate under the emulator (QEMU's model of the core clock), None without one."""
        return QEMU_COUNTER_HZ[self.qemu_machine] if self.qemu_machine else None

    @property
    def clock_text(self) -> str:
        if self.counter == "icount":
            return "- (counts instructions)"
        if self.clock is None:
            return f"{self.clock_hz / 1e6:g} MHz ({self.reset_clock}, reset clock)"
        return f"{self.clock_hz / 1e6:g} MHz ({self.clock.pll_source} PLL, {self.clock.voltage}, " \
               f"{self.clock.flash_latency} WS)"


# ---------------------------------------------------------------------------------------------
# Clock trees. Each value with its source; section numbers are those of the manual revision named.

F401_CLOCK = ClockSetup(
    manual="RM0368 Rev 5 (STM32F401xB/C/D/E) and DS10086 (STM32F401xD/E datasheet)",
    pll_source="HSI", pll_source_hz=16_000_000, pll_m=16, pll_n=336, pll_sys_div=4, pll_q=7,
    ahb_div=1, apb1_div=2, apb2_div=1, flash_latency=2, prefetch=True, flash_cache=True,
    voltage="voltage scale 2",
    sources=(
        ("PLL: HSI 16 MHz /M=16 = 1 MHz VCO input (1 to 2 MHz), xN=336 = 336 MHz VCO (192 to 432 MHz), "
         "/P=4 = 84 MHz (84 MHz max), /Q=7 = 48 MHz", "RM0368 6.3.2 RCC PLL configuration register (RCC_PLLCFGR)"),
        ("84 MHz in voltage scale 2, PWR_CR.VOS = 10 at reset (scale 2: HCLK up to 84 MHz)",
         "RM0368 5.4.1 PWR power control register (PWR_CR)"),
        ("2 wait states: 64 < HCLK <= 84 MHz at 2.7-3.6 V",
         "RM0368 3.4.1 Relation between CPU clock frequency and Flash memory read time, Table 6"),
        ("prefetch, instruction and data caches (ART accelerator)",
         "RM0368 3.4.2 Adaptive real-time memory accelerator; 3.8.1 Flash access control register (FLASH_ACR)"),
        ("order: raise the wait states and read them back, then switch SYSCLK and read SWS back",
         "RM0368 3.4.1 'Increasing the CPU frequency'"),
        ("AHB /1, APB1 /2 = 42 MHz (42 MHz max), APB2 /1 = 84 MHz (84 MHz max)",
         "RM0368 6.2 Clocks; 6.3.3 RCC clock configuration register (RCC_CFGR)"),
        ("USART2 on APB1: USARTDIV = PCLK1 / 115200 (oversampling by 16)",
         "RM0368 19.3.4 Fractional baud rate generation"),
    ))

L4R5_CLOCK = ClockSetup(
    manual="RM0432 Rev 9 (STM32L4+) and DS12023 (STM32L4R5xx datasheet)",
    pll_source="HSI16", pll_source_hz=16_000_000, pll_m=4, pll_n=60, pll_sys_div=2, pll_q=None,
    ahb_div=1, apb1_div=1, apb2_div=1, flash_latency=5, prefetch=True, flash_cache=True,
    voltage="range 1 boost", boost=True,
    sources=(
        ("PLL: HSI16 /M=4 = 4 MHz VCO input (2.66 MHz min), xN=60 = 240 MHz VCO (64 to 344 MHz), "
         "/R=2 = 120 MHz (PLLREN); P and Q outputs off",
         "RM0432 6.4.4 PLL configuration register (RCC_PLLCFGR)"),
        ("120 MHz needs voltage range 1 (PWR_CR1.VOS = 01, the reset value) in boost mode "
         "(PWR_CR5.R1MODE = 0); range 1 normal mode stops at 80 MHz",
         "RM0432 5.1.8 Dynamic voltage scaling management; 5.4.1 PWR_CR1; PWR_CR5"),
        ("entering boost: AHB /2 first, clear R1MODE, raise the wait states, switch to the PLL, wait 1 us, "
         "then AHB /1", "RM0432 5.1.8 Dynamic voltage scaling management (Range 1 boost mode)"),
        ("5 wait states: 100 < HCLK <= 120 MHz in range 1 boost mode",
         "RM0432 3.3.3 Read access latency, Table 12 (number of wait states according to HCLK)"),
        ("prefetch on; instruction and data caches on (their reset state)",
         "RM0432 3.3.4 Adaptive real-time memory accelerator (ART Accelerator); 3.7.1 FLASH_ACR"),
        ("AHB, APB1, APB2 /1 = 120 MHz (120 MHz max each)", "RM0432 6.2 Clocks; 6.4.3 RCC_CFGR"),
        ("LPUART1 clocked by PCLK1 (RCC_CCIPR.LPUART1SEL = 00, reset): LPUARTDIV = 256 x PCLK1 / 115200",
         "RM0432 6.4.29 RCC_CCIPR; LPUART baud rate generation"),
        ("the MLPerf Tiny setup of this board: 120 MHz, range 1 boost, 5 wait states",
         "MLPerf Tiny results (mlcommons tiny_results), NUCLEO-L4R5ZI system description"),
    ))

F746_CLOCK = ClockSetup(
    manual="RM0385 Rev 8 (STM32F75x/F74x), PM0253 (Cortex-M7 programming manual) and DS10916 (STM32F746xx datasheet)",
    pll_source="HSI", pll_source_hz=16_000_000, pll_m=8, pll_n=216, pll_sys_div=2, pll_q=9,
    ahb_div=1, apb1_div=4, apb2_div=2, flash_latency=7, prefetch=True, flash_cache=True,
    voltage="scale 1 + over-drive", overdrive=True, cpu_caches=True,
    sources=(
        ("PLL: HSI 16 MHz /M=8 = 2 MHz VCO input (1 to 2 MHz, 2 MHz recommended), xN=216 = 432 MHz VCO "
         "(100 to 432 MHz), /P=2 = 216 MHz, /Q=9 = 48 MHz",
         "RM0385 5.3.2 RCC PLL configuration register (RCC_PLLCFGR)"),
        ("216 MHz needs voltage scale 1 (PWR_CR1.VOS = 11, the reset value) with over-drive; scale 1 alone "
         "stops at 180 MHz", "RM0385 4.1.4 Voltage regulator; 4.4.1 PWR_CR1"),
        ("entering over-drive: PLL on, ODEN and wait ODRDY, ODSWEN and wait ODSWRDY, then wait states and "
         "prescalers, wait PLLRDY, switch", "RM0385 4.1.4 Voltage regulator, 'Entering Over-drive mode'"),
        ("7 wait states: 210 < HCLK <= 216 MHz at 2.7-3.6 V",
         "RM0385 3.3.2 Read access latency, Table 5 (number of wait states according to HCLK)"),
        ("ART accelerator and prefetch on (they serve the ITCM flash path)",
         "RM0385 3.7.1 Flash access control register (FLASH_ACR): ARTEN, PRFTEN"),
        ("Cortex-M7 L1 I-cache and D-cache invalidated, then enabled (code and data go through AXIM)",
         "PM0253 4.8 Cache maintenance operations; AN4839 Level 1 cache on STM32F7 Series"),
        ("AHB /1, APB1 /4 = 54 MHz (54 MHz max), APB2 /2 = 108 MHz (108 MHz max)",
         "RM0385 5.2 Clocks; 5.3.3 RCC_CFGR"),
        ("USART3 clocked by PCLK1 (RCC_DCKCFGR2.USART3SEL = 00, reset): USARTDIV = PCLK1 / 115200",
         "RM0385 5.3.26 RCC_DCKCFGR2; 31.5.4 USART baud rate generation"),
    ))

# qemu-stm32f4: the F401's register values (one image for both), which are within the STM32F405's
# limits too; QEMU 7.2 models no RCC for netduinoplus2, so there the firmware falls back to HSI 16 MHz.
F405_CLOCK = replace(
    F401_CLOCK, manual="RM0090 Rev 19 (STM32F405/415, F407/417, F427/437, F429/439)",
    voltage="voltage scale 1",
    sources=(
        ("PLL: HSI 16 MHz /M=16 = 1 MHz VCO input (1 to 2 MHz), xN=336 = 336 MHz VCO (100 to 432 MHz), "
         "/P=4 = 84 MHz, /Q=7 = 48 MHz", "RM0090 6.3.2 RCC PLL configuration register (RCC_PLLCFGR)"),
        ("2 wait states: 60 < HCLK <= 90 MHz at 2.7-3.6 V",
         "RM0090 3.5.1 Relation between CPU clock frequency and Flash memory read time, Table 10"),
        ("AHB /1, APB1 /2 = 42 MHz (42 MHz max), APB2 /1 = 84 MHz (84 MHz max)", "RM0090 6.2 Clocks"),
        ("QEMU 7.2's netduinoplus2 has no RCC model (reads 0, writes ignored): the firmware's HSI ready "
         "wait times out and it falls back to the reset clock", "QEMU hw/arm/stm32f405_soc.c"),
    ))

_F4_USART2 = {"base": 0x40004400, "rcc": 0x40023800, "apb_enr": 0x40, "apb_bit": 17, "ahb_enr": 0x30,
              "gpio": 0x40020000, "gpio_bit": 0, "tx_pin": 2, "rx_pin": 3, "af": 7}

BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("nucleo_f401re", "STM32F401RE", "cortex-m4", "stm32f4", 84_000_000, 0x08000000, 512 * 1024,
          0x20000000, 96 * 1024, "fpv4-sp-d16", 16_000_000, "HSI 16 MHz", F401_CLOCK, _F4_USART2,
          "USART2 (ST-LINK virtual COM port, PA2/PA3)", qemu_machine="netduinoplus2", qemu_serial_index=1,
          runs_here=True, pio_board="nucleo_f401re", openocd_target="stm32f4x.cfg",
          note="builds; its image boots on QEMU netduinoplus2 (STM32F405), host on USART2"),
    Board("nucleo_l4r5zi", "STM32L4R5ZI", "cortex-m4", "stm32l4", 120_000_000, 0x08000000, 2048 * 1024,
          0x20000000, 640 * 1024, "fpv4-sp-d16", 4_000_000, "MSI 4 MHz", L4R5_CLOCK,
          {"base": 0x40008000, "rcc": 0x40021000, "apb_enr": 0x5C, "apb_bit": 0, "ahb_enr": 0x4C,
           "gpio": 0x48001800, "gpio_bit": 6, "tx_pin": 7, "rx_pin": 8, "af": 8, "lpuart": 1,
           "clksel": 0x88, "clksel_shift": 10},
          "LPUART1 (ST-LINK virtual COM port, PG7/PG8)", pio_board="nucleo_l4r5zi", openocd_target="stm32l4x.cfg",
          note="builds (the MLPerf Tiny reference board, set up as MLPerf Tiny does)"),
    Board("nucleo_f746zg", "STM32F746ZG", "cortex-m7", "stm32f7", 216_000_000, 0x08000000, 1024 * 1024,
          0x20000000, 320 * 1024, "fpv5-sp-d16", 16_000_000, "HSI 16 MHz", F746_CLOCK,
          {"base": 0x40004800, "rcc": 0x40023800, "apb_enr": 0x40, "apb_bit": 18, "ahb_enr": 0x30,
           "gpio": 0x40020C00, "gpio_bit": 3, "tx_pin": 8, "rx_pin": 9, "af": 7, "clksel": 0x90, "clksel_shift": 4},
          "USART3 (ST-LINK virtual COM port, PD8/PD9)", pio_board="nucleo_f746zg", openocd_target="stm32f7x.cfg",
          note="builds"),
    Board("qemu-m4", "QEMU mps2-an386", "cortex-m4", "mps2", 25_000_000, 0x00000000, 4 * 1024 * 1024,
          0x20000000, 4 * 1024 * 1024, None, 25_000_000, "25 MHz (QEMU's model)", None, {"base": 0x40004000},
          "CMSDK UART0", qemu_machine="mps2-an386", runs_here=True, counter="icount",
          note="builds and runs (the default where no board is attached)",
          extra_ram=("psram", 0x21000000, 16 * 1024 * 1024)),
    Board("qemu-stm32f4", "QEMU netduinoplus2 (STM32F405)", "cortex-m4", "stm32f4", 84_000_000, 0x08000000,
          1024 * 1024, 0x20000000, 128 * 1024, "fpv4-sp-d16", 16_000_000, "HSI 16 MHz", F405_CLOCK, _F4_USART2,
          "USART2", qemu_machine="netduinoplus2", qemu_serial_index=1, runs_here=True, counter="icount",
          note="builds and runs; realistic memory limits", extra_ram=("ccm", 0x10000000, 64 * 1024)),
)}
ALIASES = {"nucleo": "nucleo_f401re"}
DEFAULT_BOARD = "qemu-m4"


def get(name: str) -> Board:
    key = ALIASES.get(name, name)
    if key not in BOARDS:
        raise LwcnnError(f"unknown board '{name}'; choose one of: {', '.join(list(BOARDS) + list(ALIASES))} "
                         "(lwcnn-mcu boards lists them)")
    return BOARDS[key]


def clock_warning(board_name: str, clock_hz: int, fallback: bool, failed_step: str | None = None) -> str | None:
    """What to tell the user when a device reports a clock other than its board's rated clock."""
    b = BOARDS.get(ALIASES.get(board_name, board_name))
    why = ""
    if fallback:
        why = " (its clock setup failed" + (f" at step {failed_step}" if failed_step else "") + \
              " and it fell back to the reset clock)"
    if b is None:
        return f"the device reports an unknown board '{board_name}'{why}; latency_ms uses its {clock_hz:,} Hz" \
            if fallback else None
    if clock_hz == b.clock_hz and not fallback:
        return None
    if clock_hz <= 0:
        return f"{b.name} reports no usable clock{why}; latency_ms is not computed"
    return (f"{b.name} runs at {clock_hz / 1e6:g} MHz, not its rated {b.clock_hz / 1e6:g} MHz{why}; latency_ms "
            f"is at {clock_hz / 1e6:g} MHz and not comparable with figures at {b.clock_hz / 1e6:g} MHz")


def readme_table() -> str:
    """The boards table of README.md (a test keeps the README equal to it)."""
    rows = ["| name | MCU / machine | core | clock | flash | RAM | here |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for b in BOARDS.values():
        aliases = "".join(f" (= `{a}`)" for a, t in ALIASES.items() if t == b.name)
        default = " (default)" if b.name == DEFAULT_BOARD else ""
        core = b.core.replace("cortex-m", "Cortex-M") + ("F" if b.fpu and b.core == "cortex-m4" else "")
        mem = lambda n: f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 and n % (1024 * 1024) == 0 \
            else f"{n // 1024} KB"  # noqa: E731
        rows.append(f"| `{b.name}`{aliases}{default} | {b.mcu} | {core} | {b.clock_text} | {mem(b.flash_bytes)} | "
                    f"{mem(b.ram_bytes)} | {b.note} |")
    return "\n".join(rows)


def clocks_doc() -> str:
    """docs/boards.md: each board's clock tree with the manual section every value comes from."""
    out = ["# Boards: clocks and their sources", "",
           "Generated from `lwcnn_mcu/boards.py` (`python -m lwcnn_mcu.boards > docs/boards.md`); a test keeps "
           "this page equal to the registry.", "",
           "The firmware (`lwcnn_mcu/firmware/clock_stm32.c`) programs these values at register level, waits "
           "on every ready bit with a bound, and on any failure returns to the reset clock and says so in its "
           "INFO reply (`docs/protocol.md`). It reports the clock it reads back from the RCC registers, not the one it "
           "meant to set; `bench` computes `latency_ms` from that and warns when it is not the rated clock. "
           "`tests/test_clock.py` runs the same C on the host against a register model of RCC, PWR and FLASH "
           "that enforces the ordering rules cited below.", "",
           "| board | rated clock | reset clock | setup |", "| --- | --- | --- | --- |"]
    for b in BOARDS.values():
        setup = b.clock.summary() if b.clock else "none (the reset clock)"
        if b.qemu_machine and b.counter == "icount":
            setup += f"; under QEMU {b.qemu_machine} the count is instructions (SysTick at " \
                     f"{(b.emulator_counter_hz or 0) / 1e6:g} MHz of virtual time)"
        out.append(f"| `{b.name}` | {b.clock_hz / 1e6:g} MHz | {b.reset_clock} | {setup} |")
    seen: set[int] = set()
    for b in BOARDS.values():
        if b.clock is None or id(b.clock) in seen:
            continue
        seen.add(id(b.clock))
        users = ", ".join(f"`{x.name}`" for x in BOARDS.values() if x.clock is b.clock)
        out += ["", f"## {users}: {b.clock_hz / 1e6:g} MHz", "", f"Manual: {b.clock.manual}.", "",
                "| setting | source |", "| --- | --- |"]
        out += [f"| {what} | {where} |" for what, where in b.clock.sources]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(clocks_doc(), end="")
