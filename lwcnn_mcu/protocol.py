"""The host <-> firmware benchmark protocol (documented in docs/protocol.md).

Frame: ``A5 5A | type u8 | seq u8 | len u16 | payload[len] | crc u16`` (little-endian), CRC-16/
CCITT-FALSE (poly 0x1021, init 0xFFFF) over type..payload. Message types and error codes are
defined once here; the firmware's ``lw_proto_codes.h`` is generated from these lists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"\xa5\x5a"
VERSION = 1
MAX_PAYLOAD = 4096
HEADER = 6  # magic, type, seq, len
OVERHEAD = HEADER + 2

#: (name, code, direction, meaning) - requests have the high bit clear, replies set.
MESSAGES: tuple[tuple[str, int, str], ...] = (
    ("INFO", 0x01, "host: ask for the device description"),
    ("INFER", 0x02, "host: one inference on the payload (the int8 input)"),
    ("TIME", 0x03, "host: K back-to-back inferences on the last input (payload u16 K)"),
    ("LAYERS", 0x04, "host: one inference on the last input, timing every layer"),
    ("RESET", 0x05, "host: reset the device (it answers with READY after booting)"),
    ("READY", 0x80, "device: sent once after boot; payload as INFO_OK"),
    ("INFO_OK", 0x81, "device: version, counter kind, clock, arena, sizes, layers, board, firmware, model hash"),
    ("INFER_OK", 0x82, "device: u32 cycles, u32 ticks, then the output bytes"),
    ("TIME_OK", 0x83, "device: u32 K, total cycles, total ticks, min ticks, max ticks"),
    ("LAYERS_OK", 0x84, "device: per layer u32 cycles, u32 ticks"),
    ("ERROR", 0xFF, "device: u8 error code, u8 the offending type"),
)
MSG = {name: code for name, code, _ in MESSAGES}

#: (name, code, meaning)
ERRORS: tuple[tuple[str, int, str], ...] = (
    ("BAD_CRC", 1, "frame CRC mismatch"),
    ("BAD_LENGTH", 2, "payload longer than the device accepts"),
    ("UNKNOWN_TYPE", 3, "unknown message type"),
    ("BAD_INPUT_SIZE", 4, "INFER payload is not the model's input size"),
    ("TIMEOUT", 5, "frame incomplete: bytes stopped arriving"),
    ("NO_INPUT", 6, "TIME/LAYERS before any INFER"),
)
ERROR_NAMES = {code: name for name, code, _ in ERRORS}


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = struct.pack("<BBH", msg_type, seq & 0xFF, len(payload)) + payload
    return MAGIC + body + struct.pack("<H", crc16(body))


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


class Decoder:
    """Incremental frame decoder: feed bytes, collect frames; counts garbage and CRC errors.

    Resynchronises on the next magic after any error, so one corrupted byte costs one frame.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.crc_errors = 0
        self.length_errors = 0
        self.skipped = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out: list[Frame] = []
        while True:
            i = self.buf.find(MAGIC)
            if i < 0:
                keep = 1 if self.buf.endswith(MAGIC[:1]) else 0
                self.skipped += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return out
            if i:
                self.skipped += i
                del self.buf[:i]
            if len(self.buf) < HEADER:
                return out
            msg_type, seq, n = struct.unpack_from("<BBH", self.buf, 2)
            if n > MAX_PAYLOAD:
                self.length_errors += 1
                del self.buf[:2]
                continue
            if len(self.buf) < OVERHEAD + n:
                return out
            body = bytes(self.buf[2:HEADER + n])
            (crc,) = struct.unpack_from("<H", self.buf, HEADER + n)
            if crc != crc16(body):
                self.crc_errors += 1
                del self.buf[:2]
                continue
            out.append(Frame(msg_type, seq, bytes(self.buf[HEADER:HEADER + n])))
            del self.buf[: OVERHEAD + n]


@dataclass(frozen=True)
class DeviceInfo:
    version: int
    counter: str  # "dwt" | "systick"
    clock_hz: int
    arena_bytes: int
    input_size: int
    output_size: int
    layers: int
    board: str
    firmware: str
    model_hash: str

    @staticmethod
    def parse(p: bytes) -> DeviceInfo:
        if len(p) < 24:
            raise ValueError("short INFO payload")
        ver, counter, _r, clock, arena, n_in, n_out, layers = struct.unpack_from("<BBHIIIII", p, 0)
        parts = p[24:].split(b"\0")
        if len(parts) < 3:
            raise ValueError("malformed INFO strings")
        return DeviceInfo(ver, "dwt" if counter == 0 else "systick", clock, arena, n_in, n_out, layers,
                          parts[0].decode(errors="replace"), parts[1].decode(errors="replace"),
                          parts[2].decode(errors="replace"))


def c_header() -> str:
    """lw_proto_codes.h: the message types and error codes for the firmware."""
    lines = ["/* Generated from lwcnn_mcu/protocol.py (MESSAGES, ERRORS). Do not edit. */",
             "#ifndef LW_PROTO_CODES_H", "#define LW_PROTO_CODES_H", "",
             f"#define LW_PROTO_VERSION {VERSION}", f"#define LW_PROTO_MAX_PAYLOAD {MAX_PAYLOAD}", ""]
    lines += [f"#define LW_MSG_{name} 0x{code:02X}u /* {meaning} */" for name, code, meaning in MESSAGES]
    lines.append("")
    lines += [f"#define LW_ERR_{name} {code}u /* {meaning} */" for name, code, meaning in ERRORS]
    lines += ["", "#endif /* LW_PROTO_CODES_H */", ""]
    return "\n".join(lines)
