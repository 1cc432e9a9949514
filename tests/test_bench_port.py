"""``bench --port``: the path every real-board user takes, end to end.

* Against a simulated device in Python behind a pseudo-terminal (a board with a DWT cycle counter,
  as a Nucleo on /dev/ttyACM0): the report's cycles, latency and clock; READY at every point of the
  run; a wrong output (exit 1); and every transport condition ending in exit 1 or 2, never 3.
* Against the emulated boards started by ``lwcnn-mcu flash`` (the README's flash-then-bench flow),
  directly, with the board reset in the middle of INFO, of a LAYERS reply and of the TIME run, and
  through a proxy that damages both directions; a 96x96x3 model, whose input and output go in INPUT
  and OUTPUT chunks, reset in the middle of both and over a damaged link.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lwcnn_mcu import bench, models, protocol
from tests.conftest import HAVE_ARM, keras_96x96
from tests.linkproxy import LinkProxy
from tests.test_errors import run

P = protocol.MSG
NAMES = {code: name for name, code in P.items()}
HAVE_MNIST = models.shipped_path("mnist").is_file()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="needs the shipped mnist model")
needs_qemu = pytest.mark.skipif(not HAVE_ARM or shutil.which("qemu-system-arm") is None,
                                reason="needs arm-none-eabi-gcc and qemu-system-arm (make setup)")


# --------------------------------------------------------------------------------------------------
# A simulated device behind a pseudo-terminal
# --------------------------------------------------------------------------------------------------

Script = Callable[[str, int], "str | None"]


class SimDevice:
    """Speaks the protocol like the firmware, behind a pseudo-terminal: outputs from the host-built C,
    a DWT-like cycle counter at 84 MHz, LAYERS in chunks of ``per_reply`` layers. ``script(request,
    k)`` (the k-th request of that kind, 1-based) may return an action instead of the normal answer:

    boot / reset   send selftest text and READY, forget the input, do not answer
    lost_reset     forget the input silently (a reset whose READY was lost), do not answer
    silent         do not answer                   close   close the device
    garbage        answer with random bytes         error   answer ERROR BAD_CRC
    no_input       answer ERROR NO_INPUT            short   answer with a truncated payload
    wrong          answer INFER with one output byte changed
    extra          answer LAYERS with more layers than the model has
    bad_ready      a READY whose payload is malformed, then the normal answer
    new_model      reset, and come back with another model
    """

    CLOCK = 84_000_000

    def __init__(self, host_model: Any, model_hash: str, n_layers: int, script: Script | None = None,
                 per_reply: int = 3) -> None:
        self.host, self.hash, self.n_layers, self.per_reply = host_model, model_hash, n_layers, per_reply
        self.script = script or (lambda name, k: None)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.counts: dict[str, int] = {}
        self.received: list[bytes] = []  # every INFER payload
        self.last: bytes | None = None
        self.closed = False
        self.stop = False
        self.rng = np.random.default_rng(0)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        for fd in (self.slave, self.master):
            if fd >= 0:
                os.close(fd)

    def _info(self) -> bytes:
        return (struct.pack("<BBHIIIII", 1, 0, 0, self.CLOCK, 7840, self.host.in_size, self.host.out_size,
                            self.n_layers) + b"nucleo_f401re\0sim-fw 1\0" + self.hash.encode() + b"\0")

    def _send(self, t: int, seq: int, payload: bytes = b"") -> None:
        os.write(self.master, protocol.encode(t, seq, payload))

    def _reset(self) -> None:
        self.last = None
        os.write(self.master, b"\nLWCNN READY board=nucleo_f401re\nDONE\n")
        self._send(P["READY"], 0, self._info())

    def _serve(self) -> None:
        dec = protocol.Decoder()
        while not self.stop and not self.closed:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for f in dec.feed(data):
                self._handle(f)

    def _handle(self, f: protocol.Frame) -> None:
        name = NAMES.get(f.type, "?")
        self.counts[name] = k = self.counts.get(name, 0) + 1
        if name == "INFER":
            self.received.append(f.payload)  # answered or not
        action = self.script(name, k)
        if action in ("boot", "reset"):
            self._reset()
            return
        if action == "new_model":
            self.hash = "f" * 64
            self._reset()
            return
        if action == "lost_reset":
            self.last = None
            return
        if action == "silent":
            return
        if action == "close":  # as a USB serial adapter pulled out
            self.closed = True
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = -1
            return
        if action == "garbage":
            os.write(self.master, bytes(self.rng.integers(0, 256, 64, dtype=np.uint8)))
            return
        if action == "error":
            self._send(P["ERROR"], f.seq, bytes([1, f.type]))
            return
        if action == "no_input":
            self._send(P["ERROR"], f.seq, bytes([6, f.type]))
            return
        if action == "bad_ready":
            self._send(P["READY"], 0, b"\x01\x00")
        reply = self._answer(name, f)
        if reply is None:
            return
        t, payload = reply
        if action == "short":
            payload = payload[: min(len(payload) // 2, 20)]
        self._send(t, f.seq, payload)

    def _answer(self, name: str, f: protocol.Frame) -> tuple[int, bytes] | None:
        if name == "INFO":
            return P["INFO_OK"], self._info()
        if name == "INFER":
            self.last = f.payload
            out = self.host.run(np.frombuffer(f.payload, np.int8)[None])[0].copy()
            if self.script("INFER", self.counts["INFER"]) == "wrong":
                out[0] ^= 0x40
            cycles = 200_000 + sum(f.payload) % 1000
            return P["INFER_OK"], struct.pack("<II", cycles, cycles // 8) + out.tobytes()
        if self.last is None and name in ("TIME", "LAYERS"):
            return P["ERROR"], bytes([6, f.type])
        if name == "TIME":
            (k,) = struct.unpack("<H", f.payload[:2])
            return P["TIME_OK"], struct.pack("<IIIII", k, 200_500 * k, 25_000 * k, 25_000, 25_000)
        if name == "LAYERS":
            first = struct.unpack("<H", f.payload[:2])[0] if len(f.payload) >= 2 else 0
            n = min(self.per_reply, self.n_layers - first)
            if self.script("LAYERS", self.counts["LAYERS"]) == "extra":
                n = self.n_layers + 1
            return P["LAYERS_OK"], b"".join(struct.pack("<II", 1000 + i, 125 + i) for i in range(first, first + n))
        return P["ERROR"], bytes([3, f.type])


@pytest.fixture(scope="module")
def mnist_c() -> Any:
    from lwcnn_mcu import compiler, hostrun

    c = compiler.compile_model("mnist")
    return c, hostrun.build_host(c.gen.files)


@pytest.fixture
def sim(mnist_c) -> Iterator[Callable[..., SimDevice]]:  # noqa: ANN001
    c, host = mnist_c
    made: list[SimDevice] = []

    def make(script: Script | None = None, per_reply: int = 3) -> SimDevice:
        made.append(SimDevice(host, c.graph.model_hash, len(c.graph.ops), script, per_reply))
        return made[-1]

    yield make
    for d in made:
        d.close()


def bench_cli(port: str, capsys: Any, samples: int = 10, *extra: str, timeout: float = 0.3) -> tuple[int, Any, str]:
    code, out, err = run(["bench", "--port", port, "--model", "mnist", "--dataset", "mnist", "--samples",
                          str(samples), "--json", "--no-save", "--timeout", str(timeout), *extra], capsys)
    return code, (json.loads(out) if out.strip() else None), err


def script_of(table: dict[tuple[str, int], str], default: dict[str, Callable[[int], str | None]] | None = None
              ) -> Script:
    def script(name: str, k: int) -> str | None:
        if (name, k) in table:
            return table[(name, k)]
        if default and name in default:
            return default[name](k)
        return None

    return script


@needs_mnist
def test_port_dwt_device_reports_cycles_latency_and_clock(sim, capsys):  # noqa: ANN001
    """A board like a Nucleo after `flash`: its boot READY arrives while the host waits for INFO."""
    dev = sim(script_of({("INFO", 1): "boot"}))
    code, r, err = bench_cli(dev.path, capsys, 12, "--layers")
    assert code == 0, err
    assert r["unit"] == "cycles" and "instructions" not in r and not r["emulated"]
    assert r["clock_hz"] == SimDevice.CLOCK
    assert set(r["cycles"]) == set(r["latency_ms"]) == {"min", "median", "p99", "max"}
    assert 200_000 <= r["cycles"]["min"] <= r["cycles"]["max"] < 201_000
    for k, v in r["cycles"].items():
        assert r["latency_ms"][k] == pytest.approx(v / SimDevice.CLOCK * 1000)
    assert r["timing_run"] == {"inferences": 10, "cycles_mean": 200_500}
    assert [x["cycles"] for x in r["layers"]] == [1000 + i for i in range(dev.n_layers)]  # read in chunks of 3
    assert r["agree_with_host"] == r["samples"] == 12 and r["accuracy"] == r["host_accuracy"]
    tr = r["transport"]
    assert (tr["boot_ready"], tr["device_resets"], r["transport_errors"], tr["retries"]) == (1, 0, 0, 0)
    assert r["device_board"] == "nucleo_f401re" and r["board"] == "nucleo_f401re"


@needs_mnist
def test_port_ready_at_every_point_resumes_where_it_was(sim, capsys):  # noqa: ANN001
    """Boot READY during INFO; resets during INFER (twice in a row on one input), TIME and the 2nd
    LAYERS chunk; a reset whose READY is lost before the 3rd chunk: the run completes, the same
    input again each time, the device's input restored before TIME and LAYERS."""
    dev = sim(script_of({("INFO", 1): "boot", ("INFER", 4): "reset", ("INFER", 5): "reset", ("TIME", 1): "reset",
                         ("LAYERS", 2): "reset", ("LAYERS", 4): "lost_reset"}))
    code, r, err = bench_cli(dev.path, capsys, 8, "--layers")
    assert code == 0, err
    assert r["agree_with_host"] == r["samples"] == 8
    tr = r["transport"]
    assert (tr["boot_ready"], tr["device_resets"], tr["input_lost"]) == (1, 4, 1)
    got = dev.received
    assert got[3] == got[4] == got[5] != got[2] and len(set(got[:10])) == 8  # input 3 three times
    # then the last input again: before TIME, before LAYERS chunk 2 and after the lost reset
    assert got[10:] == [got[9]] * 3
    assert [x["cycles"] for x in r["layers"]] == [1000 + i for i in range(dev.n_layers)]


@needs_mnist
def test_port_wrong_output_exits_1(sim, capsys):  # noqa: ANN001
    """Exit 1 (README: a comparison found a mismatch): one on-target output differs from the host C."""
    dev = sim(script_of({("INFER", 3): "wrong"}))
    code, r, err = bench_cli(dev.path, capsys, 6)
    assert code == 1, err
    assert r["agree_with_host"] == 5 and r["samples"] == 6 and r["first_mismatch"] == 2
    assert "internal error" not in err and "Traceback" not in err


@needs_mnist
def test_port_resets_in_a_row_stop_with_the_figures_so_far(sim, capsys):  # noqa: ANN001
    dev = sim(script_of({}, {"INFER": lambda k: "reset" if k >= 4 else None}))
    code, r, err = bench_cli(dev.path, capsys, 10)
    assert code == 2 and "internal error" not in err and "Traceback" not in err
    assert "reset 4 times in a row" in " ".join(err.split()) and "stopped at input 3" in " ".join(err.split())
    assert r["samples"] == r["agree_with_host"] == 3 and r["samples_requested"] == 10
    assert "stopped" in r and r["transport"]["device_resets"] == 4 and r["cycles"]["median"] > 0


#: (script, expected exit code, words of the message): transport conditions and misbehaving devices
CONDITIONS: dict[str, tuple[Script, int, str]] = {
    "silent": (script_of({}, {"INFO": lambda k: "silent"}), 2, "cannot talk to the device"),
    "garbage": (script_of({}, {"INFO": lambda k: "garbage"}), 2, "no valid reply"),
    "closes mid-run": (script_of({("INFER", 3): "close"}), 2, "serial link failed"),
    "malformed INFO": (script_of({}, {"INFO": lambda k: "short"}), 2, "malformed INFO"),
    "short INFER_OK": (script_of({("INFER", 2): "short"}), 2, "INFER_OK of"),
    "ERROR to everything": (script_of({}, {"INFER": lambda k: "error"}), 2, "no valid reply"),
    "another model after a reset": (script_of({("INFER", 3): "new_model"}), 2, "came back from a reset with model"),
    "short TIME_OK": (script_of({}, {"TIME": lambda k: "short"}), 2, "TIME_OK of"),
    "too many layers": (script_of({}, {"LAYERS": lambda k: "extra"}), 2, "LAYERS_OK of"),
    "NO_INPUT forever": (script_of({}, {"TIME": lambda k: "no_input"}), 2, "in a row"),
    "READY forever": (script_of({}, {"INFO": lambda k: "reset"}), 2, "in a row"),
    "malformed READY": (script_of({("INFER", 2): "bad_ready"}), 0, ""),
    "wrong output": (script_of({("INFER", 2): "wrong"}), 1, ""),
}


@needs_mnist
@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_no_transport_condition_is_an_internal_error(condition, sim, capsys):  # noqa: ANN001
    script, want, words = CONDITIONS[condition]
    dev = sim(script)
    code, r, err = bench_cli(dev.path, capsys, 4, "--layers", timeout=0.2)
    assert code == want, err
    assert "internal error" not in err and "Traceback" not in err
    text = " ".join(err.split())
    assert words in text, text
    if r is not None and code == 2:
        assert r["stopped"] and r["samples"] <= r["samples_requested"]


# --------------------------------------------------------------------------------------------------
# The README's flow: build, flash (an emulated board on a TCP port), bench --port
# --------------------------------------------------------------------------------------------------

BOARDS = {"qemu-m4": [], "qemu-stm32f4": [], "nucleo": ["--emulate"]}


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> Callable[[str], Path]:  # noqa: ANN001
    built: dict[str, Path] = {}

    def get(board: str) -> Path:
        if board not in built:
            from lwcnn_mcu import builder

            out = tmp_path_factory.mktemp(f"fw-{board}") / "build"
            builder.build(board, "mnist", out)
            built[board] = out
        return built[board]

    return get


#: boot READYs counted when the host connects to an emulated board as it boots: pyserial's socket://
#: open discards whatever arrived before it returns, so on a loaded host the boot READY may be lost
#: there (harmless: the host asks INFO anyway), never counted as a reset
BOOT_READY = (0, 1)


class Flasher:
    """`lwcnn-mcu flash --board B` in the background (flash and its QEMU in their own process group)."""

    def __init__(self, firmware: Callable[[str], Path], logs: Path) -> None:
        self.firmware, self.logs = firmware, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, board: str) -> str:
        """Start the board; gives socket://127.0.0.1:PORT once QEMU listens (it boots on connect)."""
        tcp = bench._free_port()
        log = self.logs / f"flash-{board}-{tcp}.log"
        with open(log, "wb") as f:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "lwcnn_mcu", "flash", "--board", board, "-o", str(self.firmware(board)),
                 "--tcp-port", str(tcp), *BOARDS[board]], stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                start_new_session=True))
        deadline = time.monotonic() + 60
        while b"waiting for connection" not in log.read_bytes():
            assert self.procs[-1].poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        return f"socket://127.0.0.1:{tcp}"

    def stop(self) -> None:
        for p in self.procs:  # only the process groups started here
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def flasher(firmware, tmp_path) -> Iterator[Flasher]:  # noqa: ANN001
    f = Flasher(firmware, tmp_path)
    yield f
    f.stop()


@pytest.fixture
def flashed(flasher) -> Callable[[str], str]:  # noqa: ANN001
    return flasher.start


def check_run(r: dict[str, Any], samples: int) -> None:
    assert r["agree_with_host"] == r["samples"] == samples  # every recorded output equals the host C
    assert r["accuracy"] == r["host_accuracy"]
    assert r["unit"] == "instructions" and set(r["instructions"]) == {"min", "median", "p99", "max"}
    assert 0.5 < r["instructions_per_mac"] < 60 and "cycles" not in r
    assert len(r["layers"]) > 2 and all(x["instructions"] >= 0 for x in r["layers"])
    assert 0.9 < sum(x["instructions"] for x in r["layers"]) / r["instructions"]["median"] < 1.05


@needs_qemu
@needs_mnist
@pytest.mark.parametrize("board", list(BOARDS))
def test_flash_then_bench_port(board, flashed, capsys):  # noqa: ANN001
    url = flashed(board)
    code, r, err = bench_cli(url, capsys, 20, "--layers", timeout=5)
    assert code == 0, err
    check_run(r, 20)
    tr = r["transport"]
    assert tr["boot_ready"] in BOOT_READY and (tr["device_resets"], r["transport_errors"], tr["retries"]) == (0, 0, 0)
    # the board keeps running after the host leaves: a second bench finds it up (no READY this time)
    code, r2, err = bench_cli(url, capsys, 5, timeout=5)
    assert code == 0, err
    assert r2["agree_with_host"] == 5 and r2["transport"]["boot_ready"] == 0


RESETS = {"INFO": (("INFO", 1),), "LAYERS": (("LAYERS", 1),), "TIME": (("TIME", 1),),
          "all three": (("INFO", 1), ("TIME", 1), ("LAYERS", 1))}


@needs_qemu
@needs_mnist
@pytest.mark.parametrize(("board", "where"), [("qemu-m4", "INFO"), ("qemu-m4", "LAYERS"), ("qemu-m4", "TIME"),
                                               ("nucleo", "all three")])
def test_port_board_reset_mid_request(board, where, flashed, capsys):  # noqa: ANN001
    """The board resets while it answers INFO, a LAYERS request or a TIME run (its reply cut in the
    middle): the host reads INFO again, checks the model, gives the board its input back and
    resumes; the report counts each reset."""
    proxy = LinkProxy(flashed(board), resets=RESETS[where])
    try:
        code, r, err = bench_cli(proxy.url, capsys, 12, "--layers", timeout=5)
    finally:
        proxy.close()
    assert code == 0, err
    assert sorted(proxy.injected) == sorted(w for w, _ in RESETS[where])
    check_run(r, 12)
    tr = r["transport"]
    assert tr["boot_ready"] in BOOT_READY and (tr["device_resets"], tr["input_lost"]) == (len(RESETS[where]), 0)
    assert r["timing_run"]["inferences"] == 10


@needs_qemu
@needs_mnist
@pytest.mark.parametrize("board", ["qemu-m4", "nucleo"])
def test_port_damaged_link_and_resets(board, flashed, capsys):  # noqa: ANN001
    """Bit flips, dropped bytes, garbage and stalls of up to 0.4 s on about 4% of the chunks in both
    directions, and the board reset during INFO, TIME and LAYERS: the run completes, every recorded
    output equals the host C, and the damage shows in the counts."""
    proxy = LinkProxy(flashed(board), faults=0.04, seed=7, resets=RESETS["all three"])
    try:
        code, r, err = bench_cli(proxy.url, capsys, 40, "--layers", timeout=1.0)
    finally:
        proxy.close()
    assert code == 0, err
    check_run(r, 40)
    assert proxy.damaged > 0 and all(proxy.counts[f"{d}_{k}"] > 0 for d in ("h2d", "d2h")
                                     for k in ("flip", "drop", "garbage", "stall"))
    tr = r["transport"]
    assert r["transport_errors"] > 0 and tr["retries"] > 0
    # a reset shows as a READY, or as a lost input when the damage ate the READY
    assert tr["device_resets"] + tr["input_lost"] >= 1


@needs_qemu
@needs_mnist
def test_port_board_gone_mid_run_stops_cleanly(flasher, capsys):  # noqa: ANN001
    """`flash` stopped (QEMU gone, the socket closed) in the middle of a run: exit 2, the figures of
    the inputs done, never an internal error."""
    proxy = LinkProxy(flasher.start("qemu-m4"))  # a clean link, to see how far the run got

    def stop_when_running() -> None:
        deadline = time.monotonic() + 120
        while proxy.seen.get("INFER", 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        flasher.stop()

    threading.Thread(target=stop_when_running, daemon=True).start()
    try:
        code, r, err = bench_cli(proxy.url, capsys, 2000, timeout=1)
    finally:
        proxy.close()
    assert code == 2 and "internal error" not in err and "Traceback" not in err
    assert "serial link failed" in " ".join(err.split())
    assert 0 < r["samples"] < 2000 and r["agree_with_host"] == r["samples"] and r["stopped"]


def test_flash_emulate_needs_an_emulated_board(tmp_path, capsys):  # noqa: ANN001
    code, _, err = run(["flash", "--board", "nucleo_l4r5zi", "--emulate", "-o", str(tmp_path)], capsys)
    assert code == 2 and "has no emulator" in err and "Traceback" not in err


@needs_qemu
@needs_mnist
@pytest.mark.skipif(not os.environ.get("LWCNN_DATASETS"), reason="needs the offline datasets")
@pytest.mark.parametrize("board", ["qemu-m4", "nucleo"])
def test_two_models_in_one_firmware_selected_by_name(board, tmp_path, capsys):  # noqa: ANN001
    """`build --model mnist --model cifar10`: one firmware, one shared arena of the larger size; bench
    --model selects each over the protocol (SELECT), every output equal to the host C."""
    out = tmp_path / "two"
    code, _, err = run(["build", "--board", board, "--model", "mnist", "--model", "cifar10", "-o", str(out),
                        "--json"], capsys)
    assert code == 0, err
    f = Flasher(lambda _b: out, tmp_path)
    try:
        url = f.start(board)
        for name in ("cifar10", "mnist", "cifar10"):
            code, o, err = run(["bench", "--port", url, "--model", name, "--dataset", name, "--samples", "6",
                                "--json", "--no-save", "--timeout", "5"], capsys)
            assert code == 0, err
            r = json.loads(o)
            assert r["agree_with_host"] == r["samples"] == 6, (name, r)
    finally:
        f.stop()
    info = protocol.DeviceInfo.parse(
        struct.pack("<BBHIIIII", 1, 1, 0, 1, 2, 3, 4, 5) + b"b\0fw\0" + b"0" * 64 + b"\0mnist\0mnist,cifar10\0")
    assert (info.model, info.models) == ("mnist", ("mnist", "cifar10"))


@needs_qemu
@needs_mnist
@pytest.mark.skipif(not os.environ.get("LWCNN_DATASETS"), reason="needs the offline datasets")
def test_arena_in_another_ram_region(tmp_path, capsys):  # noqa: ANN001
    """`build --arena REGION` links the arena into a board's extra RAM: the F405's CCM (0x10000000; QEMU 7.2
    does not model it, so that image is checked at link time) and the MPS2 board's PSRAM (0x21000000),
    where the image runs with every output equal to the host C."""
    from elftools.elf.elffile import ELFFile

    def arena_address(elf: str) -> int:
        with open(elf, "rb") as fh:
            syms = ELFFile(fh).get_section_by_name(".symtab").iter_symbols()
            return int(next(s for s in syms if s.name == "lw_arena")["st_value"])

    for board, region, base in (("qemu-stm32f4", "ccm", 0x10000000), ("qemu-m4", "psram", 0x21000000)):
        out = tmp_path / region
        code, o, err = run(["build", "--board", board, "--arena", region, "-o", str(out), "--json"], capsys)
        assert code == 0, err
        assert base <= arena_address(json.loads(o)["elf"]) < base + 0x10000
    f = Flasher(lambda _b: tmp_path / "psram", tmp_path)
    try:
        code, o, err = run(["bench", "--port", f.start("qemu-m4"), "--model", "mnist", "--dataset", "mnist",
                            "--samples", "6", "--json", "--no-save", "--timeout", "5"], capsys)
        assert code == 0, err
        assert json.loads(o)["agree_with_host"] == 6
    finally:
        f.stop()
    code, _, err = run(["build", "--board", "nucleo", "--arena", "ccm", "-o", str(tmp_path / "no")], capsys)
    assert code == 2 and "has no such RAM region" in err and not (tmp_path / "no").exists()


@pytest.fixture(scope="module")
def firmware_96x96(keras, tmp_path_factory) -> tuple[str, Path]:  # noqa: ANN001
    """A 96x96x3 model (27,648 B input, 1,200 B output) and its qemu-m4 firmware."""
    from lwcnn_mcu import builder

    d = tmp_path_factory.mktemp("fw96")
    model = keras_96x96(keras, d)
    builder.build("qemu-m4", model, d / "build")
    return model, d / "build"


@needs_qemu
@pytest.mark.parametrize("faults", [0.0, 0.02])
def test_port_chunked_input_and_output_through_resets_and_damage(faults, firmware_96x96, tmp_path,
                                                                 capsys):  # noqa: ANN001
    """`bench --port` of a 96x96x3 model on the flashed qemu-m4: the board reset in the middle of staging
    an input (its 40th INPUT chunk), while the host reads an output (the 2nd OUTPUT chunk) and during
    the TIME run; on a clean link and with bit flips, dropped bytes, garbage and stalls on 2% of the
    chunks. The host stages the input again from its first byte after each reset (a lost READY shows
    as INPUT_INCOMPLETE or NO_INPUT) and every recorded output equals the host C."""
    from lwcnn_mcu import protocol as proto

    model, fw = firmware_96x96
    f = Flasher(lambda _b: fw, tmp_path)
    resets = (("INPUT", 40), ("OUTPUT", 2), ("TIME", 1))
    try:
        proxy = LinkProxy(f.start("qemu-m4"), faults=faults, seed=3, resets=resets)
        try:
            code, o, err = run(["bench", "--port", proxy.url, "--model", model, "--samples", "5", "--layers",
                                "--json", "--no-save", "--timeout", "2" if faults else "10"], capsys)
        finally:
            proxy.close()
    finally:
        f.stop()
    assert code == 0, err + o
    r = json.loads(o)
    assert r["agree_with_host"] == r["samples"] == 5 and len(r["layers"]) == 5
    assert sorted(proxy.injected) == sorted(w for w, _ in resets)
    tr = r["transport"]
    per_input = -(-27_648 // proto.CHUNK)
    # 5 inputs, chunks 1-12 of input 1 before its 13th (the 40th) was cut, and the OUTPUT read of the
    # input TIME restores
    assert tr["input_chunks"] >= 5 * per_input + 39 - per_input and tr["output_chunks"] >= 5 + 1
    if not faults:
        # (a reply cut by a reset counts as a CRC error, nothing else goes wrong on a clean link)
        assert tr["boot_ready"] in BOOT_READY and (tr["device_resets"], tr["input_lost"], tr["timeouts"],
                                                   tr["device_errors"], tr["retries"]) == (3, 0, 0, 0, 0), tr
        # input 1 staged again from offset 0 after the INPUT and the OUTPUT reset, input 4 before TIME
        assert tr["input_chunks"] == 5 * per_input + (39 - per_input) + 2 * per_input
        assert tr["output_chunks"] == 5 + 1
    else:
        assert proxy.damaged > 0 and r["transport_errors"] > 0 and tr["retries"] > 0
        assert tr["device_resets"] + tr["input_lost"] >= 1
