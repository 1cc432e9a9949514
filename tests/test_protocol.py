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
