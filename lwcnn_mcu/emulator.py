"""Emulated boards: QEMU command lines and the firmware's self-test run.

``-icount shift=0`` makes one guest instruction 1 ns of virtual time, so runs are deterministic
and SysTick counts instructions (ticks x 1e9 / SysTick clock, the machine's rate in the board
registry). The host link is the board's UART:
QEMU's n-th ``-serial`` option is the n-th UART, so the Nucleo image on ``netduinoplus2`` gets
``-serial null -serial <host>`` (USART2, the Nucleo's ST-LINK port).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lwcnn_mcu import boards
from lwcnn_mcu.errors import LwcnnError


def qemu_binary() -> str:
    q = shutil.which("qemu-system-arm")
    if q is None:
        raise LwcnnError("qemu-system-arm is not installed; run `make setup` (or apt-get install qemu-system-arm)")
    return q


def command(board: boards.Board, elf: Path, serial: str, semihosting: bool = True) -> list[str]:
    if board.qemu_machine is None:
        raise LwcnnError(f"board {board.name} has no emulator; connect the board and use --port")
    cmd = [qemu_binary(), "-M", board.qemu_machine, "-display", "none", "-monitor", "none", "-icount", "shift=0",
           "-kernel", str(elf)]
    cmd += ["-serial", "null"] * board.qemu_serial_index + ["-serial", serial]
    if semihosting:
        cmd += ["-semihosting-config", "enable=on,target=native"]
    return cmd


def ticks_to_instructions(board: boards.Board, ticks: int) -> int:
    """SysTick ticks under QEMU -icount shift=0 as instructions, at the machine's counter rate
    (boards.QEMU_COUNTER_HZ: QEMU's core clock model, whatever clock the firmware set up)."""
    hz = board.emulator_counter_hz
    assert hz is not None, f"{board.name} has no emulator"
    return int(round(ticks * 1_000_000_000 / hz))


@dataclass(frozen=True)
class SelfTest:
    banner: str
    outputs: np.ndarray  # (N, out) int8
    ticks: list[int]
    instructions: list[int]


_RESULT = re.compile(r"^RESULT (\d+) ([0-9a-f]+) cycles=(\d+) ticks=(\d+)$")


def run_selftest(board: boards.Board, elf: Path, timeout: float = 120.0) -> SelfTest:
    """Boot the image, read its banner and RESULT lines until DONE, then stop QEMU."""
    # binary: after DONE the firmware starts talking the (binary) benchmark protocol
    proc = subprocess.Popen(command(board, elf, "stdio"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    lines: list[str] = []
    try:
        import threading

        done = threading.Event()

        def reader() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.append(raw.decode("ascii", errors="replace").rstrip("\r\n"))
                if lines[-1] in ("DONE", "LWCNN FAULT"):
                    break
            done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        if not done.wait(timeout):
            raise RuntimeError(f"{board.name}: no DONE from the firmware within {timeout:.0f} s; got {lines[-5:]}")
    finally:
        proc.kill()
        proc.wait()
    if "LWCNN FAULT" in lines:
        raise RuntimeError(f"{board.name}: the firmware faulted: {lines}")
    banner = next((ln for ln in lines if ln.startswith("LWCNN READY")), "")
    outs, ticks = [], []
    for ln in lines:
        m = _RESULT.match(ln)
        if m:
            outs.append(np.frombuffer(bytes.fromhex(m.group(2)), np.int8))
            ticks.append(int(m.group(4)))
    return SelfTest(banner, np.stack(outs) if outs else np.zeros((0, 0), np.int8), ticks,
                    [ticks_to_instructions(board, t) for t in ticks])
