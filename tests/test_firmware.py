"""Firmware: builds for every board in the registry, boots on the emulated boards (the Nucleo
image on netduinoplus2) with outputs equal to the host-built C, refuses models that do not fit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lwcnn_mcu import boards, builder, emulator, hostrun
from tests.conftest import HAVE_ARM, randomize
from tests.test_errors import assert_clean_error, convert, run

HAVE_QEMU = shutil.which("qemu-system-arm") is not None
pytestmark = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed (make setup installs it)")


@pytest.fixture(scope="module")
def model_path(keras, tmp_path_factory):  # noqa: ANN001, ANN201
    L = keras.layers
    inp = keras.Input((28, 28, 1), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D()(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(12, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, L.Dense(10, activation="softmax")(x))
    randomize(m, seed=3)
    p = tmp_path_factory.mktemp("fw") / "small.tflite"
    p.write_bytes(convert(m))
    return p


def test_boards_command_prints_every_name_and_alias_whole_at_80_columns(capsys, monkeypatch):  # noqa: ANN001
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(["boards"], capsys)
    assert code == 0
    for name in boards.BOARDS:
        assert f" {name} " in out
    for alias in boards.ALIASES:
        assert f"(alias {alias})" in out
    code, out, _ = run(["boards", "--json"], capsys)
    assert {r["name"] for r in json.loads(out)["boards"]} == set(boards.BOARDS)


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_build_every_board(name, model_path, tmp_path):  # noqa: ANN001
    from elftools.elf.elffile import ELFFile

    b = builder.build(name, str(model_path), tmp_path / name)
    board = boards.BOARDS[name]
    with b.elf.open("rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == "EM_ARM"
        vt = elf.get_section_by_name(".isr_vector")
        assert vt["sh_addr"] == board.flash_origin
        words = np.frombuffer(vt.data()[:8], "<u4")
        assert words[0] == board.ram_origin + board.ram_bytes  # initial stack pointer: top of RAM
        assert words[1] & 1  # reset handler in Thumb state
    assert 0 < b.flash_bytes <= board.flash_bytes and 0 < b.ram_bytes <= board.ram_bytes
    assert b.bin.stat().st_size > 0
    if board.pio_board:
        assert f"board = {board.pio_board}" in (b.project / "platformio.ini").read_text()


@pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-arm is not installed")
@pytest.mark.parametrize("name", ["qemu-m4", "nucleo", "qemu-stm32f4"])
def test_emulated_outputs_equal_host(name, model_path, tmp_path):  # noqa: ANN001
    b = builder.build(name, str(model_path), tmp_path / "p", n_tests=5)
    st = emulator.run_selftest(b.board, b.elf)
    host = hostrun.build_host(b.compiled.gen.files).run(b.test_inputs)
    assert st.banner.startswith(f"LWCNN READY board={b.board.name} model={b.compiled.graph.model_hash[:16]}")
    assert st.outputs.shape == host.shape and np.array_equal(st.outputs, host)
    assert all(n > 100_000 for n in st.instructions)
    # deterministic: the same image gives the same counts again
    assert emulator.run_selftest(b.board, b.elf).ticks == st.ticks


def test_too_big_for_nucleo_is_refused(keras, tmp_path, capsys):  # noqa: ANN001
    inp = keras.Input((28, 28, 1), batch_size=1)
    m = keras.Model(inp, keras.layers.Dense(800)(keras.layers.Flatten()(inp)))  # 628 k weights > 512 KB flash
    p = tmp_path / "big.tflite"
    p.write_bytes(convert(m))
    out = tmp_path / "proj"
    code, _, err = run(["build", "--board", "nucleo", "--model", str(p), "-o", str(out)], capsys)
    assert_clean_error(code, err, "does not fit nucleo_f401re", "flash", "of 524,288 B")
    assert not out.exists()


def test_unknown_board(capsys):  # noqa: ANN001
    code, _, err = run(["build", "--board", "arduino"], capsys)
    assert_clean_error(code, err, "unknown board 'arduino'", "qemu-m4")


def test_flash_without_board_is_clear(model_path, tmp_path, capsys):  # noqa: ANN001
    code, _, err = run(["flash", "--board", "nucleo", "-o", str(tmp_path / "none")], capsys)
    assert_clean_error(code, err, "no firmware in", "lwcnn-mcu build --board nucleo_f401re")


PIO = shutil.which("pio") or (str(Path(sys.executable).with_name("pio"))
                               if Path(sys.executable).with_name("pio").exists() else None)


@pytest.mark.skipif(PIO is None, reason="PlatformIO is not installed (it is in the dev extras)")
def test_platformio_project_config(model_path, tmp_path):  # noqa: ANN001
    b = builder.build("nucleo", str(model_path), tmp_path / "p")
    pio = PIO
    assert pio is not None
    r = subprocess.run([pio, "project", "config", "-d", str(b.project)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "env:nucleo_f401re" in r.stdout and "ststm32" in r.stdout
