"""A TCP proxy between ``bench --port socket://...`` and an emulated board's UART that damages the
traffic in both directions and can reset the board in the middle of a reply.

Damage, on a fraction ``faults`` of the chunks each direction carries (plus a few forced ones so
every run sees each kind): a flipped bit, a dropped byte, 1-8 bytes of inserted garbage, a stall of
0.05-0.4 s. Reset: after the host's k-th request of a kind (once the board has booted; INPUT and
OUTPUT chunks count one by one), the proxy
forwards the first half of the reply, drops the rest and sends the board a RESET frame; the host
sees a reply cut short, then the board's selftest text and its READY - as when a board resets
while it answers, or while it runs a TIME request.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from typing import Any

from lwcnn_mcu import protocol

P = protocol.MSG
REPLY = {"INFO": "INFO_OK", "INFER": "INFER_OK", "TIME": "TIME_OK", "LAYERS": "LAYERS_OK", "INPUT": "INPUT_OK",
         "OUTPUT": "OUTPUT_OK"}
KINDS = ("flip", "drop", "garbage", "stall")


class LinkProxy:
    #: chunk numbers (per direction) that always get this fault when faults > 0
    FORCED = {3: "flip", 6: "drop", 9: "garbage", 12: "stall", 17: "flip", 23: "drop", 31: "garbage"}

    def __init__(self, upstream: str, *, faults: float = 0.0, seed: int = 0,
                 resets: tuple[tuple[str, int], ...] = ()) -> None:
        host, port = upstream.removeprefix("socket://").split(":")
        self.upstream = (host, int(port))
        self.faults = faults
        self.rngs = {"h2d": random.Random(seed), "d2h": random.Random(seed + 1)}
        self.counts = {f"{d}_{k}": 0 for d in ("h2d", "d2h") for k in KINDS}
        self.resets = list(resets)  # (request kind, its k-th occurrence after boot)
        self.seen: dict[str, int] = {}
        self.armed: tuple[str, int] | None = None  # (reply kind, seq) to cut
        self.injected: list[str] = []
        self.booted = False
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.socks: list[socket.socket] = [self.srv]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def damaged(self) -> int:
        return sum(v for k, v in self.counts.items() if not k.endswith("stall"))

    def close(self) -> None:
        self.stop = True
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        try:
            client, _ = self.srv.accept()
        except OSError:
            return
        for _ in range(100):
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        else:
            client.close()
            return
        self.up = up
        self.socks += [client, up]
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for pump, a, b in ((self._host_to_device, client, up), (self._device_to_host, up, client)):
            threading.Thread(target=self._run_pump, args=(pump, a, b), daemon=True).start()

    def _run_pump(self, pump: Any, src: socket.socket, dst: socket.socket) -> None:
        pump(src, dst)
        for s in (src, dst):  # one side closed: close the other, as the link it stands for would
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- damage ---------------------------------------------------------------------------------------
    def _damage(self, direction: str, chunk: int, data: bytearray) -> bytearray:
        if not self.faults or not data:
            return data
        rng = self.rngs[direction]
        kind = self.FORCED.get(chunk)
        roll = rng.random()
        if kind is None and roll < self.faults:
            kind = KINDS[int(roll / self.faults * len(KINDS)) % len(KINDS)]
        if kind is None:
            return data
        self.counts[f"{direction}_{kind}"] += 1
        if kind == "flip":
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == "drop":
            del data[rng.randrange(len(data))]
        elif kind == "garbage":
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            time.sleep(rng.uniform(0.05, 0.4))
        return data

    def _send_up(self, data: bytes) -> None:
        with self.lock:
            self.up.sendall(data)

    # -- pumps ----------------------------------------------------------------------------------------
    def _host_to_device(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.5)
        dec = protocol.Decoder()
        chunk = 0
        while not self.stop:
            try:
                data = bytearray(src.recv(256))
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            chunk += 1
            data = self._damage("h2d", chunk, data)
            for f in dec.feed(bytes(data)):  # what the board will see: arm a reset on the k-th request
                name = next((n for n, code in P.items() if code == f.type), "")
                if self.booted and name in REPLY:
                    self.seen[name] = self.seen.get(name, 0) + 1
                    due = [r for r in self.resets if r[0] == name and r[1] <= self.seen[name]]
                    if due:  # the k-th request, or a retry of it after damage: cut the newest's reply
                        self.armed = (REPLY[name], f.seq)
            try:
                self._send_up(bytes(data))
            except OSError:
                return

    def _device_to_host(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.5)
        buf = bytearray()
        chunk = 0
        while not self.stop:
            try:
                data = src.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            out = self._split(buf)
            if not out:
                continue
            chunk += 1
            out = self._damage("d2h", chunk, out)
            try:
                dst.sendall(bytes(out))
            except OSError:
                return

    def _split(self, buf: bytearray) -> bytearray:
        """The whole frames and text at the head of buf (taken out of it), a reply to cut cut."""
        out = bytearray()
        while True:
            i = buf.find(protocol.MAGIC)
            if i < 0:
                keep = 1 if buf.endswith(protocol.MAGIC[:1]) else 0
                out += buf[:len(buf) - keep]
                del buf[:len(buf) - keep]
                return out
            out += buf[:i]
            del buf[:i]
            if len(buf) < protocol.HEADER:
                return out
            msg_type, seq, n = struct.unpack_from("<BBH", buf, 2)
            if n > protocol.MAX_PAYLOAD:
                out += buf[:1]
                del buf[:1]
                continue
            if len(buf) < protocol.OVERHEAD + n:
                return out
            frame = bytes(buf[:protocol.OVERHEAD + n])
            del buf[:protocol.OVERHEAD + n]
            if msg_type == P["READY"]:
                self.booted = True
            if self.armed is not None and (msg_type, seq) == (P[self.armed[0]], self.armed[1]):
                out += frame[:len(frame) // 2]
                request = next(r for r in self.resets if REPLY[r[0]] == self.armed[0])
                self.resets.remove(request)
                self.injected.append(request[0])
                self.armed = None
                self._send_up(protocol.encode(P["RESET"], 0xEE))
            else:
                out += frame
