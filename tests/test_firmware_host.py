"""The firmware's main loop (lwcnn_mcu/firmware/main.c) built for the host under AddressSanitizer, with a
pretend board on stdin/stdout and a pretend model (tests/c/fw_host/), driven by the bench host
over a pseudo-terminal: a model with more layers than one LAYERS_OK reply holds is profiled in
chunks, and the reply never writes past the firmware's reply buffer."""

from __future__ import annotations

import os
import struct
import subprocess
import time
import tty
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lwcnn_mcu import bench, builder, protocol
from lwcnn_mcu.hostrun import SANITIZE, STRICT, compiler

FW_HOST = Path(__file__).parent / "c" / "fw_host"
FW_SOURCES = ("main.c", "lw_proto.c")


def buffer_defines(layers: int) -> list[str]:
    """The protocol buffers the builder gives a real build of a model with this many layers."""
    fake = SimpleNamespace(graph=SimpleNamespace(input=SimpleNamespace(size=16), output=SimpleNamespace(size=4),
                                                 ops=[None] * layers))
    return builder.buffer_defines(fake)  # type: ignore[arg-type]


def build_host_firmware(tmp: Path, layers: int) -> Path:
    """main.c + lw_proto.c + the host board and pretend model, buffers sized as for the target."""
    (tmp / "lw_proto_codes.h").write_text(protocol.c_header())
    defines = buffer_defines(layers)
    exe = tmp / f"fw_host_{layers}"
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


@pytest.mark.parametrize("layers", [300, 600, 5])
def test_layers_reply_never_overflows_and_is_read_in_chunks(layers, tmp_path):  # noqa: ANN001
    exe = build_host_firmware(tmp_path, layers)
    fw = HostFirmware(exe)
    failure: BaseException | None = None
    try:
        talk_to(fw, layers)
    except Exception as exc:  # report the sanitizer's words first: they say why the link died
        failure = exc
    asan = fw.close()
    assert "AddressSanitizer" not in asan and "runtime error" not in asan, asan
    if failure is not None:
        raise failure


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
    reply_max = next(int(d.split("=")[1]) for d in buffer_defines(layers) if d.startswith("-DLW_REPLY_MAX="))
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
