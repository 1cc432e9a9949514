"""Board clocks, checkable without hardware: each board's clock-setup C (lwcnn_mcu/firmware/clock_stm32.c) runs
on the host against a register model of RCC, PWR and FLASH (tests/c/clock_model.c) that enforces
the reference manuals' rules, under the sanitizers; the final registers and the clock the firmware
computes must be the registry's. Plus the registry as the one home of board facts, the INFO clock
flags on the wire, the docs generated from the registry, and the real QEMU run (no RCC model: the
fallback path)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from lwcnn_mcu import boards, builder, emulator, protocol
from lwcnn_mcu.hostrun import SANITIZE, STRICT, compiler
from tests.conftest import HAVE_ARM

ROOT = Path(__file__).resolve().parents[1]
CLOCKED = sorted(n for n, b in boards.BOARDS.items() if b.clock is not None)
STEP = {name: code for name, code, _ in protocol.CLOCK_STEPS}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    """The register model linked with each clocked board's clock C, built -Werror under ASan/UBSan."""
    out = {}
    for name in CLOCKED:
        d = tmp_path_factory.mktemp(f"clock-{name}")
        (d / "lw_board.h").write_text(builder.board_header(boards.BOARDS[name]))
        (d / "lw_proto_codes.h").write_text(protocol.c_header())
        exe = d / "clock_model"
        r = subprocess.run([compiler(), *STRICT, *SANITIZE, "-g", "-O1", "-DLW_REG_MODEL", "-I", str(d), "-I",
                            str(builder.firmware_dir()), str(builder.firmware_dir() / "clock_stm32.c"),
                            str(ROOT / "tests" / "c" / "clock_model.c"), "-o", str(exe)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out[name] = exe
    return out


def run_model(exe: Path, scenario: str) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(values, registers, violations) of one run of the model."""
    r = subprocess.run([str(exe), scenario], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "runtime error" not in r.stderr and "Sanitizer" not in r.stderr, r.stderr
    vals, regs, viol = {}, {}, []
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts[0] == "violation":
            viol.append(line)
        elif parts[0] == "reg":
            regs[parts[1]] = int(parts[2], 16)
        elif parts[0] != "rule":
            vals[parts[0]] = int(float(parts[1]))
    return vals, regs, viol


def field(v: int, shift: int, bits: int) -> int:
    return (v >> shift) & ((1 << bits) - 1)


# -- the normal path: registers and clocks as the registry says ------------------------------------------

@pytest.mark.parametrize("name", CLOCKED)
def test_clock_setup_reaches_the_registry_clock_by_the_rules(name, models):  # noqa: ANN001
    b = boards.BOARDS[name]
    ck = b.clock
    assert ck is not None
    vals, regs, viol = run_model(models[name], "ok")
    assert viol == [] and vals["violations"] == 0
    assert vals["fw_fallback"] == 0 and vals["fw_failed_step"] == 0
    # the clock the firmware computes from the registers it reads back = the model's = the registry's
    assert vals["fw_core_hz"] == vals["model_hclk_hz"] == b.clock_hz == ck.hclk_hz
    assert vals["model_sysclk_hz"] == ck.sysclk_hz
    assert vals["model_pclk1_hz"] == ck.pclk1_hz and vals["model_pclk2_hz"] == ck.pclk2_hz
    assert vals["fw_uart_hz"] == vals["model_uart_hz"] == ck.pclk1_hz  # every host UART here is on APB1
    # the UART divisor board_init derives from it gives 115200 baud within 1 %
    if b.uart.get("lpuart"):
        brr = (vals["fw_uart_hz"] * 256 + 57600) // 115200
        assert 0x300 <= brr < 1 << 20 and abs(vals["fw_uart_hz"] * 256 / brr / 115200 - 1) < 0.01
    else:
        brr = (vals["fw_uart_hz"] + 57600) // 115200
        assert 16 <= brr < 1 << 16 and abs(vals["fw_uart_hz"] / brr / 115200 - 1) < 0.01

    acr, cfgr, pll = regs["FLASH_ACR"], regs["RCC_CFGR"], regs["RCC_PLLCFGR"]
    assert field(acr, 0, 4) == ck.flash_latency
    assert bool(acr & 1 << 8) == ck.prefetch
    hpre = {1: 0, 2: 8, 4: 9, 8: 10}[ck.ahb_div]
    ppre = {1: 0, 2: 4, 4: 5, 8: 6, 16: 7}
    assert regs["RCC_CR"] & (1 << 24) and regs["RCC_CR"] & (1 << 25)  # PLLON, PLLRDY
    if b.family == "stm32l4":
        assert field(cfgr, 0, 2) == 3 and field(cfgr, 2, 2) == 3  # SW, SWS = PLL
        assert field(cfgr, 4, 4) == hpre and field(cfgr, 8, 3) == ppre[ck.apb1_div] \
            and field(cfgr, 11, 3) == ppre[ck.apb2_div]
        assert field(pll, 0, 2) == 2  # HSI16
        assert field(pll, 4, 4) == ck.pll_m - 1 and field(pll, 8, 7) == ck.pll_n
        assert pll & 1 << 24 and field(pll, 25, 2) == ck.pll_sys_div // 2 - 1  # PLLREN, PLLR
        assert not pll & (1 << 16 | 1 << 20)  # P and Q outputs off
        assert bool(acr & 1 << 9) and bool(acr & 1 << 10)  # ICEN, DCEN
        assert field(regs["PWR_CR1"], 9, 2) == 1  # range 1
        assert not regs["PWR_CR5"] & 1 << 8 if ck.boost else regs["PWR_CR5"] & 1 << 8  # R1MODE 0: boost
    else:
        assert field(cfgr, 0, 2) == 2 and field(cfgr, 2, 2) == 2
        assert field(cfgr, 4, 4) == hpre and field(cfgr, 10, 3) == ppre[ck.apb1_div] \
            and field(cfgr, 13, 3) == ppre[ck.apb2_div]
        assert not pll & 1 << 22  # HSI
        assert field(pll, 0, 6) == ck.pll_m and field(pll, 6, 9) == ck.pll_n
        assert field(pll, 16, 2) == ck.pll_sys_div // 2 - 1 and field(pll, 24, 4) == ck.pll_q
        assert pll & ~0x0F437FFF == 0x24003010 & ~0x0F437FFF  # reserved bits at their reset value
        if b.family == "stm32f7":
            assert acr & 1 << 9  # ARTEN
            assert field(regs["PWR_CR1"], 14, 2) == 3 and regs["PWR_CR1"] & 3 << 16  # scale 1, ODEN, ODSWEN
            assert regs["PWR_CSR1"] & 3 << 16  # ODRDY, ODSWRDY
            assert regs["SCB_CCR"] & 3 << 16  # IC, DC
            assert vals["barriers"] >= 4
        else:
            assert acr & 3 << 9  # ICEN, DCEN


def test_qemu_stm32f4_is_registered_at_the_clock_its_firmware_sets(models):  # noqa: ANN001
    """Regression: qemu-stm32f4 was registered at 168 MHz while its firmware sets 84 MHz."""
    b = boards.get("qemu-stm32f4")
    vals, _, viol = run_model(models["qemu-stm32f4"], "ok")
    assert viol == [] and b.clock_hz == vals["fw_core_hz"] == 84_000_000
    assert b.clock is not None and b.clock.sysclk_hz == 84_000_000


@pytest.mark.parametrize("name", CLOCKED)
def test_the_model_catches_every_rule_broken_on_purpose(name, models):  # noqa: ANN001
    """The model is not vacuous: a wrong sequence per rule, each must be reported."""
    out = subprocess.run([str(models[name]), "rules"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "runtime error" not in out.stderr, out.stderr
    rules = [line.split() for line in out.stdout.splitlines()]
    assert len(rules) >= 9 and all(r[0] == "rule" for r in rules)
    assert [r[1] for r in rules if r[3] != "caught"] == []
    caught = {r[2] for r in rules}
    assert {"latency", "pll_not_ready", "pllcfgr_while_on", "pll_range"} <= caught
    if boards.BOARDS[name].family == "stm32l4":
        assert {"boost_range1", "boost_ahb_div2", "ahb_div2_step", "boost_1us", "voltage"} <= caught
    if boards.BOARDS[name].family == "stm32f7":
        assert {"od_order", "vos_while_pll_on", "cache", "voltage", "apb"} <= caught


# -- every failure path: bounded waits, back to the reset clock, said in INFO ----------------------------

FAILURES = [(n, s, step) for n in CLOCKED for s, step, fams in (
    ("no_hsirdy", "HSI", "all"), ("no_pllrdy", "PLL", "all"), ("sws_stuck", "SWITCH", "all"),
    ("acr_stuck", "FLASH", "all"), ("no_vosf", "VOLTAGE", "stm32l4"), ("no_odrdy", "OVERDRIVE", "stm32f7"),
    ("no_odswrdy", "OVERDRIVE_SWITCH", "stm32f7")) if fams in ("all", boards.BOARDS[n].family)]


@pytest.mark.parametrize(("name", "scenario", "step"), FAILURES)
def test_a_failed_step_falls_back_to_the_reset_clock(name, scenario, step, models):  # noqa: ANN001
    b = boards.BOARDS[name]
    vals, regs, viol = run_model(models[name], scenario)
    assert viol == []  # the way back obeys the rules too
    assert vals["fw_fallback"] == 1 and vals["fw_failed_step"] == STEP[step]
    assert vals["fw_core_hz"] == vals["model_hclk_hz"] == b.reset_clock_hz
    assert vals["fw_uart_hz"] == vals["model_uart_hz"] == b.reset_clock_hz
    assert field(regs["RCC_CFGR"], 2, 2) == 0 and not regs["RCC_CR"] & 1 << 24  # reset oscillator, PLL off
    assert field(regs["RCC_CFGR"], 4, 12) == 0  # prescalers /1
    assert regs["FLASH_ACR"] & 0x70F == (0x600 if b.family == "stm32l4" else 0)  # reset flash settings
    if b.family == "stm32l4":
        assert regs["PWR_CR5"] & 1 << 8  # range 1 normal mode again
    if b.family == "stm32f7":
        assert not regs["PWR_CR1"] & 3 << 16  # over-drive off
    assert vals["elapsed_us"] < 1_000_000  # bounded


@pytest.mark.parametrize("name", [n for n in CLOCKED if boards.BOARDS[n].family == "stm32f4"])
def test_an_rcc_that_reads_zero_gives_the_reset_clock(name, models):  # noqa: ANN001
    """What QEMU's netduinoplus2 does (no RCC model): the setup gives up at HSI and reports 16 MHz."""
    vals, _, _ = run_model(models[name], "qemu")
    assert vals["fw_fallback"] == 1 and vals["fw_failed_step"] == STEP["HSI"]
    assert vals["fw_core_hz"] == vals["fw_uart_hz"] == boards.BOARDS[name].reset_clock_hz == 16_000_000


# -- the registry: one home for board facts ---------------------------------------------------------------

def test_the_registry_holds_every_board_fact():
    for b in boards.BOARDS.values():
        assert b.reset_clock_hz > 0 and b.reset_clock
        if b.clock is not None:
            assert b.clock.hclk_hz == b.clock_hz and b.clock.sources
            assert all(where.split()[0] in b.clock.manual or where.startswith(("PM0253", "MLPerf", "QEMU"))
                       for _, where in b.clock.sources)
        else:
            assert b.clock_hz == b.reset_clock_hz
        if b.pio_board:
            assert b.openocd_target and b.openocd_target.startswith(b.family)
        if b.qemu_machine:
            hz = b.emulator_counter_hz
            assert hz and emulator.ticks_to_instructions(b, hz) == 1_000_000_000
    assert {b.name: b.clock_hz for b in boards.BOARDS.values() if b.pio_board} == {
        "nucleo_f401re": 84_000_000, "nucleo_l4r5zi": 120_000_000, "nucleo_f746zg": 216_000_000}
    # the copies that used to live elsewhere are gone
    assert not hasattr(emulator, "SYSTICK_HZ") and not hasattr(builder, "RESET_CLOCK")
    assert "icount_per_tick" not in boards.Board.__dataclass_fields__
    with pytest.raises(ValueError, match="clock setup gives"):
        boards.Board("x", "X", "cortex-m4", "stm32f4", 168_000_000, 0, 1, 0, 1, None, 16_000_000, "HSI",
                     boards.F401_CLOCK)


def test_generated_headers_carry_the_clock_tree():
    h = builder.board_header(boards.get("nucleo_l4r5zi"))
    for define in ("LW_CLOCK_HZ 120000000u", "LW_RESET_CLOCK_HZ 4000000u", "LW_CLK_PLLM 4u", "LW_CLK_PLLN 60u",
                   "LW_CLK_FLASH_LATENCY 5u", "LW_CLK_BOOST 1", "LW_UART_CLKSEL 136u"):
        assert f"#define {define}" in h
    h = builder.board_header(boards.get("nucleo_f746zg"))
    assert "#define LW_CLK_OVERDRIVE 1" in h and "#define LW_CLK_CPU_CACHES 1" in h
    assert "#define LW_CLK_SETUP 0" in builder.board_header(boards.get("qemu-m4"))


def test_clock_warning():
    assert boards.clock_warning("nucleo_l4r5zi", 120_000_000, False) is None
    w = boards.clock_warning("nucleo_l4r5zi", 4_000_000, True, "PLL")
    assert w and "4 MHz" in w and "120 MHz" in w and "PLL" in w and "latency_ms" in w
    w = boards.clock_warning("nucleo", 16_000_000, False)
    assert w and "nucleo_f401re" in w and "84 MHz" in w
    assert boards.clock_warning("someone-elses-board", 48_000_000, False) is None


def test_info_flags_on_the_wire():
    flags = 0x0001 | STEP["OVERDRIVE"] << 8
    p = struct.pack("<BBHIIIII", 1, 0, flags, 16_000_000, 1, 2, 3, 4) + b"nucleo_f746zg\0lwcnn-fw 1\0" + b"ab" * 32 \
        + b"\0"
    info = protocol.DeviceInfo.parse(p)
    assert info.clock_fallback and info.clock_failed_step == "OVERDRIVE" and info.clock_hz == 16_000_000
    ok = protocol.DeviceInfo.parse(struct.pack("<BBHIIIII", 1, 0, 0, 216_000_000, 1, 2, 3, 4) + p[24:])
    assert not ok.clock_fallback and ok.clock_failed_step is None
    h = protocol.c_header()
    assert "#define LW_INFO_CLOCK_FALLBACK 0x0001u" in h and f"#define LW_CLOCK_STEP_PLL {STEP['PLL']}u" in h


# -- docs generated from the registry and the protocol module ---------------------------------------------

def test_docs_equal_what_the_code_generates():
    assert (ROOT / "docs" / "boards.md").read_text() == boards.clocks_doc(), \
        "docs/boards.md is stale: python -m lwcnn_mcu.boards > docs/boards.md"
    assert boards.readme_table() in (ROOT / "README.md").read_text(), "README's boards table is stale"
    doc = (ROOT / protocol.DOC).read_text()
    assert protocol.render_doc(doc) == doc, "docs/protocol.md is stale: python -m lwcnn_mcu.protocol"


# -- the real emulator: the Nucleo image on netduinoplus2 says it fell back ---------------------------------

@pytest.mark.skipif(not HAVE_ARM or shutil.which("qemu-system-arm") is None, reason="needs arm-none-eabi-gcc and QEMU")
@pytest.mark.parametrize(("name", "fallback"), [("nucleo", True), ("qemu-m4", False)])
def test_emulated_board_reports_its_clock_in_info(name, fallback, tmp_path):  # noqa: ANN001
    from lwcnn_mcu import bench

    built = builder.build(name, "mnist", tmp_path / "fw")
    emu = bench.Emulated(built.board, built.elf)
    try:
        dev = bench.Device(bench.open_port(emu.url))
        info = dev.wait_ready(60.0)
        again = dev.info()
    finally:
        emu.close()
    assert info.board == built.board.name and again.flags == info.flags
    assert info.clock_fallback is fallback
    if fallback:  # QEMU models no RCC: the reset clock, computed from what the registers read
        assert info.clock_failed_step == "HSI" and info.clock_hz == built.board.reset_clock_hz == 16_000_000
        w = boards.clock_warning(info.board, info.clock_hz, info.clock_fallback, info.clock_failed_step)
        assert w and "16 MHz" in w and "84 MHz" in w
    else:
        assert info.flags == 0 and info.clock_hz == built.board.clock_hz
