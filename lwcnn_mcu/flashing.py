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


def firmware_files(project: Path, board: boards.Board) -> tuple[Path, Path]:
    """(ELF, BIN) of a built project: where `make` puts them (the project folder) or where PlatformIO
    does (.pio/build/<board>/); the newer when both are there."""
    found = [elf for elf in (project / "firmware.elf", project / ".pio" / "build" / board.name / "firmware.elf")
             if elf.is_file()]
    if not found:
        raise LwcnnError(f"no firmware in {project}/ ; run first: lwcnn-mcu build --board {board.name} -o {project}")
    elf = max(found, key=lambda p: p.stat().st_mtime)
    return elf, elf.with_suffix(".bin")


def flash(board: boards.Board, project: Path, *, port: str | None, tcp_port: int, console: Any,
          emulate: bool = False) -> None:
    """emulate: run a real board's image on its QEMU machine (the Nucleo image on netduinoplus2), as
    the emulated boards always are, instead of uploading it."""
    if emulate and (not board.runs_here or port is not None):
        raise LwcnnError(f"--emulate needs a board QEMU runs here and no --port; {board.name} "
                         + ("has no emulator" if not board.runs_here else "was given --port"))
    elf, binf = firmware_files(project, board)
    if board.runs_here and (emulate or board.name.startswith("qemu-")) and port is None:
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
    tools = []
    if (project / "platformio.ini").is_file() and (shutil.which("pio") or shutil.which("platformio")):
        tools.append(("pio", [shutil.which("pio") or "platformio", "run", "-d", str(project), "-e", board.name,
                              "-t", "upload"] + (["--upload-port", port] if port else [])))
    st_flash, openocd = shutil.which("st-flash"), shutil.which("openocd")
    if st_flash and binf.is_file():
        tools.append(("st-flash", [st_flash, "--reset", "write", str(binf), f"{board.flash_origin:#x}"]))
    if openocd and board.openocd_target:
        tools.append(("openocd", [openocd, "-f", "interface/stlink.cfg", "-f", f"target/{board.openocd_target}",
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
