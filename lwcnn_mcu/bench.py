"""``lwcnn-mcu bench``: latency and on-target accuracy over a serial port (or an emulated board).

The host streams test inputs to the firmware (protocol: docs/protocol.md), checks every output
against the host-built C byte for byte, and collects the device's own count of each inference
(DWT cycles on a real board; instructions on an emulated one, from SysTick under
``-icount shift=0``). Transport faults are retried and counted; a reply is only recorded when
its CRC is good and its sequence number matches the request.
"""

from __future__ import annotations

import json
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


class TransportError(Exception):
    pass


class DeviceReset(Exception):
    def __init__(self, info: protocol.DeviceInfo) -> None:
        super().__init__("device reset")
        self.info = info


@dataclass
class Stats:
    crc_errors: int = 0
    timeouts: int = 0
    retries: int = 0
    device_errors: int = 0
    stale_replies: int = 0
    resets: int = 0
    round_trip_s: list[float] = field(default_factory=list)

    @property
    def transport_errors(self) -> int:
        return self.crc_errors + self.timeouts + self.device_errors


class Device:
    """One device over a pyserial port (a real one, or socket:// for an emulator)."""

    def __init__(self, port: Any, timeout: float = 5.0, retries: int = 5) -> None:
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.dec = protocol.Decoder()
        self.seq = 0
        self.stats = Stats()
        self.pending: list[protocol.Frame] = []
        self.flush_bytes = 64  # raised to the device's receive buffer + 16 once INFO is known

    def _frames(self, deadline: float) -> list[protocol.Frame]:
        if self.pending:
            out, self.pending = self.pending, []
            return out
        self.port.timeout = max(0.001, min(0.003, deadline - time.monotonic()))
        data = self.port.read(4096)
        before = self.dec.crc_errors + self.dec.length_errors
        frames = self.dec.feed(data) if data else []
        self.stats.crc_errors += self.dec.crc_errors + self.dec.length_errors - before
        return frames

    def wait_ready(self, timeout: float = 30.0) -> protocol.DeviceInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in self._frames(deadline):
                if f.type in (P["READY"], P["INFO_OK"]):
                    return protocol.DeviceInfo.parse(f.payload)
        raise TransportError(f"no READY from the device within {timeout:.0f} s")

    def request(self, msg: str, payload: bytes, reply: str, timeout: float | None = None) -> protocol.Frame:
        timeout = timeout or self.timeout
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.seq = (self.seq + 1) & 0xFF
            t0 = time.perf_counter()
            self.port.write(protocol.encode(P[msg], self.seq, payload))
            deadline = time.monotonic() + timeout
            got_error = False
            while time.monotonic() < deadline and not got_error:
                for f in self._frames(deadline):
                    if f.type == P["READY"]:
                        self.stats.resets += 1
                        raise DeviceReset(protocol.DeviceInfo.parse(f.payload))
                    if f.seq != self.seq:
                        self.stats.stale_replies += 1
                        continue
                    if f.type == P["ERROR"]:
                        self.stats.device_errors += 1
                        got_error = True
                        break
                    if f.type == P[reply]:
                        self.stats.round_trip_s.append(time.perf_counter() - t0)
                        return f
            if not got_error:
                self.stats.timeouts += 1
            # Resynchronise the device: zeros (never a start marker) complete any partial frame it
            # holds, which then fails its CRC and leaves the parser hunting for the next marker.
            self.port.write(b"\0" * self.flush_bytes)
            time.sleep(0.05)
            self.port.reset_input_buffer()
            self.dec = protocol.Decoder()
        raise TransportError(f"{msg}: no valid reply after {self.retries + 1} attempts")

    def info(self) -> protocol.DeviceInfo:
        return protocol.DeviceInfo.parse(self.request("INFO", b"", "INFO_OK").payload)

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        f = self.request("INFER", np.ascontiguousarray(x, np.int8).tobytes(), "INFER_OK")
        cycles, ticks = struct.unpack_from("<II", f.payload, 0)
        return np.frombuffer(f.payload[8:], np.int8).copy(), cycles, ticks

    def time_run(self, k: int) -> dict[str, int]:
        f = self.request("TIME", struct.pack("<H", k), "TIME_OK", timeout=self.timeout + 0.5 * k)
        kk, cyc, ticks, tmin, tmax = struct.unpack_from("<IIIII", f.payload, 0)
        return {"k": kk, "cycles": cyc, "ticks": ticks, "min_ticks": tmin, "max_ticks": tmax}

    def layers(self) -> list[tuple[int, int]]:
        f = self.request("LAYERS", b"", "LAYERS_OK")
        return [struct.unpack_from("<II", f.payload, 8 * i) for i in range(len(f.payload) // 8)]


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
              device_timeout: float = 5.0, via: Any = None, kernels: str = "auto") -> dict[str, Any]:
    """Build (for an emulated board), connect, stream inputs, and return the report."""
    from lwcnn_mcu import builder, compiler, hostrun, reference
    from lwcnn_mcu import verify as ver

    if board and port:
        raise LwcnnError("give either --board or --port, not both")
    bo = boards.get(board or boards.DEFAULT_BOARD)
    emulated = port is None
    if emulated and not bo.runs_here:
        raise LwcnnError(f"board {bo.name} cannot be emulated here; flash it and give --port /dev/ttyACM0")
    if emulated:  # a private build folder: concurrent runs must not share one
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=f"lwcnn-bench-{bo.name}-"))
        built = builder.build(bo.name, model, tmp / "fw", dataset=dataset, kernels=kernels)
        c = built.compiled
    else:
        c = compiler.compile_model(model, dataset=dataset)
    in_shape = tuple(c.graph.input.shape[1:])
    td = ver.load_test_data(model, dataset, data, labels, samples, in_shape)
    if td.x is None:
        xq = np.random.default_rng(0).integers(-128, 128, (samples,) + in_shape).astype(np.int8)
    else:
        xq = reference.quantize_input(td.x, c.graph.input.scale, c.graph.input.zero_point)
    xq = xq.reshape(len(xq), -1)
    host_out = hostrun.build_host(c.gen.files).run(xq)

    emu = Emulated(bo, built.elf) if emulated else None
    try:
        url = emu.url if emu else str(port)
        link = open_port(via(url) if via else url, retries=50 if url.startswith("socket://") else 1)
        dev = Device(link, timeout=device_timeout)
        info = dev.wait_ready(60.0 if emulated else 10.0) if emulated else dev.info()
        dev.flush_bytes = max(info.input_size, 16) + 16
        if info.model_hash != c.graph.model_hash:
            raise LwcnnError(f"the device runs model {info.model_hash[:16]}, expected {c.graph.model_hash[:16]} "
                             f"({c.source}); build and flash this model first")
        outs = np.zeros_like(host_out)
        cyc = np.zeros(len(xq), np.int64)
        ticks = np.zeros(len(xq), np.int64)
        i = 0
        while i < len(xq):
            try:
                o, cy, tk = dev.infer(xq[i])
            except DeviceReset as r:
                if dev.stats.resets > 3:
                    raise LwcnnError(f"the device reset {dev.stats.resets} times during the run; stopped at "
                                     f"input {i}") from None
                if r.info.model_hash != c.graph.model_hash:
                    raise LwcnnError("the device came back from a reset with another model; stopped") from None
                continue  # resume with the same input
            except TransportError as exc:
                raise LwcnnError(f"serial link failed at input {i}: {exc}") from None
            outs[i], cyc[i], ticks[i] = o, cy, tk
            i += 1
            if progress is not None:
                progress(i, len(xq))
        timing = dev.time_run(10)
        prof = dev.layers() if layers else None
    finally:
        if emu is not None:
            emu.close()
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    agree = np.all(outs == host_out, axis=1)
    r: dict[str, Any] = {
        "tool": f"lwcnn-mcu {__version__}",
        "board": bo.name if emulated else (board or info.board),
        "kernels": kernels if emulated else "as flashed",
        "device_board": info.board,
        "emulated": emulated,
        "model": str(c.source),
        "model_sha256": c.graph.model_hash,
        "data": td.source,
        "samples": int(len(xq)),
        "accuracy": float(np.mean(np.argmax(outs, 1) == td.y)) if td.y is not None else None,
        "host_accuracy": float(np.mean(np.argmax(host_out, 1) == td.y)) if td.y is not None else None,
        "agree_with_host": int(agree.sum()),
        "transport_errors": dev.stats.transport_errors,
        "transport": {"crc_errors": dev.stats.crc_errors, "timeouts": dev.stats.timeouts,
                      "device_errors": dev.stats.device_errors, "retries": dev.stats.retries,
                      "stale_replies": dev.stats.stale_replies, "device_resets": dev.stats.resets,
                      "bytes_skipped": dev.dec.skipped},
        "host_round_trip_ms": {k: v * 1000 for k, v in _stats(dev.stats.round_trip_s).items()},
        "params": c.report["params"], "macs": c.report["macs"],
        "weights_bytes": c.report["weights_bytes"], "arena_bytes": c.report["arena_bytes"],
    }
    if emulated:
        instr = np.array([emulator.ticks_to_instructions(bo, int(t)) for t in ticks])
        r["instructions"] = _stats(instr)
        r["instructions_per_mac"] = r["instructions"]["median"] / max(1, c.report["macs"])
        r["timing_run"] = {"inferences": timing["k"],
                           "instructions_mean": emulator.ticks_to_instructions(bo, timing["ticks"]) / timing["k"]}
        r["note"] = "emulated board: QEMU -icount shift=0 instruction counts (not cycles, not time)"
        per_inf = instr
    else:
        counts = cyc if info.counter == "dwt" and cyc.any() else ticks
        r["clock_hz"] = info.clock_hz
        r["cycles"] = _stats(counts)
        r["latency_ms"] = {k: v / info.clock_hz * 1000 for k, v in r["cycles"].items()}
        total = timing["cycles"] or timing["ticks"]
        r["timing_run"] = {"inferences": timing["k"], "cycles_mean": total / timing["k"]}
        per_inf = counts
    r["per_inference"] = [int(v) for v in per_inf]
    if prof is not None:
        rows = []
        for k, (pc, pt) in enumerate(prof):
            op = c.graph.ops[k]
            val = emulator.ticks_to_instructions(bo, pt) if emulated else (pc or pt)
            rows.append({"layer": k, "name": op.name, "op": op.opcode, "macs": op.macs(c.graph),
                         ("instructions" if emulated else "cycles"): int(val)})
        r["layers"] = rows
    r["machine"] = machine()
    r["commit"] = _git_commit()
    r["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not agree.all():
        r["first_mismatch"] = int(np.argmin(agree))
    return r


def save_result(r: dict[str, Any], root: Path = Path("benchmarks/results")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    name = f"bench-{r['board']}-{Path(r['model']).stem}-{r['date'].replace(':', '')}.json"
    p = root / name
    p.write_text(json.dumps({k: v for k, v in r.items() if k != "per_inference"}, indent=2) + "\n")
    return p


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "instructions" if r["emulated"] else "cycles"
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
