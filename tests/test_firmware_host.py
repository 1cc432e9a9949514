"""The firmware's main loop (lwcnn_mcu/firmware/main.c) built for the host under AddressSanitizer, with a
pretend board on stdin/stdout and a pretend model (tests/c/fw_host/), driven by the bench host
over a pseudo-terminal: a model with more layers than one LAYERS_OK reply holds is profiled in
chunks, and the reply never writes past the firmware's reply buffer; an input and an output larger
than the protocol's buffers go in INPUT and OUTPUT chunks, and bad offsets are refused."""

from __future__ import annotations

import os
import struct
import subprocess
import time
import tty
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lwcnn_mcu import bench, builder, protocol
from lwcnn_mcu.hostrun import SANITIZE, STRICT, compiler

FW_HOST = Path(__file__).parent / "c" / "fw_host"
FW_SOURCES = ("main.c", "lw_proto.c")


def buffer_defines(layers: int, n_in: int = 16, n_out: int = 4) -> list[str]:
    """The protocol buffers the builder gives a real build of a model with this many layers."""
    fake = SimpleNamespace(graph=SimpleNamespace(input=SimpleNamespace(size=n_in), output=SimpleNamespace(size=n_out),
                                                 ops=[None] * layers))
    return builder.buffer_defines(fake)  # type: ignore[arg-type]


def define(defines: list[str], name: str) -> int:
    return next(int(d.split("=")[1]) for d in defines if d.startswith(f"-D{name}="))


def build_host_firmware(tmp: Path, layers: int, n_in: int = 16, n_out: int = 4) -> Path:
    """main.c + lw_proto.c + the host board and pretend model, buffers sized as for the target."""
    (tmp / "lw_proto_codes.h").write_text(protocol.c_header())
    defines = buffer_defines(layers, n_in, n_out) + [f"-DFAKE_INPUT={n_in}", f"-DFAKE_OUTPUT={n_out}"]
    exe = tmp / f"fw_host_{layers}_{n_in}_{n_out}"
    src = [str(builder.firmware_dir() / n) for n in FW_SOURCES] + [str(FW_HOST / "board_host.c"),
                                                                    str(FW_HOST / "fake_model.c")]
    r = subprocess.run([compiler(), *STRICT, *SANITIZE, "-g", "-O1", "-DLWCNN_HAVE_HOOKS", f"-DFAKE_LAYERS={layers}",
                        *defines, "-I", str(tmp), "-I", str(FW_HOST), "-I", str(builder.firmware_dir()), *src,
                        "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


class HostFirmware:
    """The host-built firmware behind a pseudo-terminal, as a board behind /dev/ttyACM0."""

    def __init__(self, exe: Path) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self.slave = slave
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0")
        self.proc = subprocess.Popen([str(exe)], stdin=self.master, stdout=self.master, stderr=subprocess.PIPE,
                                     env=env)

    def close(self) -> str:
        os.close(self.slave)
        os.close(self.master)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")


def under_sanitizers(fw, talk, *args) -> None:  # noqa: ANN001
    """Run the exchange, then check the firmware's sanitizer output before any failure of the exchange: the
    sanitizer's words say why the link died."""
    failure: BaseException | None = None
    try:
        talk(*args)
    except Exception as exc:
        failure = exc
    asan = fw.close()
    assert "AddressSanitizer" not in asan and "runtime error" not in asan, asan
    if failure is not None:
        raise failure


@pytest.mark.parametrize("layers", [300, 600, 5])
def test_layers_reply_never_overflows_and_is_read_in_chunks(layers, tmp_path):  # noqa: ANN001
    exe = build_host_firmware(tmp_path, layers)
    fw = HostFirmware(exe)
    under_sanitizers(fw, talk_to, fw, layers)


def talk_to(fw: HostFirmware, layers: int) -> None:
    port = bench.open_port(fw.path, retries=1)
    dev = bench.Device(port, timeout=2.0, retries=1)
    info = dev.wait_ready(10.0)
    assert (info.board, info.layers, info.input_size) == ("host", layers, 16)
    x = np.arange(16, dtype=np.int8)
    out, _, _ = dev.infer(x)
    assert out.tolist() == [int(np.int8(v ^ 0x55)) for v in range(4)]
    seq0 = dev.seq
    rows = dev.layers()
    assert rows == [(i + 1, i + 1) for i in range(layers)]  # every layer, each exactly once
    reply_max = define(buffer_defines(layers), "LW_REPLY_MAX")
    assert dev.seq - seq0 == -(-layers // (reply_max // 8))  # one request per chunk, no retry
    assert dev.stats.transport_errors == 0
    # a first layer past the model is refused with ERROR BAD_LAYER
    port.write(protocol.encode(protocol.MSG["LAYERS"], 0x77, struct.pack("<H", layers)))
    dec, frames, deadline = protocol.Decoder(), [], time.monotonic() + 5
    while not frames and time.monotonic() < deadline:
        frames = dec.feed(port.read(64))
    bad_layer = next(code for name, code, _ in protocol.ERRORS if name == "BAD_LAYER")
    assert frames == [protocol.Frame(protocol.MSG["ERROR"], 0x77, bytes([bad_layer, protocol.MSG["LAYERS"]]))]
    port.close()


def ask(port, msg: str, seq: int, payload: bytes = b"") -> protocol.Frame:  # noqa: ANN001
    """One raw request and the device's one reply."""
    port.write(protocol.encode(protocol.MSG[msg], seq, payload))
    dec, frames, deadline = protocol.Decoder(), [], time.monotonic() + 5
    while not frames and time.monotonic() < deadline:
        frames = dec.feed(port.read(4096))
    assert len(frames) == 1, frames
    assert frames[0].seq == seq
    return frames[0]


def error(name: str, msg: str) -> tuple[int, bytes]:
    code = next(c for n, c, _ in protocol.ERRORS if n == name)
    return protocol.MSG["ERROR"], bytes([code, protocol.MSG[msg]])


def test_input_and_output_larger_than_a_frame_go_in_chunks(tmp_path):  # noqa: ANN001
    n_in, n_out = 3000, 2500
    exe = build_host_firmware(tmp_path, 5, n_in, n_out)
    fw = HostFirmware(exe)
    under_sanitizers(fw, chunked_exchanges, fw, n_in, n_out)


def chunked_exchanges(fw: HostFirmware, n_in: int, n_out: int) -> None:
    defines = buffer_defines(5, n_in, n_out)
    rx_max, reply_max = define(defines, "LW_PROTO_RX_MAX"), define(defines, "LW_REPLY_MAX")
    assert rx_max == protocol.CHUNK + 4 < n_in and reply_max == protocol.CHUNK + 8 < n_out  # no buffer holds one
    port = bench.open_port(fw.path, retries=1)
    dev = bench.Device(port, timeout=2.0, retries=1)
    info = dev.wait_ready(10.0)
    assert (info.version, info.rx_max, info.reply_max, info.input_size, info.output_size) == (
        protocol.VERSION, rx_max, reply_max, n_in, n_out)

    def expect(x: np.ndarray) -> list[int]:
        return [int(np.int8(int(x[k % n_in]) ^ 0x55 ^ (k // n_in))) for k in range(n_out)]

    rng = np.random.default_rng(4)
    for i in range(3):
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        seq0 = dev.seq
        out, _, _ = dev.infer(x)
        assert out.tolist() == expect(x), i
        # 3 INPUT chunks, the INFER, then the 2,500 - 1,024 output bytes in 2 OUTPUT chunks: no retry
        assert (dev.seq - seq0) & 0xFF == 6 and dev.stats.transport_errors == 0
    assert (dev.stats.input_chunks, dev.stats.output_chunks) == (9, 6)
    assert dev.time_run(3)["k"] == 3 and len(dev.layers()) == 5  # on the staged input

    seq = 0x40

    def reply(msg: str, payload: bytes = b"") -> tuple[int, bytes]:
        nonlocal seq
        seq += 1
        f = ask(port, msg, seq, payload)
        return f.type, f.payload

    staged = lambda n: (protocol.MSG["INPUT_OK"], struct.pack("<I", n))  # noqa: E731
    # out of range: refused, nothing staged or run
    assert reply("INPUT", protocol.input_chunk(n_in - 10, b"\1" * 11)) == error("BAD_OFFSET", "INPUT")
    assert reply("INPUT", protocol.input_chunk(0xFFFFFFFF, b"\1" * 2)) == error("BAD_OFFSET", "INPUT")
    assert reply("INPUT", struct.pack("<I", 0)) == error("BAD_OFFSET", "INPUT")  # no byte
    assert reply("OUTPUT", protocol.output_request(n_out)) == error("BAD_OFFSET", "OUTPUT")
    assert reply("OUTPUT", b"\0\0") == error("BAD_OFFSET", "OUTPUT")
    # the last input is still there: TIME runs, OUTPUT reads the end of its output
    assert reply("TIME", struct.pack("<H", 1))[0] == protocol.MSG["TIME_OK"]
    t, p = reply("OUTPUT", protocol.output_request(n_out - 5))
    assert t == protocol.MSG["OUTPUT_OK"] and p == struct.pack("<I", n_out - 5) + bytes(
        np.array(expect(x)[-5:], np.int8).tobytes())
    # a new input begins at offset 0: the old one is gone (TIME, OUTPUT: NO_INPUT), a gap and an INFER
    # before every byte came are refused (INPUT_INCOMPLETE), a chunk sent again changes nothing
    assert reply("INPUT", protocol.input_chunk(0, b"\2" * 1000)) == staged(1000)
    assert reply("TIME", struct.pack("<H", 1)) == error("NO_INPUT", "TIME")
    assert reply("OUTPUT", protocol.output_request(0)) == error("NO_INPUT", "OUTPUT")
    assert reply("INFER") == error("INPUT_INCOMPLETE", "INFER")
    assert reply("INPUT", protocol.input_chunk(1001, b"\3")) == error("INPUT_INCOMPLETE", "INPUT")
    assert reply("INPUT", protocol.input_chunk(1000, b"\3" * 1020)) == staged(2020)
    assert reply("INPUT", protocol.input_chunk(1000, b"\3" * 1020)) == staged(2020)
    assert reply("INPUT", protocol.input_chunk(2020, b"\4" * 980)) == staged(n_in)
    t, p = reply("INFER")
    x = np.frombuffer(b"\2" * 1000 + b"\3" * 1020 + b"\4" * 980, np.int8)
    assert t == protocol.MSG["INFER_OK"] and p[8:] == bytes(np.array(expect(x)[:reply_max - 8], np.int8).tobytes())
    # a frame longer than the receive buffer: a whole input, or a chunk one byte too long
    assert reply("INFER", bytes(n_in)) == error("BAD_LENGTH", "INFER")
    assert reply("INPUT", protocol.input_chunk(0, bytes(rx_max - 3))) == error("BAD_LENGTH", "INPUT")
    assert reply("INFER", bytes(17)) == error("BAD_INPUT_SIZE", "INFER")

    # the host checks what the device says: a model whose input the device does not have is refused
    # at once (no retry changes BAD_OFFSET); a reply of another length than the device's buffers give
    dev.device_info = replace(info, input_size=n_in + 100)
    with pytest.raises(bench.TransportError, match="refused INPUT with ERROR BAD_OFFSET"):
        dev.infer(np.zeros(n_in + 100, np.int8))
    dev.device_info = replace(info, reply_max=reply_max - 1)
    with pytest.raises(bench.TransportError, match="INFER_OK of"):
        dev.infer(np.zeros(n_in, np.int8))
    dev.device_info = info
    x = rng.integers(-128, 128, n_in).astype(np.int8)
    assert dev.infer(x)[0].tolist() == expect(x)
    port.close()
