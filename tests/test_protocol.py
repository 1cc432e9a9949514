"""Frame codec on both sides: the Python decoder (property-based) and the firmware's C parser
built for the host under sanitizers, fed valid, corrupted, truncated and random frames."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwcnn_mcu import protocol
from lwcnn_mcu.builder import firmware_dir
from lwcnn_mcu.hostrun import SANITIZE, STRICT, compiler

payloads = st.binary(max_size=600)


@given(st.integers(0, 255), st.integers(0, 255), payloads)
def test_roundtrip(t, seq, p):  # noqa: ANN001
    assert protocol.Decoder().feed(protocol.encode(t, seq, p)) == [protocol.Frame(t, seq, p)]


@given(st.binary(max_size=200).filter(lambda b: b"\xa5" not in b), payloads, st.binary(max_size=200), st.data())
def test_garbage_around_and_split(pre, p, post, data):  # noqa: ANN001
    stream = pre + protocol.encode(0x82, 9, p) + post.replace(b"\xa5", b"")
    d = protocol.Decoder()
    frames = []
    cut = data.draw(st.integers(0, len(stream)))
    frames += d.feed(stream[:cut])
    frames += d.feed(stream[cut:])
    assert frames == [protocol.Frame(0x82, 9, p)]


@settings(max_examples=300)
@given(payloads, st.data())
def test_corruption_never_yields_a_wrong_frame(p, data):  # noqa: ANN001
    frame = bytearray(protocol.encode(0x82, 3, p))
    i = data.draw(st.integers(0, len(frame) - 1))
    frame[i] ^= data.draw(st.integers(1, 255))
    got = protocol.Decoder().feed(bytes(frame))
    assert all(f == protocol.Frame(0x82, 3, p) for f in got)
    assert not got or i >= len(frame)  # a single corrupted byte is always detected


@given(st.binary(max_size=3000))
def test_decoder_survives_random_bytes(b):  # noqa: ANN001
    d = protocol.Decoder()
    for f in d.feed(b):
        assert protocol.encode(f.type, f.seq, f.payload) in b


def test_device_info_parse():
    import struct

    p = struct.pack("<BBHIIIII", 1, 1, 0, 25_000_000, 9040, 784, 10, 14) + b"qemu-m4\0lwcnn-fw 1\0" + b"ab" * 32 + b"\0"
    info = protocol.DeviceInfo.parse(p)
    assert (info.board, info.counter, info.input_size, info.model_hash) == ("qemu-m4", "systick", 784, "ab" * 32)


@pytest.fixture(scope="module")
def c_parser(tmp_path_factory) -> Path:  # noqa: ANN001
    d = tmp_path_factory.mktemp("proto")
    (d / "lw_proto_codes.h").write_text(protocol.c_header())
    exe = d / "proto_feed"
    src = [str(firmware_dir() / "lw_proto.c"), str(Path(__file__).parent / "c" / "proto_feed.c")]
    r = subprocess.run([compiler(), *STRICT, *SANITIZE, "-g", "-O1", "-DLW_PROTO_RX_MAX=1024", "-I", str(d), "-I",
                        str(firmware_dir()), *src, "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def feed_c(exe: Path, data: bytes) -> list[tuple[str, ...]]:
    r = subprocess.run([str(exe)], input=data, capture_output=True, timeout=60)
    assert r.returncode == 0 and b"runtime error" not in r.stderr and b"Sanitizer" not in r.stderr, r.stderr
    return [tuple(line.split()) for line in r.stdout.decode().splitlines()]


def test_c_parser_finds_frames_between_garbage(c_parser):  # noqa: ANN001
    rng = random.Random(1)
    stream, expect = b"", []
    for k in range(200):
        p = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 900)))
        stream += bytes(rng.choice([b for b in range(256) if b != 0xA5]) for _ in range(rng.randrange(0, 20)))
        stream += protocol.encode(k % 256, (k * 7) % 256, p)
        expect.append(("F", str(k % 256), str((k * 7) % 256), str(len(p)), str(sum(p))))
    assert feed_c(c_parser, stream) == expect


def test_c_parser_reports_crc_and_length_errors(c_parser):  # noqa: ANN001
    good = protocol.encode(2, 5, b"hello")
    bad = bytearray(good)
    bad[8] ^= 0x40
    too_long = b"\xa5\x5a\x02\x01" + (2000).to_bytes(2, "little")
    events = feed_c(c_parser, bytes(bad) + b"\x00" + too_long + b"\x00" + good)
    assert events == [("E", "1"), ("E", "2"), ("F", "2", "5", "5", str(sum(b"hello")))]


def test_c_parser_random_and_truncated_input(c_parser):  # noqa: ANN001
    rng = random.Random(2)
    chunks = []
    for _ in range(300):
        f = protocol.encode(rng.randrange(256), rng.randrange(256), bytes(rng.randrange(256) for _ in range(50)))
        chunks.append(f[: rng.randrange(len(f) + 1)])  # truncated frames
        chunks.append(bytes(rng.randrange(256) for _ in range(rng.randrange(100))))
    events = feed_c(c_parser, b"".join(chunks) + bytes(rng.randrange(256) for _ in range(200_000)))
    assert all(e[0] in ("F", "E") for e in events)  # no crash, no sanitizer report, only events


def test_protocol_doc_tables_are_generated():
    """docs/protocol.md's message and error tables are MESSAGES and ERRORS (python -m lwcnn_mcu.protocol)."""
    doc = Path(protocol.__file__).resolve().parents[1] / protocol.DOC
    text = doc.read_text()
    assert protocol.render_doc(text) == text, "docs/protocol.md is out of date: run python -m lwcnn_mcu.protocol"
    for name, _code, _ in protocol.MESSAGES + protocol.ERRORS:
        assert f"`{name}`" in text


# --------------------------------------------------------------------------------------------------
# Inputs and outputs larger than a frame: INPUT / OUTPUT chunks
# --------------------------------------------------------------------------------------------------

ERR = {name: code for name, code, _ in protocol.ERRORS}


@settings(deadline=None)
@given(st.integers(1, 60_000), st.integers(1, 5000))
def test_chunks_stage_every_byte_once_in_order(size, chunk):  # noqa: ANN001
    plan = protocol.chunks(size, chunk)
    assert plan[0][0] == 0 and sum(n for _, n in plan) == size
    assert all(0 < n <= chunk for _, n in plan)
    assert all(a + n == b for (a, n), (b, _) in zip(plan, plan[1:], strict=False))  # no gap, no overlap


def test_chunk_payloads():
    import struct

    big = bytes(range(256)) * 108  # a 96x96x3 input: 27,648 bytes, more than a frame holds
    with pytest.raises(ValueError, match="exceeds 4096"):
        protocol.encode(protocol.MSG["INFER"], 1, big)
    plan = protocol.chunks(len(big), protocol.CHUNK)
    frames = [protocol.encode(protocol.MSG["INPUT"], k, protocol.input_chunk(o, big[o:o + n]))
              for k, (o, n) in enumerate(plan)]
    assert len(frames) == 27 and all(len(f) == protocol.OVERHEAD + 4 + protocol.CHUNK for f in frames)
    got = protocol.Decoder().feed(b"".join(frames))
    assert b"".join(f.payload[4:] for f in got) == big
    assert [struct.unpack_from("<I", f.payload)[0] for f in got] == [o for o, _ in plan]
    with pytest.raises(ValueError):
        protocol.input_chunk(0, b"")  # a chunk carries at least one byte
    with pytest.raises(ValueError):
        protocol.input_chunk(-1, b"x")
    assert protocol.parse_input_ok(struct.pack("<I", 27_648)) == 27_648
    for bad in (b"", b"\x00" * 3, b"\x00" * 5):
        with pytest.raises(ValueError, match="INPUT_OK"):
            protocol.parse_input_ok(bad)
    assert protocol.parse_output_ok(protocol.output_request(1024) + b"\x01\x02") == (1024, b"\x01\x02")
    for bad in (b"", b"\x00\x04\x00\x00"):  # no offset, or no byte after it
        with pytest.raises(ValueError, match="OUTPUT_OK"):
            protocol.parse_output_ok(bad)


def test_device_info_version_2_has_the_buffer_sizes():
    import struct

    strings = b"qemu-m4\0lwcnn-fw 1\0" + b"ab" * 32 + b"\0m96\0m96\0"
    head = struct.pack("<BBHIIIII", 2, 1, 0, 25_000_000, 40_000, 27_648, 1200, 6)
    info = protocol.DeviceInfo.parse(head + struct.pack("<HH", 1028, 2048) + strings)
    assert (info.rx_max, info.reply_max, info.chunked, info.model, info.input_size) == (1028, 2048, True, "m96",
                                                                                        27_648)
    old = protocol.DeviceInfo.parse(struct.pack("<BBHIIIII", 1, 1, 0, 1, 2, 3, 4, 5) + strings)
    assert (old.rx_max, old.reply_max, old.chunked, old.board) == (0, 0, False, "qemu-m4")
    with pytest.raises(ValueError):
        protocol.DeviceInfo.parse(head + b"\x04")  # version 2 without its buffer sizes


def test_c_header_has_every_code():
    h = protocol.c_header()
    assert "#define LW_PROTO_VERSION 2" in h
    for name, code, _ in protocol.MESSAGES:
        assert f"#define LW_MSG_{name} 0x{code:02X}u" in h
    for name, code, _ in protocol.ERRORS:
        assert f"#define LW_ERR_{name} {code}u" in h
    codes = [c for _, c, _ in protocol.MESSAGES]
    assert len(set(codes)) == len(codes) and len({c for _, c, _ in protocol.ERRORS}) == len(protocol.ERRORS)


def stage_model(size: int, staged: int, payload: bytes, buf: bytearray) -> tuple[int, int]:
    """What the firmware's lw_proto_stage must do (docs/protocol.md): (error code or 0, bytes staged)."""
    if len(payload) <= 4:
        return ERR["BAD_OFFSET"], staged
    offset, data = int.from_bytes(payload[:4], "little"), payload[4:]
    if offset >= size or len(data) > size - offset:
        return ERR["BAD_OFFSET"], staged
    if offset > staged:
        return ERR["INPUT_INCOMPLETE"], staged
    buf[offset:offset + len(data)] = data
    return 0, len(data) if offset == 0 else max(staged, offset + len(data))


def feed_stage(exe: Path, size: int, frames: list[tuple[int, bytes]]) -> list[tuple[str, ...]]:
    stream = b"".join(protocol.encode(t, k, p) for k, (t, p) in enumerate(frames))
    r = subprocess.run([str(exe), str(size)], input=stream, capture_output=True, timeout=60)
    assert r.returncode == 0 and b"runtime error" not in r.stderr and b"Sanitizer" not in r.stderr, r.stderr
    return [tuple(line.split()) for line in r.stdout.decode().splitlines() if not line.startswith("F")]


def expected_stage(size: int, frames: list[tuple[int, bytes]]) -> list[tuple[str, ...]]:
    buf, staged, out = bytearray(size), 0, []
    for t, p in frames:
        if t == protocol.MSG["INPUT"]:
            err, staged = stage_model(size, staged, p, buf)
            out.append(("S", str(err), str(staged)))
        elif t == protocol.MSG["INFER"] and not p:
            out.append(("I", "1" if staged == size else "0"))
    return out + [("B", buf.hex())]


def test_c_staging_of_a_chunked_input_and_bad_offsets(c_parser):  # noqa: ANN001
    """The firmware's staging of INPUT chunks (lw_proto_stage) into a buffer of exactly the input's size
    under AddressSanitizer: a whole input in order; a chunk sent twice; out-of-range, wrapping, empty and
    gapped chunks refused without a byte written; INFER of a staged input that is not all there."""
    size, inp, infer = 3000, protocol.MSG["INPUT"], protocol.MSG["INFER"]
    x = bytes(random.Random(3).randrange(256) for _ in range(size))
    good = [(inp, protocol.input_chunk(o, x[o:o + n])) for o, n in protocol.chunks(size, 1000)]
    bad = [
        (inp, protocol.input_chunk(size, b"\x01")),  # at the end
        (inp, protocol.input_chunk(2500, b"\x02" * 501)),  # one byte past the end
        (inp, protocol.input_chunk(0xFFFFFFFF, b"\x03" * 2)),  # offset + length wraps around 2^32
        (inp, protocol.input_chunk(0, b"\x04" * 1001)[:4]),  # the offset and no byte
        (inp, b"\x00\x00"),  # not even an offset
    ]
    frames = [(infer, b"")] + good[:1] + [(infer, b"")] + good[1:2] + good[1:2] + bad + good[2:] + [(infer, b"")]
    frames += [(inp, protocol.input_chunk(0, b"\x05" * 10)), (inp, protocol.input_chunk(2000, b"\x06" * 10)),
               (infer, b"")]  # a new input from offset 0: a chunk past its staged bytes is a gap
    got = feed_stage(c_parser, size, frames)
    assert got == expected_stage(size, frames)
    codes = [int(e[1]) for e in got if e[0] == "S"]
    assert codes.count(ERR["BAD_OFFSET"]) == 5 and codes.count(ERR["INPUT_INCOMPLETE"]) == 1
    assert [e[1] for e in got if e[0] == "I"] == ["0", "0", "1", "0"]
    assert bytes.fromhex(got[-1][1]) == b"\x05" * 10 + x[10:]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2500), st.data())
def test_c_staging_matches_the_rule_on_random_chunks(c_parser, size, data):  # noqa: ANN001
    inp = protocol.MSG["INPUT"]
    frames = []
    for _ in range(data.draw(st.integers(1, 25))):
        offset = data.draw(st.one_of(st.integers(0, size + 2), st.integers(0, 0xFFFFFFFF)))
        n = data.draw(st.integers(0, min(1000, size + 3)))
        frames.append((inp, offset.to_bytes(4, "little") + bytes(data.draw(st.binary(min_size=n, max_size=n)))))
        if data.draw(st.booleans()):
            frames.append((protocol.MSG["INFER"], b""))
    assert feed_stage(c_parser, size, frames) == expected_stage(size, frames)
