"""The references run in child processes: a crash, an exit or a hang there is a clean ReferenceFailed,
``verify`` reports it (``tflm_error`` / ``litert_error``, exit code 4) and the tool lives on."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lwcnn_mcu import hostrun, reference, verify
from lwcnn_mcu.errors import ReferenceFailed
from tests.conftest import compile_keras, random_inputs
from tests.test_errors import run


def edit_tflite(buf: bytes, change: Callable[[Any], None]) -> bytes:
    """The .tflite with ``change`` applied to its subgraph (an ai_edge_litert SubGraphT)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    change(m.subgraphs[0])
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.fixture(scope="module")
def tiny(keras, tmp_path_factory):  # noqa: ANN001, ANN201
    """A small int8 model TFLite Micro runs: (compiled, path of its .tflite)."""
    d = tmp_path_factory.mktemp("tiny")
    inp = keras.Input((6, 6, 2), batch_size=1)
    x = keras.layers.Conv2D(3, 3, activation="relu")(inp)
    m = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(x)), name="tiny")
    c = compile_keras(m, d)
    (d / "tiny.tflite").write_bytes(c.tflite)
    return c, d / "tiny.tflite"


@pytest.mark.parametrize("how, reason", [("abort", "killed by SIGABRT"), ("segv", "killed by SIGSEGV"),
                                         ("exit", "exited with code 3"), ("error", "raised RuntimeError")])
def test_a_crashing_worker_is_a_clean_exception(how, reason):  # noqa: ANN001
    with pytest.raises(ReferenceFailed) as info:
        reference.call("tflm", "fault", how)
    e = info.value
    assert e.reference == "TensorFlow Lite Micro" and e.exit_code == 4
    assert reason in e.reason, e.message
    assert f"simulated fault '{how}'" in e.stderr  # what the child printed before it went down
    assert reason in e.message and "simulated fault" in e.message
    assert reference.call("tflm", "ping") != os.getpid()  # a fresh (or the surviving) worker answers


def test_a_hung_worker_is_stopped(monkeypatch):  # noqa: ANN001
    monkeypatch.setenv(reference.TIMEOUT_ENV, "2")
    t0 = time.monotonic()
    with pytest.raises(ReferenceFailed, match="no answer within 2 s"):
        reference.call("litert", "fault", "hang")
    assert time.monotonic() - t0 < 30
    monkeypatch.delenv(reference.TIMEOUT_ENV)
    assert reference.call("litert", "ping") > 0


def test_one_warm_worker_per_reference(tiny):  # noqa: ANN001
    c, _ = tiny
    x = random_inputs(c, 3)
    first = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    pid = reference.call("tflm", "ping")
    t0 = time.perf_counter()
    for _ in range(20):
        assert np.array_equal(reference.tflm_run(c.tflite, x, c.graph.input.shape), first)
    per_call = (time.perf_counter() - t0) / 20
    assert reference.call("tflm", "ping") == pid  # the same process served every call
    assert per_call < 0.25, f"{per_call * 1000:.1f} ms per warm call"
    assert np.array_equal(hostrun.build_host(c.gen.files).run(x), first)


def test_fault_hook_reaches_a_warm_worker(tiny, monkeypatch):  # noqa: ANN001
    c, _ = tiny
    x = random_inputs(c, 2)
    reference.tflm_run(c.tflite, x, c.graph.input.shape)  # warm
    monkeypatch.setenv(reference.FAULT_ENV, "tflm:abort")
    with pytest.raises(ReferenceFailed, match="SIGABRT"):
        reference.tflm_run(c.tflite, x, c.graph.input.shape)
    reference.litert_run(c.tflite, x, c.graph.input.shape)  # the other reference is untouched
    monkeypatch.delenv(reference.FAULT_ENV)
    assert reference.tflm_run(c.tflite, x, c.graph.input.shape).shape == (2, 4)


def test_tflm_prints_its_error_and_it_is_kept(tiny):  # noqa: ANN001
    """A model TFLite Micro refuses with a message (its SOFTMAX output zero point is not -128): the worker
    survives, and the exception carries what TFLite Micro printed."""
    c, _ = tiny
    x = random_inputs(c, 1)
    reference.tflm_run(c.tflite, x, c.graph.input.shape)
    pid = reference.call("tflm", "ping")
    bad = edit_tflite(c.tflite, lambda sg: setattr(sg.tensors[sg.outputs[0]].quantization, "zeroPoint", [0]))
    with pytest.raises(ReferenceFailed) as info:
        reference.tflm_run(bad, x, c.graph.input.shape)
    e = info.value
    assert e.reference == "TensorFlow Lite Micro" and "raised RuntimeError" in e.reason
    assert "zero_point != -128" in e.stderr and "SOFTMAX" in e.message
    assert reference.call("tflm", "ping") == pid


@pytest.mark.parametrize("ref", ["tflm", "litert"])
def test_verify_reports_a_failing_reference(tiny, capsys, monkeypatch, ref):  # noqa: ANN001
    _, path = tiny
    monkeypatch.setenv(reference.FAULT_ENV, f"{ref}:abort")
    code, out, err = run(["verify", str(path), "--samples", "5", "--json"], capsys)
    r = json.loads(out)
    assert "Traceback" not in err
    if ref == "tflm":
        assert code == 4, err
        assert r["c_vs_tflm_bitexact"] is None and r["c_vs_tflm_max_abs_diff"] is None
        assert "TensorFlow Lite Micro could not run the model: killed by SIGABRT" in r["tflm_error"]
        assert r["litert_error"] is None and r["c_vs_litert_bitexact"] == 5  # LiteRT is still compared
        assert "lwcnn-mcu: error: TensorFlow Lite Micro could not run the model" in err
    else:
        assert code == 0, err  # the contract (TFLite Micro) held; LiteRT's failure is reported
        assert r["c_vs_tflm_bitexact"] == 5 and r["tflm_error"] is None
        assert r["c_vs_litert_bitexact"] is None and "LiteRT" in r["litert_error"]
        assert "lwcnn-mcu: warning: LiteRT (reference kernels) could not run the model" in err
    # the table says it in words
    code2, out2, _ = run(["verify", str(path), "--samples", "5"], capsys)
    assert code2 == code
    assert "not compared" in out2


@pytest.mark.slow
def test_mobilenet_untrained(keras, tmp_path, capsys):  # noqa: ANN001
    """keras.applications MobileNet 0.25 at 96x96 with its initial weights (weights=None): every activation
    is zero on the calibration data, the softmax input gets scale ~7.8e-9, and TFLite Micro's (and LiteRT's)
    SOFTMAX Prepare aborts (beta*scale*2^26 must be above 1). Our compile succeeds; verify says why TFLM
    could not run it, and the tool survives."""
    m = keras.applications.MobileNet(alpha=0.25, input_shape=(96, 96, 3), weights=None, classes=2)
    c = compile_keras(m, tmp_path)
    assert c.report["arena_bytes"] > 0
    assert len(c.report["warnings"]) == 1 and "SOFTMAX" in c.report["warnings"][0]
    x = random_inputs(c, 2)
    with pytest.raises(ReferenceFailed) as info:
        reference.tflm_run(c.tflite, x, c.graph.input.shape)
    e = info.value
    assert "SIGABRT" in e.reason and "SOFTMAX" in e.hint and "beta*scale*2^26" in e.hint
    path = tmp_path / "mobilenet.tflite"
    path.write_bytes(c.tflite)
    r = verify.run_verify(str(path), samples=3)
    assert r["c_vs_tflm_bitexact"] is None and "SOFTMAX" in r["tflm_error"]
    assert r["c_vs_litert_bitexact"] is None and "LiteRT" in r["litert_error"]  # the same check, same abort
    assert not verify.is_pass(r)
    code, out, err = run(["verify", str(path), "--samples", "3", "--json"], capsys)
    assert code == 4 and json.loads(out)["tflm_error"] == r["tflm_error"]


def test_softmax_scale_checks(tiny, tmp_path, capsys):  # noqa: ANN001
    """The softmax input scale: fine -> no warning; beta*scale*2^26 in [0.5, 1] -> compiled with a warning
    (TFLite Micro aborts); below 0.5 -> refused with exit code 2 (no kernel computes that)."""
    c, path = tiny
    assert c.report["warnings"] == []
    soft = next(op for op in c.graph.ops if op.kind == "softmax")
    for scale, code in ((1.2e-8, 0), (5e-9, 2)):
        def small_scale(sg: Any, s: float = scale) -> None:
            t = next(t for t in sg.tensors if t.name.decode() == c.graph.t(soft.inputs[0]).name)
            t.quantization.scale = [s]

        p = tmp_path / f"s{scale}.tflite"
        p.write_bytes(edit_tflite(c.tflite, small_scale))
        rc, out, err = run(["compile", str(p), "-o", str(tmp_path / f"out{scale}"), "--json"], capsys)
        assert rc == code, err
        assert "SOFTMAX" in err and "Traceback" not in err
        if code == 0:
            assert "TFLite Micro (and LiteRT) abort" in json.loads(out)["warnings"][0]
        else:
            assert "too small" in err
