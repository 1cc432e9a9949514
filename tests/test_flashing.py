"""`flash` and the toolchain lookups with stand-in tools: fake `openocd`, `st-flash`, `pio` and
toolchain wrappers on PATH record how they are called, so the commands are checked without a board."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from lwcnn_mcu import boards, builder
from lwcnn_mcu.errors import LwcnnError
from tests.conftest import HAVE_ARM
from tests.test_errors import assert_clean_error, run


def stand_in(folder: Path, name: str, log: Path, body: str = "") -> Path:
    """A shell script `name` that appends its arguments to `log`, then runs `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{body}\n')
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return p


def make_layout(project: Path) -> None:
    """A project as `lwcnn-mcu build --builder make` leaves it."""
    project.mkdir(parents=True)
    (project / "firmware.elf").write_bytes(b"\x7fELF make")
    (project / "firmware.bin").write_bytes(b"make")


def pio_layout(project: Path, board: str) -> Path:
    """A project as `lwcnn-mcu build --builder pio` leaves it: the ELF under .pio/build/<env>/."""
    out = project / ".pio" / "build" / board
    out.mkdir(parents=True)
    (project / "platformio.ini").write_text(f"[env:{board}]\nplatform = ststm32\n")
    (out / "firmware.elf").write_bytes(b"\x7fELF pio")
    (out / "firmware.bin").write_bytes(b"pio")
    return out


@pytest.fixture
def tools(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """PATH holding only the stand-ins this test adds (so real tools on the machine are not used)."""
    folder, log = tmp_path / "bin", tmp_path / "calls.log"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_flash_after_a_platformio_build_finds_its_elf(tools, tmp_path, capsys):  # noqa: ANN001
    """Regression: `flash` looked for the ELF where `make` puts it, so a PlatformIO build was 'not built'."""
    folder, log = tools
    stand_in(folder, "openocd", log)
    project = tmp_path / "proj"
    out = pio_layout(project, "nucleo_f401re")
    code, _, err = run(["flash", "--board", "nucleo", "--port", "/dev/ttyACM9", "-o", str(project)], capsys)
    assert code == 0, err
    assert calls(log) == [f"openocd -f interface/stlink.cfg -f target/stm32f4x.cfg -c program {out / 'firmware.elf'} "
                          "verify reset exit"]


def test_flash_a_make_build_with_st_flash(tools, tmp_path, capsys):  # noqa: ANN001
    folder, log = tools
    stand_in(folder, "st-flash", log)
    stand_in(folder, "openocd", log)
    project = tmp_path / "proj"
    make_layout(project)
    code, _, err = run(["flash", "--board", "nucleo_l4r5zi", "--port", "/dev/ttyACM9", "-o", str(project)], capsys)
    assert code == 0, err
    assert calls(log) == [f"st-flash --reset write {project / 'firmware.bin'} 0x8000000"]


def test_flash_with_platformio_upload(tools, tmp_path, capsys):  # noqa: ANN001
    folder, log = tools
    stand_in(folder, "pio", log)
    stand_in(folder, "st-flash", log)
    project = tmp_path / "proj"
    pio_layout(project, "nucleo_f746zg")
    code, _, err = run(["flash", "--board", "nucleo_f746zg", "--port", "/dev/ttyACM7", "-o", str(project)], capsys)
    assert code == 0, err
    assert calls(log) == [f"pio run -d {project} -e nucleo_f746zg -t upload --upload-port /dev/ttyACM7"]


@pytest.mark.parametrize("name", [n for n, b in boards.BOARDS.items() if b.openocd_target])
def test_openocd_target_comes_from_the_registry(name, tools, tmp_path, capsys):  # noqa: ANN001
    folder, log = tools
    stand_in(folder, "openocd", log)
    project = tmp_path / "proj"
    make_layout(project)
    code, _, err = run(["flash", "--board", name, "--port", "/dev/ttyACM9", "-o", str(project)], capsys)
    assert code == 0, err
    assert f"-f target/{boards.BOARDS[name].openocd_target} " in calls(log)[0]


def test_newest_build_wins_when_both_layouts_are_there(tools, tmp_path, capsys):  # noqa: ANN001
    folder, log = tools
    stand_in(folder, "openocd", log)
    project = tmp_path / "proj"
    make_layout(project)
    out = pio_layout(project, "nucleo_f401re")
    os.utime(project / "firmware.elf", (1_000_000, 1_000_000))  # the make build is older
    code, _, err = run(["flash", "--board", "nucleo", "--port", "/dev/ttyACM9", "-o", str(project)], capsys)
    assert code == 0, err
    assert str(out / "firmware.elf") in calls(log)[0]


def test_flash_tool_failure_is_a_clean_error(tools, tmp_path, capsys):  # noqa: ANN001
    folder, log = tools
    stand_in(folder, "st-flash", log, 'echo "Error: no ST-LINK found" >&2; exit 1')
    project = tmp_path / "proj"
    make_layout(project)
    code, _, err = run(["flash", "--board", "nucleo", "--port", "/dev/ttyACM9", "-o", str(project)], capsys)
    assert_clean_error(code, err, "st-flash could not flash nucleo_f401re", "no ST-LINK found")


def test_flash_without_any_tool_is_a_clean_error(tools, tmp_path, capsys):  # noqa: ANN001
    project = tmp_path / "proj"
    make_layout(project)
    code, _, err = run(["flash", "--board", "nucleo", "--port", "/dev/ttyACM9", "-o", str(project)], capsys)
    assert_clean_error(code, err, "no flashing tool found")


# -- objcopy: the toolchain's own, found next to its gcc ------------------------------------------------

def test_objcopy_is_the_one_next_to_gcc_or_a_clear_error(tmp_path, monkeypatch):  # noqa: ANN001
    tc = tmp_path / "gcc-arm-12" / "bin"
    gcc = stand_in(tc, "arm-none-eabi-gcc", tmp_path / "log")
    objcopy = stand_in(tc, "arm-none-eabi-objcopy", tmp_path / "log")
    assert builder.objcopy_for(str(gcc)) == str(objcopy)
    objcopy.unlink()
    monkeypatch.setenv("PATH", str(tc))
    with pytest.raises(LwcnnError, match="arm-none-eabi-objcopy is neither next to .*gcc-arm-12/bin/arm-none-eabi-gcc"):
        builder.objcopy_for(str(gcc))
    elsewhere = stand_in(tmp_path / "other", "arm-none-eabi-objcopy", tmp_path / "log")
    monkeypatch.setenv("PATH", f"{tc}:{elsewhere.parent}")
    assert builder.objcopy_for(str(gcc)) == str(elsewhere)


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed (make setup installs it)")
def test_build_with_a_toolchain_under_a_folder_named_gcc(tmp_path, monkeypatch):  # noqa: ANN001
    """Regression: objcopy's path was the gcc path with every 'gcc' replaced, which breaks a toolchain
    installed under, say, /opt/gcc-arm-12/bin (it looked for /opt/objcopy-arm-12/bin/...)."""
    real_gcc, real_objcopy = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-objcopy")
    assert real_gcc and real_objcopy
    tc, log = tmp_path / "gcc-arm-12" / "bin", tmp_path / "calls.log"
    stand_in(tc, "arm-none-eabi-gcc", log, f'exec "{real_gcc}" "$@"')
    stand_in(tc, "arm-none-eabi-objcopy", log, f'exec "{real_objcopy}" "$@"')
    monkeypatch.setenv("PATH", f"{tc}{os.pathsep}{os.environ['PATH']}")
    b = builder.build("qemu-m4", "mnist", tmp_path / "fw")
    assert b.bin.stat().st_size > 0
    assert [c.split()[0] for c in calls(log)] == ["arm-none-eabi-gcc", "arm-none-eabi-objcopy"]
