"""The host <-> firmware benchmark protocol (documented in docs/protocol.md).

Frame: ``A5 5A | type u8 | seq u8 | len u16 | payload[len] | crc u16`` (little-endian), CRC-16/
CCITT-FALSE (poly 0x1021, init 0xFFFF) over type..payload. Message types and error codes are
defined once here; the firmware's ``lw_proto_codes.h`` and the tables of docs/protocol.md
(``python -m lwcnn_mcu.protocol``) are generated from these lists.

Inputs and outputs of any size: an input larger than the device's receive buffer (``rx_max`` in
INFO) is staged with INPUT chunks (``u32 offset`` + bytes, each acknowledged with the bytes staged
so far), then run with an INFER whose payload is empty; an output larger than INFER_OK holds is
read on with OUTPUT requests (``u32 offset``). ``input_chunk``, ``output_request`` and the
``parse_*`` functions below are those payloads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"\xa5\x5a"
VERSION = 2  # 2: INPUT/OUTPUT chunks, rx_max and reply_max in INFO_OK
MAX_PAYLOAD = 4096
#: The most input (output) bytes a build's receive (reply) buffer holds in one frame when the model's
#: input (output) is larger: a larger input is staged in INPUT chunks, a larger output read in OUTPUT
#: chunks, so no buffer of the protocol grows with the model (builder.buffer_defines).
CHUNK = 1024
OFFSET = 4  # the u32 offset at the head of INPUT, OUTPUT and OUTPUT_OK payloads
HEADER = 6  # magic, type, seq, len
OVERHEAD = HEADER + 2

#: (name, code, direction, meaning) - requests have the high bit clear, replies set.
MESSAGES: tuple[tuple[str, int, str], ...] = (
    ("INFO", 0x01, "host: ask for the device description"),
    ("INFER", 0x02, "host: one inference on the payload (the int8 input), or on the staged input when the "
                    "payload is empty"),
    ("TIME", 0x03, "host: K back-to-back inferences on the last input (payload u16 K)"),
    ("LAYERS", 0x04, "host: one inference on the last input, timing every layer (payload: optional u16 first layer)"),
    ("RESET", 0x05, "host: reset the device (it answers with READY after booting)"),
    ("SELECT", 0x06, "host: run another of the firmware's models from now on (payload: its C name); INFO_OK"),
    ("INPUT", 0x07, "host: stage part of the next input: u32 offset, then the bytes (at most rx_max - 4)"),
    ("OUTPUT", 0x08, "host: read the last output from a u32 offset on"),
    ("READY", 0x80, "device: sent once after boot; payload as INFO_OK"),
    ("INFO_OK", 0x81, "device: version, counter kind, clock, arena, sizes, layers, rx_max, reply_max, board, "
                      "firmware, model hash, model name, every model's name"),
    ("INFER_OK", 0x82, "device: u32 cycles, u32 ticks, then the output bytes (as many as reply_max - 8)"),
    ("TIME_OK", 0x83, "device: u32 K, total cycles, total ticks, min ticks, max ticks"),
    ("LAYERS_OK", 0x84, "device: per layer from the first asked, u32 cycles, u32 ticks (as many as its reply holds)"),
    ("INPUT_OK", 0x85, "device: u32 bytes of the input staged so far, from offset 0 without a gap"),
    ("OUTPUT_OK", 0x86, "device: u32 offset, then the output bytes from there (as many as reply_max - 4)"),
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
    ("NO_INPUT", 6, "TIME/LAYERS/OUTPUT with no INFER since boot, SELECT or the last INPUT chunk"),
    ("BAD_LAYER", 7, "LAYERS from a first layer the model does not have"),
    ("UNKNOWN_MODEL", 8, "SELECT of a model the firmware does not hold"),
    ("BAD_OFFSET", 9, "INPUT chunk empty or not within the model's input, or OUTPUT offset not within its output"),
    ("INPUT_INCOMPLETE", 10, "INPUT chunk past the bytes staged so far, or INFER of a staged input not all there "
                             "(the device reset: stage it again from offset 0)"),
)
ERROR_NAMES = {code: name for name, code, _ in ERRORS}

#: INFO_OK / READY ``flags`` (the u16 after ``counter``): (name, bit mask, meaning)
INFO_FLAGS: tuple[tuple[str, int, str], ...] = (
    ("CLOCK_FALLBACK", 0x0001, "the clock setup failed: the board runs at its reset clock (clock_hz says which)"),
    ("CLOCK_STEP", 0xFF00, "bits 15..8: the clock setup step that failed (CLOCK_STEPS), 0 when none did"),
)
#: (name, number, meaning) - the steps of the firmware's clock setup (lwcnn_mcu/firmware/clock_stm32.c)
CLOCK_STEPS: tuple[tuple[str, int, str], ...] = (
    ("RESET_CLOCK", 1, "back to the reset oscillator before the setup (SWS read back)"),
    ("VOLTAGE", 2, "voltage scaling: range 1 / scale 1 (VOS; VOSF cleared)"),
    ("HSI", 3, "HSI 16 MHz oscillator ready (HSIRDY)"),
    ("AHB_DIV2", 4, "AHB prescaler /2 before entering boost mode (HPRE read back)"),
    ("FLASH", 5, "flash wait states and accelerators (FLASH_ACR read back)"),
    ("PLL", 6, "PLL locked (PLLRDY)"),
    ("OVERDRIVE", 7, "over-drive ready (ODRDY)"),
    ("OVERDRIVE_SWITCH", 8, "regulator switched to over-drive (ODSWRDY)"),
    ("PRESCALERS", 9, "AHB/APB prescalers (RCC_CFGR read back)"),
    ("SWITCH", 10, "SYSCLK switched to the PLL (SWS read back)"),
    ("AHB_DIV1", 11, "AHB prescaler back to /1 after the boost transition (HPRE read back)"),
)
CLOCK_STEP_NAMES = {code: name for name, code, _ in CLOCK_STEPS}


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def input_chunk(offset: int, data: bytes) -> bytes:
    """An INPUT payload: ``data`` for the input bytes from ``offset`` on."""
    if not data or not 0 <= offset <= 0xFFFFFFFF:
        raise ValueError(f"INPUT chunk of {len(data)} bytes at offset {offset}")
    return struct.pack("<I", offset) + data


def chunks(size: int, chunk: int) -> list[tuple[int, int]]:
    """(offset, length) of the INPUT chunks that stage ``size`` bytes, each at most ``chunk``, in order."""
    if size < 1 or chunk < 1:
        raise ValueError(f"cannot split {size} bytes into chunks of {chunk}")
    return [(off, min(chunk, size - off)) for off in range(0, size, chunk)]


def parse_input_ok(payload: bytes) -> int:
    """An INPUT_OK payload: the bytes staged so far."""
    if len(payload) != 4:
        raise ValueError(f"INPUT_OK of {len(payload)} bytes, expected 4")
    return int(struct.unpack("<I", payload)[0])


def output_request(offset: int) -> bytes:
    """An OUTPUT payload: read the last output from ``offset`` on."""
    return struct.pack("<I", offset)


def parse_output_ok(payload: bytes) -> tuple[int, bytes]:
    """An OUTPUT_OK payload: (offset, the output bytes from there)."""
    if len(payload) <= OFFSET:
        raise ValueError(f"OUTPUT_OK of {len(payload)} bytes, expected an offset and at least one byte")
    return int(struct.unpack_from("<I", payload)[0]), payload[OFFSET:]


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
    flags: int = 0  # INFO_FLAGS
    model: str = ""  # the C name of the model INFER runs (firmware with a model table)
    models: tuple[str, ...] = ()  # every model the firmware holds (SELECT one by name)
    rx_max: int = 0  # version 2: the longest payload the device accepts (0: version 1, sized for one input)
    reply_max: int = 0  # version 2: the longest payload it sends

    @property
    def chunked(self) -> bool:
        """The device stages inputs in INPUT chunks and reads outputs in OUTPUT chunks (version 2)."""
        return self.version >= 2 and self.rx_max > OFFSET and self.reply_max > 8

    @property
    def clock_fallback(self) -> bool:
        return bool(self.flags & 0x0001)

    @property
    def clock_failed_step(self) -> str | None:
        step = (self.flags >> 8) & 0xFF
        return CLOCK_STEP_NAMES.get(step, f"#{step}") if step else None

    @staticmethod
    def parse(p: bytes) -> DeviceInfo:
        if len(p) < 24:
            raise ValueError("short INFO payload")
        ver, counter, flags, clock, arena, n_in, n_out, layers = struct.unpack_from("<BBHIIIII", p, 0)
        head, rx_max, reply_max = 24, 0, 0
        if ver >= 2:  # u16 rx_max, u16 reply_max before the strings
            if len(p) < 28:
                raise ValueError("short INFO payload")
            rx_max, reply_max = struct.unpack_from("<HH", p, 24)
            head = 28
        parts = p[head:].split(b"\0")
        if len(parts) < 3:
            raise ValueError("malformed INFO strings")
        text = [x.decode(errors="replace") for x in parts]
        model = text[3] if len(parts) > 4 else ""
        models = tuple(n for n in text[4].split(",") if n) if len(parts) > 5 else ()
        return DeviceInfo(ver, "dwt" if counter == 0 else "systick", clock, arena, n_in, n_out, layers,
                          text[0], text[1], text[2], flags, model, models, rx_max, reply_max)


def c_header() -> str:
    """lw_proto_codes.h: the message types and error codes for the firmware."""
    lines = ["/* Generated from lwcnn_mcu/protocol.py (MESSAGES, ERRORS, INFO_FLAGS, CLOCK_STEPS). Do not edit. */",
             "#ifndef LW_PROTO_CODES_H", "#define LW_PROTO_CODES_H", "",
             f"#define LW_PROTO_VERSION {VERSION}", f"#define LW_PROTO_MAX_PAYLOAD {MAX_PAYLOAD}", ""]
    def block(rows: list[tuple[str, str, str]]) -> list[str]:  # (macro, value, meaning): a comment above each
        return [x for macro, value, meaning in rows for x in (f"/* {meaning} */", f"#define {macro} {value}")]

    lines += block([(f"LW_MSG_{n}", f"0x{c:02X}u", m) for n, c, m in MESSAGES]) + [""]
    lines += block([(f"LW_ERR_{n}", f"{c}u", m) for n, c, m in ERRORS]) + [""]
    lines += block([(f"LW_INFO_{n}", f"0x{c:04X}u", m) for n, c, m in INFO_FLAGS])
    lines += block([(f"LW_CLOCK_STEP_{n}", f"{c}u", m) for n, c, m in CLOCK_STEPS])
    lines += ["", "#endif /* LW_PROTO_CODES_H */", ""]
    return "\n".join(lines)


DOC = "docs/protocol.md"


def doc_tables() -> dict[str, str]:
    """The tables of docs/protocol.md that come from MESSAGES, ERRORS, INFO_FLAGS and CLOCK_STEPS."""
    msgs = ["| name | type | meaning |", "| --- | --- | --- |"]
    msgs += [f"| `{name}` | `0x{code:02X}` | {meaning} |" for name, code, meaning in MESSAGES]
    errs = ["| name | code | meaning |", "| --- | --- | --- |"]
    errs += [f"| `{name}` | {code} | {meaning} |" for name, code, meaning in ERRORS]
    flags = ["| name | bits | meaning |", "| --- | --- | --- |"]
    flags += [f"| `{name}` | `0x{mask:04X}` | {meaning} |" for name, mask, meaning in INFO_FLAGS]
    steps = ["| step | number | what failed |", "| --- | --- | --- |"]
    steps += [f"| `{name}` | {code} | {meaning} |" for name, code, meaning in CLOCK_STEPS]
    return {"messages": "\n".join(msgs), "errors": "\n".join(errs), "info_flags": "\n".join(flags),
            "clock_steps": "\n".join(steps)}


def render_doc(text: str) -> str:
    """text with every ``<!-- generated: NAME -->`` ... ``<!-- end: NAME -->`` block rewritten from
    this module; the prose around the blocks is written by hand."""
    for name, table in doc_tables().items():
        begin, end = f"<!-- generated: {name} (python -m lwcnn_mcu.protocol) -->", f"<!-- end: {name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"{DOC} has no '{begin}' ... '{end}' block")
        text = text[:i] + begin + "\n" + table + "\n" + text[j:]
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m lwcnn_mcu.protocol [PATH]``: regenerate the tables of docs/protocol.md."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parents[1] / DOC
    old = path.read_text()
    new = render_doc(old)
    if new != old:
        path.write_text(new)
    print(f"{path}: {'updated' if new != old else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
