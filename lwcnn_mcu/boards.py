"""The boards registry: one place from which linker scripts, the firmware's board header,
``platformio.ini`` environments and ``lwcnn-mcu boards`` are all built."""

from __future__ import annotations

from dataclasses import dataclass, field

from lwcnn_mcu.errors import LwcnnError


@dataclass(frozen=True)
class Board:
    name: str
    mcu: str
    core: str  # cortex-m4 | cortex-m7
    family: str  # firmware driver: stm32f4 | stm32l4 | stm32f7 | mps2
    clock_hz: int  # core clock the firmware runs at
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    fpu: str | None  # -mfpu, or None for soft float
    uart: dict[str, int] = field(default_factory=dict)  # register-level UART description
    uart_name: str = ""
    qemu_machine: str | None = None  # machine that runs this image
    qemu_serial_index: int = 0  # which of QEMU's -serial ports is the host link
    runs_here: bool = False  # an emulator runs it on this machine
    pio_board: str | None = None
    counter: str = "dwt"  # dwt (cycles) | icount (QEMU instructions via SysTick)
    icount_per_tick: int = 0  # instructions per SysTick tick under -icount shift=0
    note: str = ""
    stack_bytes: int = 4096

    @property
    def cpu_flags(self) -> list[str]:
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.fpu:
            flags += [f"-mfpu={self.fpu}", "-mfloat-abi=hard"]
        else:
            flags += ["-mfloat-abi=soft"]
        return flags


_F4_USART2 = {"base": 0x40004400, "rcc": 0x40023800, "apb_enr": 0x40, "apb_bit": 17, "ahb_enr": 0x30,
              "gpio": 0x40020000, "gpio_bit": 0, "tx_pin": 2, "rx_pin": 3, "af": 7}

BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("nucleo_f401re", "STM32F401RE", "cortex-m4", "stm32f4", 84_000_000, 0x08000000, 512 * 1024,
          0x20000000, 96 * 1024, "fpv4-sp-d16", _F4_USART2, "USART2 (ST-LINK virtual COM port, PA2/PA3)",
          qemu_machine="netduinoplus2", qemu_serial_index=1, runs_here=True, pio_board="nucleo_f401re",
          note="builds; its image boots on QEMU netduinoplus2 (STM32F405), host on USART2"),
    Board("nucleo_l4r5zi", "STM32L4R5ZI", "cortex-m4", "stm32l4", 4_000_000, 0x08000000, 2048 * 1024,
          0x20000000, 640 * 1024, "fpv4-sp-d16",
          {"base": 0x40008000, "rcc": 0x40021000, "apb_enr": 0x5C, "apb_bit": 0, "ahb_enr": 0x4C,
           "gpio": 0x48001800, "gpio_bit": 6, "tx_pin": 7, "rx_pin": 8, "af": 8, "lpuart": 1},
          "LPUART1 (ST-LINK virtual COM port, PG7/PG8)", pio_board="nucleo_l4r5zi",
          note="builds; runs at the reset clock (MSI 4 MHz): cycle counts are exact, latency_ms scales with it"),
    Board("nucleo_f746zg", "STM32F746ZG", "cortex-m7", "stm32f7", 16_000_000, 0x08000000, 1024 * 1024,
          0x20000000, 320 * 1024, "fpv5-sp-d16",
          {"base": 0x40004800, "rcc": 0x40023800, "apb_enr": 0x40, "apb_bit": 18, "ahb_enr": 0x30,
           "gpio": 0x40020C00, "gpio_bit": 3, "tx_pin": 8, "rx_pin": 9, "af": 7},
          "USART3 (ST-LINK virtual COM port, PD8/PD9)", pio_board="nucleo_f746zg",
          note="builds; runs at the reset clock (HSI 16 MHz): cycle counts are exact, latency_ms scales with it"),
    Board("qemu-m4", "QEMU mps2-an386", "cortex-m4", "mps2", 25_000_000, 0x00000000, 4 * 1024 * 1024,
          0x20000000, 4 * 1024 * 1024, None, {"base": 0x40004000}, "CMSDK UART0",
          qemu_machine="mps2-an386", runs_here=True, counter="icount", icount_per_tick=40,
          note="builds and runs (the default where no board is attached)"),
    Board("qemu-stm32f4", "QEMU netduinoplus2 (STM32F405)", "cortex-m4", "stm32f4", 168_000_000, 0x08000000,
          1024 * 1024, 0x20000000, 128 * 1024, "fpv4-sp-d16", _F4_USART2, "USART2",
          qemu_machine="netduinoplus2", qemu_serial_index=1, runs_here=True, counter="icount",
          note="builds and runs; realistic memory limits"),
)}
ALIASES = {"nucleo": "nucleo_f401re"}
DEFAULT_BOARD = "qemu-m4"


def get(name: str) -> Board:
    key = ALIASES.get(name, name)
    if key not in BOARDS:
        raise LwcnnError(f"unknown board '{name}'; choose one of: {', '.join(list(BOARDS) + list(ALIASES))} "
                         "(lwcnn-mcu boards lists them)")
    return BOARDS[key]
