"""``lwcnn-mcu flash``: PlatformIO upload (or st-flash / OpenOCD) for a real board; for an
emulated board, QEMU with the firmware and its UART on a local TCP port."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lwcnn_mcu import boards, emulator
from lwcnn_mcu.errors import LwcnnError


def _need_build(project: Path, board: boards.Board) -> Path:
    elf = project / "firmware.elf"
    if not elf.is_file():
        raise LwcnnError(f"no firmware in {project}/ ; run first: lwcnn-mcu build --board {board.name} -o {project}")
    return elf


def flash(board: boards.Board, project: Path, *, port: str | None, tcp_port: int, console: Any) -> None:
    elf = _need_build(project, board)
    if board.runs_here and board.name.startswith("qemu-") and port is None:
        cmd = emulator.command(board, elf, f"tcp:127.0.0.1:{tcp_port},server=on,wait=on,nodelay=on",
                               semihosting=True)
        console.print(f"starting {board.name} (QEMU {board.qemu_machine}); its UART waits on 127.0.0.1:{tcp_port}\n"
                      f"  connect: lwcnn-mcu bench --port socket://127.0.0.1:{tcp_port}  or  nc 127.0.0.1 {tcp_port}\n"
                      "  stop: Ctrl-C")
        try:
            subprocess.run(cmd, check=False)
        except KeyboardInterrupt:
            pass
        return
    binf = project / "firmware.bin"
    tools = []
    if (project / "platformio.ini").is_file() and (shutil.which("pio") or shutil.which("platformio")):
        tools.append(("pio", [shutil.which("pio") or "platformio", "run", "-d", str(project), "-e", board.name,
                              "-t", "upload"] + (["--upload-port", port] if port else [])))
    if shutil.which("st-flash"):
        tools.append(("st-flash", ["st-flash", "--reset", "write", str(binf), f"{board.flash_origin:#x}"]))
    if shutil.which("openocd"):
        tools.append(("openocd", ["openocd", "-f", "interface/stlink.cfg", "-f", f"target/{_ocd_target(board)}",
                                  "-c", f"program {elf} verify reset exit"]))
    probes = glob.glob("/dev/ttyACM*") + glob.glob("/dev/serial/by-id/*STLINK*")
    if not probes and port is None:
        raise LwcnnError(f"no {board.name} board is attached (no /dev/ttyACM* ST-LINK port found); connect it by "
                         "USB, or use an emulated board: lwcnn-mcu flash --board qemu-m4")
    if not tools:
        raise LwcnnError("no flashing tool found: install PlatformIO (pip), stlink-tools (st-flash) or openocd")
    name, cmd = tools[0]
    console.print(f"flashing {elf.name} to {board.name} with {name}...")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        raise LwcnnError(f"{name} could not flash {board.name}: {tail[0]}")
    console.print("done; the board resets and prints its READY line on the ST-LINK serial port")


def _ocd_target(board: boards.Board) -> str:
    return {"stm32f4": "stm32f4x.cfg", "stm32l4": "stm32l4x.cfg", "stm32f7": "stm32f7x.cfg"}.get(board.family, "")
