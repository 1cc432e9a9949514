"""The references the generated C is held to: TensorFlow Lite Micro (bit-exact contract) and
LiteRT's reference kernels (a second, reported opinion).

Neither runs in this process: both are C++ that can abort the whole process on a model they cannot
handle (a failed ``TFLITE_CHECK`` is a bare ``abort()``). Each reference has one warm worker process
(``lwcnn_mcu/_refworker.py``), started at its first call and reused for every later one; one call sends
the whole batch of inputs. A worker that dies (a signal, an exit), hangs past the time limit, or raises
turns into :class:`~lwcnn_mcu.errors.ReferenceFailed` naming the reference, the signal or exit code and
what it printed on stderr; the next call starts a fresh worker.

Time limit of one call: ``LWCNN_REFERENCE_TIMEOUT`` seconds when set, else 300 s plus 1 s per input.

Test hook: ``LWCNN_REFERENCE_FAULT=REF:HOW`` (``REF`` ``tflm`` or ``litert``; ``HOW`` ``abort``, ``segv``,
``exit``, ``hang`` or ``error``) makes that reference's worker fail that way on every call while it is
set (read here at each call and sent with the request; tests use it to check what a crash gives).
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from lwcnn_mcu.errors import ReferenceFailed

__all__ = ["ReferenceFailed", "litert_run", "quantize_input", "tflm_arena", "tflm_run", "tflm_trace"]

NAMES = {"tflm": "TensorFlow Lite Micro", "litert": "LiteRT (reference kernels)"}
FAULT_ENV = "LWCNN_REFERENCE_FAULT"
TIMEOUT_ENV = "LWCNN_REFERENCE_TIMEOUT"
TIMEOUT_BASE_S = 300.0
TIMEOUT_PER_INPUT_S = 1.0


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """float -> int8 (or uint8) like TFLite's QUANTIZE: round half away from zero of x/scale (in float32),
    plus the zero point, clamped."""
    v = np.clip(np.asarray(x, np.float32) / np.float32(scale), -512, 512)  # wider than the type after the zero point
    r = np.trunc(v)
    frac = v - r  # exact for |v| <= 512
    r = r + (frac >= 0.5) - (frac <= -0.5)  # std::round: halves away from zero (floor(|v| + 0.5) can round up)
    info = np.iinfo(dtype)
    return np.clip(r + zero_point, info.min, info.max).astype(dtype)


class _Worker:
    """One child process running ``lwcnn_mcu._refworker`` for one reference."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.owner = os.getpid()  # a forked copy of this process must not talk on the same pipes
        self.lock = threading.Lock()
        self.err = tempfile.TemporaryFile()
        root = str(Path(__file__).resolve().parents[1])  # this lwcnn_mcu, whatever sys.path says
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.pop(FAULT_ENV, None)  # the hook travels with each request, never with the process
        # -P: not the current folder first on sys.path, so the worker imports this very lwcnn_mcu
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "lwcnn_mcu._refworker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, env=env, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_since(self, offset: int) -> str:
        size = os.fstat(self.err.fileno()).st_size
        text = os.pread(self.err.fileno(), max(0, size - offset), offset).decode(errors="replace")
        return "\n".join(line for line in text.splitlines() if line.strip())

    def close(self) -> None:
        if self.alive():
            try:
                self.proc.stdin.close()  # the worker exits at the end of its input
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.err.close()

    def _read(self, n: int, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        data = bytearray()
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(n - len(data), 1 << 20))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def call(self, fn: str, args: tuple[Any, ...], timeout: float, fault: str | None) -> Any:
        """Run ``fn(*args)`` in the worker; a crash, a hang or an exception there raises ReferenceFailed."""
        offset = os.fstat(self.err.fileno()).st_size
        name = NAMES[self.ref]
        try:
            req = pickle.dumps({"fn": fn, "args": args, "fault": fault}, protocol=5)
            self.proc.stdin.write(len(req).to_bytes(8, "little") + req)
            self.proc.stdin.flush()
            deadline = time.monotonic() + timeout
            head = self._read(8, deadline)
            body = None if head is None else self._read(int.from_bytes(head, "little"), deadline)
        except TimeoutError:
            self.proc.kill()
            self.proc.wait()
            raise ReferenceFailed(name, f"no answer within {timeout:.0f} s (hung; stopped it)",
                                  self.stderr_since(offset)) from None
        except (BrokenPipeError, ConnectionResetError):
            body = None
        except BaseException:  # e.g. Ctrl-C mid-call: a reply may still come, so this worker is done
            self.proc.kill()
            self.proc.wait()
            raise
        if body is None:  # the worker died
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
            raise ReferenceFailed(name, _describe_exit(rc), self.stderr_since(offset))
        reply = pickle.loads(body)
        if not reply["ok"]:
            raise ReferenceFailed(name, f"it raised {reply['error']}", self.stderr_since(offset))
        return reply["value"]


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        return f"killed by {sig} (signal {-rc}, exit status {128 - rc})"
    return f"exited with code {rc}"


_WORKERS: dict[str, _Worker] = {}
_WORKERS_LOCK = threading.Lock()


def _worker(ref: str) -> _Worker:
    with _WORKERS_LOCK:
        w = _WORKERS.get(ref)
        if w is not None and w.owner != os.getpid():  # inherited through fork: the parent's, leave it be
            w = None
        if w is None or not w.alive():
            if w is not None:
                w.close()
            w = _WORKERS[ref] = _Worker(ref)
        return w


@atexit.register
def shutdown() -> None:
    """Stop the worker processes (they also stop by themselves when this process ends)."""
    with _WORKERS_LOCK:
        for w in _WORKERS.values():
            if w.owner == os.getpid():
                w.close()
        _WORKERS.clear()


def _timeout(n_inputs: int) -> float:
    env = os.environ.get(TIMEOUT_ENV)
    if env:
        return float(env)
    return TIMEOUT_BASE_S + TIMEOUT_PER_INPUT_S * n_inputs


def call(ref: str, fn: str, *args: Any, n_inputs: int = 1, model: bytes | None = None) -> Any:
    """Run the worker function ``fn`` of reference ``ref`` (``tflm`` or ``litert``) on ``args`` in its child
    process. Failures raise :class:`ReferenceFailed`; for a crash without a message on a ``model``, the
    exception carries a hint of the likely cause when one is known (:func:`explain_crash`)."""
    fault = None
    spec = os.environ.get(FAULT_ENV, "")
    if spec.partition(":")[0] == ref:
        fault = spec.partition(":")[2] or "abort"
    w = _worker(ref)
    with w.lock:
        try:
            return w.call(fn, args, _timeout(n_inputs), fault)
        except ReferenceFailed as exc:
            if not exc.stderr and exc.reason.startswith("killed") and model is not None and not exc.hint:
                hint = explain_crash(model)
                if hint:
                    raise ReferenceFailed(exc.reference, exc.reason, exc.stderr, hint) from None
            raise


def explain_crash(buf: bytes) -> str:
    """The known cause of a silent abort in TFLite (Micro) on this model, or "".

    SOFTMAX: Prepare computes beta * input_scale * 2^26 and hands it to QuantizeMultiplierGreaterThanOne,
    whose TFLITE_CHECK_GT(multiplier, 1.0) aborts without a message when it is not above 1: an input
    scale below about 1.5e-8 (for beta 1). The TFLite converter writes such a scale when calibration saw
    a constant (usually all-zero) softmax input, e.g. an untrained network whose activations all died."""
    try:
        from ai_edge_litert import schema_py_generated as fb

        model = fb.Model.GetRootAs(bytes(buf), 0)
        sg = model.Subgraphs(0)
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != fb.BuiltinOperator.SOFTMAX:
                continue
            beta = 1.0
            opts = op.BuiltinOptions()
            if opts is not None:
                so = fb.SoftmaxOptions()
                so.Init(opts.Bytes, opts.Pos)
                beta = float(so.Beta())
            t = sg.Tensors(op.Inputs(0))
            q = t.Quantization()
            if q is None or q.ScaleLength() == 0:
                continue
            scale = float(q.Scale(0))
            real = beta * scale * (1 << 26)
            if real <= 1.0:
                return (f"Likely cause: the SOFTMAX on '{t.Name().decode()}' has input scale {scale:.3g}, so "
                        f"beta*scale*2^26 = {real:.3g} is not above 1, which TFLite's softmax Prepare "
                        "(PreprocessSoftmaxScaling -> QuantizeMultiplierGreaterThanOne) refuses with a silent "
                        "abort; the calibration data gave the softmax input no range (an untrained model?): "
                        "calibrate with data that exercises the model, or train it")
    except Exception:  # noqa: BLE001 - a hint is a courtesy; a model we cannot read has none
        return ""
    return ""


def tflm_run(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """Run TFLite Micro on each input (N, ...) of the model's input type; returns (N, out_size) of its output type."""
    return call("tflm", "tflm_run", bytes(buf), np.ascontiguousarray(x), tuple(in_shape), n_inputs=len(x),
                model=buf)


def tflm_trace(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...], tensor_ids: list[int]) -> dict[int, np.ndarray]:
    """Every listed tensor of TFLite Micro after one inference on ``x`` (flat int8 arrays)."""
    return call("tflm", "tflm_trace", bytes(buf), np.ascontiguousarray(x), tuple(in_shape), list(tensor_ids),
                model=buf)


def tflm_arena(buf: bytes, in_shape: tuple[int, ...]) -> dict[str, int]:
    """TFLite Micro's arena for this model: total, activations ('head') and bookkeeping ('tail')."""
    return call("tflm", "tflm_arena", bytes(buf), tuple(in_shape), model=buf)


def litert_run(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """Run LiteRT's reference kernels (BUILTIN_REF) on each input (N, ...) of the model's input type; returns
    (N, out_size) of its output type."""
    return call("litert", "litert_run", bytes(buf), np.ascontiguousarray(x), tuple(in_shape), n_inputs=len(x),
                model=buf)
