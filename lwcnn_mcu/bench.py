"""``lwcnn-mcu bench``: latency and on-target accuracy over a serial port (or an emulated board).

The host streams test inputs to the firmware (protocol: docs/protocol.md), checks every output
against the host-built C byte for byte, and collects the device's own count of each inference
(DWT cycles on a real board; instructions on an emulated one, from SysTick under
``-icount shift=0``). Transport faults are retried and counted; a reply is only recorded when
its CRC is good and its sequence number matches the request.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lwcnn_mcu import __version__, boards, emulator, protocol
from lwcnn_mcu.errors import LwcnnError, MismatchError

P = protocol.MSG
_ERR = {name: code for name, code, _ in protocol.ERRORS}
#: ERROR replies that mean the device lost its input (it reset and its READY never arrived): recovered
#: like a READY, then the input is sent again from its first byte
_INPUT_LOST = {_ERR["NO_INPUT"], _ERR["INPUT_INCOMPLETE"]}
#: ERROR replies no retry can change (the frame arrived intact): the run stops at once
_REFUSED = {_ERR["BAD_OFFSET"]}


class TransportError(Exception):
    """The link failed: no valid reply after the retries, the port closed, or a reply that breaks the
    protocol. Stops the run (exit 2), never an internal error."""


class TooManyResets(TransportError):
    pass


class WrongModel(Exception):
    """The device runs another model than the one the host compiled (first contact or after a reset)."""


class BenchStopped(LwcnnError):
    """The run stopped early (the link failed, too many resets, another model after a reset); carries
    the report of what was measured before (exit 2, or 1 when a recorded output differs)."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class DeviceReset(Exception):
    """A READY frame arrived while a request was waiting: the device booted or reset."""

    def __init__(self, info: protocol.DeviceInfo | None) -> None:
        super().__init__("device reset")
        self.info = info


class InputLost(Exception):
    """The device answered with ERROR NO_INPUT (TIME, LAYERS, OUTPUT) or INPUT_INCOMPLETE (INPUT, INFER of
    the staged input): it reset and its READY was lost."""


#: Recovery rules (docs/protocol.md, "Host behaviour"): attempts per request after the first, and how
#: many READY frames (or lost inputs) in a row, with no INFER/TIME/LAYERS completed in between, stop a run.
RETRIES = 8
RESETS_IN_ROW = 3


@dataclass
class Stats:
    crc_errors: int = 0
    timeouts: int = 0
    retries: int = 0
    device_errors: int = 0
    stale_replies: int = 0
    resets: int = 0  # READY frames but the boot one: the board reset during the run
    boot_ready: int = 0  # 1: the first READY came before any INFO reply (the board booting as the host came)
    input_lost: int = 0  # ERROR NO_INPUT: a reset whose READY never arrived
    bytes_skipped: int = 0  # garbage between frames, in decoders since replaced
    input_chunks: int = 0  # INPUT chunks acknowledged (an input larger than the device's receive buffer)
    output_chunks: int = 0  # OUTPUT chunks received (an output larger than INFER_OK holds)
    round_trip_s: list[float] = field(default_factory=list)

    @property
    def transport_errors(self) -> int:
        return self.crc_errors + self.timeouts + self.device_errors


class Device:
    """One device over a pyserial port (a real one, or socket:// for an emulator).

    ``info``, ``infer``, ``time_run`` and ``layers`` survive resets: a READY (or an input the device
    lost) makes the host read INFO again, check the model, give the device its last input back when
    the request needs it, and repeat the request. More than RESETS_IN_ROW resets with nothing
    completed in between raise TooManyResets.
    """

    def __init__(self, port: Any, timeout: float = 5.0, retries: int = RETRIES, expected_hash: str | None = None,
                 resets_in_row: int = RESETS_IN_ROW, model_name: str | None = None) -> None:
        self.port = port
        self.model_name = model_name  # SELECT it when the firmware holds several models
        self.timeout = timeout
        self.retries = retries
        self.expected_hash = expected_hash
        self.max_resets_in_row = resets_in_row
        self.dec = protocol.Decoder()
        self.seq = 0
        self.stats = Stats()
        self.pending: list[protocol.Frame] = []
        self.flush_bytes = 64  # raised to the device's receive buffer + 16 once INFO is known
        self.device_info: protocol.DeviceInfo | None = None  # set at first contact
        self.last_input: bytes | None = None  # the last input the device computed
        self.has_input = False  # whether the device still holds it (a reset clears it)
        self.resets_in_row = 0

    # -- the link: every OS-level failure becomes a TransportError ------------------------------------
    def _io(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:  # serial.SerialException is an OSError
            raise TransportError(f"the serial link failed ({what}: {exc}); is the board still connected?") from None

    def _frames(self, deadline: float) -> list[protocol.Frame]:
        if self.pending:
            out, self.pending = self.pending, []
            return out
        self._io("set timeout", setattr, self.port, "timeout", max(0.001, min(0.003, deadline - time.monotonic())))
        data = self._io("read", self.port.read, 4096)
        before = self.dec.crc_errors + self.dec.length_errors
        frames = self.dec.feed(data) if data else []
        self.stats.crc_errors += self.dec.crc_errors + self.dec.length_errors - before
        return frames

    def _ready(self, f: protocol.Frame) -> DeviceReset:
        if self.device_info is None and not self.stats.boot_ready:  # the board booting as the host came
            self.stats.boot_ready = 1
        else:
            self.stats.resets += 1
        try:
            info: protocol.DeviceInfo | None = protocol.DeviceInfo.parse(f.payload)
        except ValueError:
            info = None
        return DeviceReset(info)

    def wait_ready(self, timeout: float = 30.0) -> protocol.DeviceInfo:
        """First contact with a board the host just started: its boot READY (or an INFO_OK). The boot
        READY is sent once; when it was lost or damaged on the way, INFO is asked for every few seconds."""
        deadline = time.monotonic() + timeout
        poke = min(self.timeout, 5.0)
        next_poke = time.monotonic() + poke
        while time.monotonic() < deadline:
            if time.monotonic() >= next_poke:  # zeros complete any partial frame the device holds
                self._io("write", self.port.write, b"\0" * self.flush_bytes)
                self.seq = (self.seq + 1) & 0xFF
                self._io("write", self.port.write, protocol.encode(P["INFO"], self.seq, b""))
                next_poke = time.monotonic() + poke
            for f in self._frames(min(deadline, next_poke)):
                if f.type in (P["READY"], P["INFO_OK"]):
                    try:
                        return self._accept(protocol.DeviceInfo.parse(f.payload))
                    except ValueError:
                        continue
        raise TransportError(f"no READY from the device within {timeout:.0f} s")

    def request(self, msg: str, payload: bytes, reply: str, timeout: float | None = None) -> protocol.Frame:
        """One request, retried on timeouts, CRC errors and ERROR replies; raises DeviceReset on a
        READY, InputLost on ERROR NO_INPUT or INPUT_INCOMPLETE, TransportError when every attempt failed
        or the device refused the request itself (ERROR BAD_OFFSET: no retry changes that)."""
        timeout = timeout or self.timeout
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.seq = (self.seq + 1) & 0xFF
            t0 = time.perf_counter()
            self._io("write", self.port.write, protocol.encode(P[msg], self.seq, payload))
            deadline = time.monotonic() + timeout
            got_error = False
            while time.monotonic() < deadline and not got_error:
                frames = self._frames(deadline)
                for k, f in enumerate(frames):
                    if f.type == P["READY"]:
                        self.pending = frames[k + 1:]
                        raise self._ready(f)
                    if f.seq != self.seq:
                        self.stats.stale_replies += 1
                        continue
                    if f.type == P["ERROR"]:
                        code = f.payload[0] if f.payload else 0
                        if code in _INPUT_LOST:
                            self.pending = frames[k + 1:]
                            raise InputLost()
                        if code in _REFUSED:
                            raise TransportError(f"the device refused {msg} with ERROR "
                                                 f"{protocol.ERROR_NAMES[code]}")
                        self.stats.device_errors += 1
                        got_error = True
                        self.pending = []
                        break
                    if f.type == P[reply]:
                        self.stats.round_trip_s.append(time.perf_counter() - t0)
                        self.pending = frames[k + 1:]
                        return f
            if not got_error:
                self.stats.timeouts += 1
            # Resynchronise the device: zeros (never a start marker) complete any partial frame it
            # holds, which then fails its CRC and leaves the parser hunting for the next marker.
            self._io("write", self.port.write, b"\0" * self.flush_bytes)
            time.sleep(0.05)
            self._io("flush", self.port.reset_input_buffer)
            self.stats.bytes_skipped += self.dec.skipped
            self.dec = protocol.Decoder()
        raise TransportError(f"{msg}: no valid reply after {self.retries + 1} attempts")

    # -- recovery ---------------------------------------------------------------------------------------
    def _accept(self, info: protocol.DeviceInfo) -> protocol.DeviceInfo:
        """Check what the device says it runs; the first INFO fixes the sizes for the whole run."""
        first = self.device_info is None
        if (self.expected_hash is not None and info.model_hash != self.expected_hash and self.model_name
                and self.model_name in info.models and info.model != self.model_name):
            info = self._select(self.model_name)
        if self.expected_hash is not None and info.model_hash != self.expected_hash:
            where = "runs" if first else "came back from a reset with"
            held = f" (it holds {', '.join(info.models)})" if len(info.models) > 1 else ""
            raise WrongModel(f"the device {where} model {info.model_hash[:16]}{held}, expected "
                             f"{self.expected_hash[:16]}")
        if not first and self.device_info is not None and (info.input_size, info.output_size, info.layers) != (
                self.device_info.input_size, self.device_info.output_size, self.device_info.layers):
            raise WrongModel("the device came back from a reset with other input/output sizes")
        self.device_info = info
        # enough zeros to complete the longest frame the device's receive buffer takes
        self.flush_bytes = (info.rx_max if info.chunked else max(info.input_size, 16)) + 16
        return info

    def _select(self, name: str) -> protocol.DeviceInfo:
        """SELECT a model of a firmware that holds several; a READY meanwhile is recovered as anywhere."""
        f = self._call(lambda: self.request("SELECT", name.encode(), "INFO_OK"))
        try:
            return protocol.DeviceInfo.parse(f.payload)
        except ValueError as exc:
            raise TransportError(f"malformed INFO reply to SELECT ({exc})") from None

    def _info_once(self) -> protocol.DeviceInfo:
        try:
            f = self.request("INFO", b"", "INFO_OK")
        except InputLost:
            raise TransportError("the device answered INFO with ERROR NO_INPUT") from None
        try:
            info = protocol.DeviceInfo.parse(f.payload)
        except ValueError as exc:
            raise TransportError(f"malformed INFO reply ({exc})") from None
        if info.version >= 2 and not info.chunked:
            raise TransportError(f"malformed INFO reply (receive buffer {info.rx_max} B, reply buffer "
                                 f"{info.reply_max} B)")
        return info

    def _recover(self) -> None:
        """After a READY or a lost input: read INFO again (through further READYs) and check it."""
        self.has_input = False
        while True:
            self.resets_in_row += 1
            if self.resets_in_row > self.max_resets_in_row:
                raise TooManyResets(f"the device reset {self.resets_in_row} times in a row with no request "
                                    "completed in between; check its power, reset line and firmware")
            try:
                self._accept(self._info_once())
                return
            except DeviceReset:
                continue

    def _call(self, op: Any) -> Any:
        """Run op (one or more requests) to completion through resets: the same request again."""
        while True:
            try:
                out = op()
            except DeviceReset:
                self._recover()
                continue
            except InputLost:
                self.stats.input_lost += 1
                self._recover()
                continue
            self.resets_in_row = 0
            return out

    def _restore_input(self) -> None:
        """TIME and LAYERS run on the device's last input, which a reset erased: send it again."""
        if not self.has_input and self.last_input is not None:
            self._infer_once(self.last_input)

    # -- requests ---------------------------------------------------------------------------------------
    def info(self) -> protocol.DeviceInfo:
        """First contact (or a fresh look): INFO, through the READY of a board that is booting."""
        try:
            info = self._accept(self._info_once())
        except DeviceReset:
            self._recover()
            assert self.device_info is not None
            info = self.device_info
        self.resets_in_row = 0
        return info

    def _stage(self, data: bytes, rx_max: int) -> None:
        """Stage an input larger than the device's receive buffer: INPUT chunks in order, each
        acknowledged with the bytes the device holds so far (which must be exactly those sent)."""
        for offset, n in protocol.chunks(len(data), rx_max - protocol.OFFSET):
            f = self.request("INPUT", protocol.input_chunk(offset, data[offset:offset + n]), "INPUT_OK")
            try:
                staged = protocol.parse_input_ok(f.payload)
            except ValueError as exc:
                raise TransportError(str(exc)) from None
            if staged != offset + n:
                raise TransportError(f"INPUT_OK says {staged} bytes staged after the chunk at {offset} of {n} bytes")
            self.stats.input_chunks += 1

    def _read_output(self, head: bytes, n_out: int, reply_max: int) -> bytes:
        """The output: the part INFER_OK carried, then OUTPUT chunks from where it ended."""
        out = bytearray(head)
        while len(out) < n_out:
            f = self.request("OUTPUT", protocol.output_request(len(out)), "OUTPUT_OK")
            try:
                offset, part = protocol.parse_output_ok(f.payload)
            except ValueError as exc:
                raise TransportError(str(exc)) from None
            want = min(n_out - len(out), reply_max - protocol.OFFSET)
            if offset != len(out) or len(part) != want:
                raise TransportError(f"OUTPUT_OK of {len(part)} bytes at offset {offset}, expected {want} at "
                                     f"{len(out)}")
            out += part
            self.stats.output_chunks += 1
        return bytes(out)

    def _infer_once(self, data: bytes) -> tuple[np.ndarray, int, int]:
        info = self.device_info
        chunked = info is not None and info.chunked
        if chunked and info is not None and len(data) > info.rx_max:
            self._stage(data, info.rx_max)
            f = self.request("INFER", b"", "INFER_OK")
        else:
            f = self.request("INFER", data, "INFER_OK")
        n_out = info.output_size if info else len(f.payload) - 8
        n_head = min(n_out, info.reply_max - 8) if chunked and info is not None else n_out
        if len(f.payload) != 8 + n_head:
            raise TransportError(f"INFER_OK of {len(f.payload)} bytes, expected {8 + n_head}")
        cycles, ticks = struct.unpack_from("<II", f.payload, 0)
        out = f.payload[8:]
        if n_head < n_out and info is not None:
            out = self._read_output(out, n_out, info.reply_max)
        self.last_input, self.has_input = data, True
        return np.frombuffer(out, np.int8).copy(), cycles, ticks

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        data = np.ascontiguousarray(x, np.int8).tobytes()
        result: tuple[np.ndarray, int, int] = self._call(lambda: self._infer_once(data))
        return result

    def time_run(self, k: int) -> dict[str, int]:
        def op() -> protocol.Frame:
            self._restore_input()
            return self.request("TIME", struct.pack("<H", k), "TIME_OK", timeout=self.timeout + 0.5 * k)

        f = self._call(op)
        if len(f.payload) != 20:
            raise TransportError(f"TIME_OK of {len(f.payload)} bytes, expected 20")
        kk, cyc, ticks, tmin, tmax = struct.unpack_from("<IIIII", f.payload, 0)
        if kk != k:
            raise TransportError(f"TIME_OK for {kk} inferences, asked {k}")
        return {"k": kk, "cycles": cyc, "ticks": ticks, "min_ticks": tmin, "max_ticks": tmax}

    def layers(self, n_layers: int | None = None) -> list[tuple[int, int]]:
        """Every layer's (cycles, ticks), in as many LAYERS requests as the device's reply buffer
        needs (each one profiled inference, answering from layer ``first`` on)."""
        total = n_layers if n_layers is not None else (self.device_info.layers if self.device_info else 0)
        rows: list[tuple[int, int]] = []
        while len(rows) < total:
            first = len(rows)

            def op(first: int = first) -> protocol.Frame:
                self._restore_input()
                return self.request("LAYERS", struct.pack("<H", first), "LAYERS_OK")

            p = self._call(op).payload
            got = len(p) // 8
            if len(p) % 8 or got == 0 or first + got > total:
                raise TransportError(f"LAYERS_OK of {len(p)} bytes from layer {first} of {total}")
            rows += [struct.unpack_from("<II", p, 8 * i) for i in range(got)]
        return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_port(url: str, retries: int = 50) -> Any:
    import serial

    last: Exception | None = None
    for _ in range(retries):
        try:
            port = serial.serial_for_url(url, baudrate=115200, timeout=0.05)
            sock = getattr(port, "_socket", None)
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return port
        except (serial.SerialException, OSError) as exc:
            last = exc
            time.sleep(0.1)
    raise LwcnnError(f"cannot open serial port {url} ({last}); is the board connected and the port right?")


PORT_TIMEOUT = 5.0  # seconds per reply from a board on a serial port before a retry
EMULATED_TIMEOUT = 30.0  # the same from QEMU, which a loaded host may stall for seconds


class Emulated:
    """QEMU running a firmware image with its UART on a local TCP port."""

    def __init__(self, board: boards.Board, elf: Path) -> None:
        self.port_no = _free_port()
        cmd = emulator.command(board, elf, f"tcp:127.0.0.1:{self.port_no},server=on,wait=on,nodelay=on")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.url = f"socket://127.0.0.1:{self.port_no}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _stats(v: list[int] | np.ndarray) -> dict[str, float]:
    a = np.asarray(v, np.float64)
    return {"min": float(a.min()), "median": float(np.median(a)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=Path(__file__).resolve().parent)
        return r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine() -> dict[str, Any]:
    return {"host": platform.node(), "platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), "python": platform.python_version(), "cpus": __import__("os").cpu_count()}


def run_bench(*, board: str | None, port: str | None, model: str, dataset: str | None, data: str | None,
              labels: str | None, samples: int, layers: bool, progress: Any = None,
              device_timeout: float | None = None, via: Any = None, kernels: str = "auto",
              calib: str | None = None, cycles: bool = False) -> dict[str, Any]:
    """Build (for an emulated board), connect, stream inputs, and return the report. ``calib`` quantizes a
    .keras or .onnx model as `compile --calib` does (the firmware on a --port must come from the same).
    ``cycles``: on an emulated board, also the estimated Cortex-M4 cycles of one inference, per layer too
    (``est_cycles``: QEMU's executed instructions priced with the Cortex-M4 TRM, docs/cycles.md).
    ``device_timeout``: seconds per reply before a retry; by default 5 on a port and 30 on an emulated
    board without an injected-fault link (``via``), where a late reply means a stalled QEMU process on
    a loaded host, not a lost frame."""
    from lwcnn_mcu import builder, compiler, hostrun, reference
    from lwcnn_mcu import verify as ver

    if board and port:
        raise LwcnnError("give either --board or --port, not both")
    bo = boards.get(board or boards.DEFAULT_BOARD)
    emulated = port is None
    if device_timeout is None:
        device_timeout = EMULATED_TIMEOUT if emulated and via is None else PORT_TIMEOUT
    if emulated and not bo.runs_here:
        raise LwcnnError(f"board {bo.name} cannot be emulated here; flash it and give --port /dev/ttyACM0")
    if emulated:  # a private build folder: concurrent runs must not share one
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=f"lwcnn-bench-{bo.name}-"))
        built = builder.build(bo.name, model, tmp / "fw", dataset=dataset, calib=calib, kernels=kernels)
        c = built.compiled
    else:
        c = compiler.compile_model(model, dataset=dataset, calib=calib, options=builder.options_for(kernels))
    in_shape = tuple(c.graph.input.shape[1:])
    td = ver.load_test_data(model, dataset, data, labels, samples, in_shape)
    if td.x is None:
        xq = np.random.default_rng(0).integers(-128, 128, (samples,) + in_shape).astype(np.int8)
    else:
        xq = reference.quantize_input(td.x, c.graph.input.scale, c.graph.input.zero_point)
    xq = xq.reshape(len(xq), -1)
    host_out = hostrun.build_host(c.gen.files).run(xq)

    emu = Emulated(bo, built.elf) if emulated else None
    link = None
    n = len(xq)
    outs = np.zeros_like(host_out)
    cyc = np.zeros(n, np.int64)
    ticks = np.zeros(n, np.int64)
    done, timing, prof, stop = 0, None, None, None
    est: dict[str, Any] | None = None  # the cycle estimate (--cycles, emulated boards)
    try:
        url = emu.url if emu else str(port)
        link = open_port(via(url) if via else url, retries=50 if url.startswith("socket://") else 1)
        dev = Device(link, timeout=device_timeout, expected_hash=c.graph.model_hash, model_name=c.gen.name)
        try:  # first contact: nothing measured yet, so a failure here is a plain error
            info = dev.wait_ready(120.0) if emulated else dev.info()
        except WrongModel as exc:
            raise LwcnnError(f"{exc} ({c.source}); build and flash this model first") from None
        except TransportError as exc:
            raise LwcnnError(f"cannot talk to the device on {url}: {exc}") from None
        if (info.input_size, info.output_size) != (xq.shape[1], host_out.shape[1]):
            raise LwcnnError(f"the device's model takes {info.input_size} bytes and gives {info.output_size}, "
                             f"expected {xq.shape[1]} and {host_out.shape[1]}; build and flash this model first")
        if not info.chunked and 8 + max(info.input_size, info.output_size) > protocol.MAX_PAYLOAD:
            raise LwcnnError(f"the device speaks protocol version {info.version}, whose frames cannot carry an "
                             f"input of {info.input_size} B or an output of {info.output_size} B; build and flash "
                             "the firmware again with this lwcnn-mcu")
        stage = "input 0"
        try:
            while done < n:
                stage = f"input {done}"
                outs[done], cyc[done], ticks[done] = dev.infer(xq[done])  # the same input again after a reset
                done += 1
                if progress is not None:
                    progress(done, n)
            stage = "the TIME run"
            timing = dev.time_run(10)
            if layers:
                stage = "the LAYERS profile"
                prof = dev.layers(len(c.graph.ops))
        except (TransportError, WrongModel) as exc:
            stop = f"stopped at {stage} ({done} of {n} inputs done): {exc}"
    finally:
        if link is not None:
            try:
                link.close()
            except OSError:
                pass
        if emu is not None:
            emu.close()
            if cycles and done:  # before the build folder goes: the estimator runs the ELF again
                est = _cycle_estimate(built)
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    st = dev.stats
    outs, host_done, cyc, ticks = outs[:done], host_out[:done], cyc[:done], ticks[:done]
    y = td.y[:done] if td.y is not None else None
    agree = np.all(outs == host_done, axis=1)
    r: dict[str, Any] = {
        "tool": f"lwcnn-mcu {__version__}",
        "board": bo.name if emulated else (board or info.board),
        "kernels": kernels if emulated else "as flashed",
        "device_board": info.board,
        "emulated": emulated,
        "model": str(c.source),
        "model_sha256": c.graph.model_hash,
        "data": td.source,
        "samples": int(done),
        "accuracy": float(np.mean(np.argmax(outs, 1) == y)) if y is not None and done else None,
        "host_accuracy": float(np.mean(np.argmax(host_done, 1) == y)) if y is not None and done else None,
        "agree_with_host": int(agree.sum()),
        "transport_errors": st.transport_errors,
        "transport": {"crc_errors": st.crc_errors, "timeouts": st.timeouts, "device_errors": st.device_errors,
                      "retries": st.retries, "stale_replies": st.stale_replies, "device_resets": st.resets,
                      "boot_ready": st.boot_ready, "input_lost": st.input_lost,
                      "bytes_skipped": st.bytes_skipped + dev.dec.skipped, "input_chunks": st.input_chunks,
                      "output_chunks": st.output_chunks},
        "host_round_trip_ms": {k: v * 1000 for k, v in _stats(st.round_trip_s).items()} if st.round_trip_s else None,
        "params": c.report["params"], "macs": c.report["macs"],
        "weights_bytes": c.report["weights_bytes"], "arena_bytes": c.report["arena_bytes"],
    }
    if stop is not None:
        r["samples_requested"] = int(n)
        r["stopped"] = stop
    # Counts: instructions when an emulator ran the image (started here, or behind --port: a device of
    # an emulated board, or whose DWT counted nothing, as QEMU has none), else the device's cycles.
    dev_bo = bo if emulated else boards.BOARDS.get(boards.ALIASES.get(info.board, info.board))
    icount = dev_bo is not None and dev_bo.qemu_machine is not None and (
        emulated or info.counter == "systick" or (done > 0 and not cyc.any()))
    r["unit"] = "instructions" if icount else "cycles"
    if icount:
        assert dev_bo is not None
        instr = np.array([emulator.ticks_to_instructions(dev_bo, int(t)) for t in ticks])
        r["instructions"] = _stats(instr) if done else None
        r["instructions_per_mac"] = r["instructions"]["median"] / max(1, c.report["macs"]) if done else None
        r["timing_run"] = None if timing is None else {
            "inferences": timing["k"],
            "instructions_mean": emulator.ticks_to_instructions(dev_bo, timing["ticks"]) / max(1, timing["k"])}
        r["note"] = "emulated board: QEMU -icount shift=0 instruction counts (not cycles, not time)"
        if not emulated:
            r["clock_hz"] = info.clock_hz
        per_inf = instr
    else:
        counts = cyc if info.counter == "dwt" and cyc.any() else ticks
        r["clock_hz"] = info.clock_hz  # read back from the RCC by the firmware, not the number it meant to set
        r["clock_fallback"] = info.clock_fallback
        clock_warn = boards.clock_warning(info.board, info.clock_hz, info.clock_fallback, info.clock_failed_step)
        if clock_warn:
            r.setdefault("warnings", []).append(clock_warn)
        r["cycles"] = _stats(counts) if done else None
        r["latency_ms"] = {k: v / info.clock_hz * 1000 for k, v in r["cycles"].items()} \
            if done and info.clock_hz else None
        total = 0 if timing is None else timing["cycles"] or timing["ticks"]
        r["timing_run"] = None if timing is None else {"inferences": timing["k"],
                                                       "cycles_mean": total / max(1, timing["k"])}
        per_inf = counts
    r["per_inference"] = [int(v) for v in per_inf]
    if prof is not None:
        rows = []
        for k, (pc, pt) in enumerate(prof):
            op = c.graph.ops[k]
            val = emulator.ticks_to_instructions(dev_bo, pt) if icount and dev_bo is not None else (pc or pt)
            rows.append({"layer": k, "name": op.name, "op": op.opcode, "macs": op.macs(c.graph),
                         r["unit"]: int(val)})
        r["layers"] = rows
    if est is not None:
        _merge_cycle_estimate(r, est)
    r["machine"] = machine()
    r["commit"] = _git_commit()
    r["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not agree.all():
        r["first_mismatch"] = int(np.argmin(agree))
    if stop is not None:
        raise BenchStopped(stop, r)
    return r


def _cycle_estimate(built: Any) -> dict[str, Any]:
    """est_cycles (an estimate, labelled so everywhere) of one inference of the self-test input; a failure
    of the estimator is a warning in the report, not a failed bench."""
    from lwcnn_mcu import cycles

    try:
        return cycles.for_bench(built)
    except (LwcnnError, OSError, RuntimeError, ValueError) as exc:
        return {"warning": f"no cycle estimate: {exc}"}


def _merge_cycle_estimate(r: dict[str, Any], est: dict[str, Any]) -> None:
    if "warning" in est:
        r.setdefault("warnings", []).append(est["warning"])
        return
    layers = {row["layer"]: row for row in est.pop("est_layers", [])}
    r.update(est)
    for row in r.get("layers", []):
        if row["layer"] in layers:
            row["est_cycles"] = layers[row["layer"]].get("est_cycles")


def results_dir() -> Path:
    """Where `bench` saves its JSON: $LWCNN_RESULTS, else ./lwcnn-results (never inside the package)."""
    return Path(os.environ.get("LWCNN_RESULTS") or "lwcnn-results")


def save_result(r: dict[str, Any], root: Path | None = None) -> Path:
    root = root or results_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LwcnnError(f"cannot create the results folder {root} ({exc.strerror}); give --results DIR "
                         "or --no-save") from None
    name = f"bench-{r['board']}-{Path(r['model']).stem}-{r['date'].replace(':', '')}.json"
    p = root / name
    p.write_text(json.dumps({k: v for k, v in r.items() if k != "per_inference"}, indent=2) + "\n")
    return p


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = r.get("unit") or ("instructions" if r["emulated"] else "cycles")
    v = np.asarray(r["per_inference"])
    n_ax = 3 if r.get("layers") else 2
    fig, ax = plt.subplots(1, n_ax, figsize=(5 * n_ax, 4))
    ax[0].hist(v, bins=min(50, max(5, len(set(v.tolist())))), color="#3a7")
    ax[0].set_xlabel(f"{unit} per inference")
    ax[0].set_ylabel("inferences")
    ax[1].plot(v, ".", ms=3)
    ax[1].set_xlabel("inference #")
    ax[0].ticklabel_format(axis="x", style="plain", useOffset=False)
    ax[1].ticklabel_format(axis="y", style="plain", useOffset=False)
    ax[1].set_ylabel(unit)
    if r.get("layers"):
        names = [f"{x['layer']} {x['op']}" for x in r["layers"]]
        ax[2].barh(names[::-1], [x[unit] for x in r["layers"]][::-1], color="#37a")
        ax[2].set_xlabel(unit)
        ax[2].tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{r['board']}: {Path(r['model']).name}, {r['samples']} inputs, "
                 f"{r['agree_with_host']} equal to host")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def check(r: dict[str, Any]) -> None:
    if r["agree_with_host"] != r["samples"]:
        raise MismatchError()
