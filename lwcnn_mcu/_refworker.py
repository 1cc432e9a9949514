"""The child process that runs a reference interpreter (TFLite Micro or LiteRT) for ``reference.py``.

Both interpreters are C++ that aborts the whole process on some models (a failed ``TFLITE_CHECK`` is a
bare ``abort()``), so they never run inside the tool: ``reference.py`` starts this module once per
reference (``python -m lwcnn_mcu._refworker``), keeps it warm, and sends it one request per call.

Protocol, on the child's standard input and output: frames of an 8-byte little-endian length and a
pickle (protocol 5, so numpy arrays travel as one buffer). A request is ``{"fn": NAME, "args": (...),
"fault": None | HOW}``; the reply is ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": "..."}``
for a Python exception (the worker stays up). The child's C/C++ stderr goes to a file the parent reads
back when a call fails; anything a library prints on stdout is sent to stderr too, so it cannot corrupt
the protocol. End of input: the worker exits.

``fault`` is the documented test hook (``LWCNN_REFERENCE_FAULT``, read by the parent at each call, see
``reference.py``): before running the request the worker prints a line on stderr and then aborts
(``abort``), kills itself with SIGSEGV (``segv``), exits with code 3 (``exit``), hangs (``hang``) or raises
(``error``). Nothing else reads it.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lwcnn_mcu.util import capture_fd2

# TFLite Micro's arena: at least this, plus every non-constant tensor (kPreserveAllTensors keeps them all);
# an allocation failure doubles it (a model whose bookkeeping outgrows the estimate) up to ARENA_RETRIES times.
ARENA_FLOOR = 1 << 20
ARENA_RETRIES = 4
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 4}  # TensorType -> bytes per element


def arena_size(buf: bytes) -> int:
    """An arena TFLite Micro can allocate this model in: the old floor (4x the flatbuffer, 1 MiB at least)
    plus the bytes of every tensor that has no constant data (activations, scratch-free upper bound)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    try:
        return max(len(buf) * 4, ARENA_FLOOR) + _activation_bytes(fb.Model.GetRootAs(bytes(buf), 0))
    except Exception:  # noqa: BLE001 - a flatbuffer we cannot walk: TFLite Micro will say what is wrong with it
        return max(len(buf) * 4, ARENA_FLOOR)


def _activation_bytes(model: Any) -> int:
    act = 0
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            b = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            if b is not None and b.DataLength() > 0:
                continue
            n = 1
            for d in range(tensor.ShapeLength()):
                n *= max(1, int(tensor.Shape(d)))
            act += n * _TYPE_BYTES.get(tensor.Type(), 8) + 64  # + alignment
    return act


_TFLM_CACHE: dict[tuple[bytes, bool], Any] = {}


def _tflm(buf: bytes, preserve: bool = False) -> Any:
    """A TFLite Micro interpreter for this model (the last two are kept: tests run one model many times)."""
    from tflite_micro.python.tflite_micro import runtime

    key = (bytes(buf), preserve)
    if key in _TFLM_CACHE:
        return _TFLM_CACHE[key]
    cfg = runtime.InterpreterConfig.kPreserveAllTensors if preserve else runtime.InterpreterConfig.kAllocationRecording
    size = arena_size(buf)
    for attempt in range(ARENA_RETRIES + 1):
        with capture_fd2() as lines:  # what TFLite Micro prints while it allocates and prepares
            try:
                interp = runtime.Interpreter.from_bytes(bytes(buf), arena_size=size, intrepreter_config=cfg)
                failed = None
            except RuntimeError as exc:
                failed = exc
        if failed is None:
            break
        short = any("missing:" in line for line in lines)  # "Failed to ... Requested: N, available M, missing: K"
        if not short or attempt == ARENA_RETRIES:
            sys.stderr.write("\n".join(lines) + "\n")  # the parent puts these lines in its exception
            raise failed
        size *= 2
    while len(_TFLM_CACHE) >= 2:
        _TFLM_CACHE.pop(next(iter(_TFLM_CACHE)))
    _TFLM_CACHE[key] = interp
    return interp


def tflm_run(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    interp = _tflm(buf)
    outs = []
    for i in range(len(x)):
        interp.set_input(x[i].reshape(in_shape), 0)
        interp.invoke()
        outs.append(np.asarray(interp.get_output(0)).reshape(-1).copy())
    return np.stack(outs)  # in the model's output type (int8, uint8 or float32)


def tflm_trace(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...], tensor_ids: list[int]) -> dict[int, np.ndarray]:
    interp = _tflm(buf, preserve=True)
    interp.set_input(x.reshape(in_shape), 0)
    interp.invoke()
    return {t: np.asarray(interp.GetTensor(t, 0)["tensor_data"]).reshape(-1).astype(np.int8) for t in tensor_ids}


def tflm_arena(buf: bytes, in_shape: tuple[int, ...]) -> dict[str, int]:
    _TFLM_CACHE.pop((bytes(buf), False), None)  # the allocation record of a fresh interpreter, invoked once
    interp = _tflm(buf)
    interp.set_input(np.zeros(in_shape, interp.get_input_details(0)["dtype"]), 0)
    interp.invoke()
    with capture_fd2() as lines:
        interp.print_allocations()
    text = "\n".join(lines)
    nums = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"\[RecordingMicroAllocator\] Arena allocation {key} (\d+) bytes", text)
        if m:
            nums[key] = int(m.group(1))
    return nums


def litert_run(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(buf), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    i_idx = interp.get_input_details()[0]["index"]
    o_idx = interp.get_output_details()[0]["index"]
    outs = []
    for i in range(len(x)):
        interp.set_tensor(i_idx, x[i].reshape(in_shape))
        interp.invoke()
        outs.append(interp.get_tensor(o_idx).reshape(-1).copy())
    return np.stack(outs)


def fault(how: str) -> None:
    """The test hook: fail the way ``how`` says (see the module docstring)."""
    sys.stderr.write(f"lwcnn-mcu reference worker: simulated fault '{how}'\n")
    sys.stderr.flush()
    if how == "abort":
        os.abort()
    if how == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "exit":
        os._exit(3)
    if how == "hang":
        time.sleep(1e6)
    raise RuntimeError(f"simulated fault '{how}'")


def ping() -> int:
    return os.getpid()


FUNCS: dict[str, Callable[..., Any]] = {"tflm_run": tflm_run, "tflm_trace": tflm_trace, "tflm_arena": tflm_arena,
                                        "litert_run": litert_run, "fault": fault, "ping": ping}


def _read_exact(f: Any, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    out = os.fdopen(os.dup(1), "wb")  # the protocol's channel
    os.dup2(2, 1)  # whatever C or Python prints on stdout lands in the stderr file
    sys.stdout = sys.stderr
    inp = os.fdopen(0, "rb", buffering=0)
    while True:
        head = _read_exact(inp, 8)
        if head is None:
            return
        body = _read_exact(inp, int.from_bytes(head, "little"))
        if body is None:
            return
        req = pickle.loads(body)
        try:
            if req.get("fault"):
                fault(req["fault"])
            reply = {"ok": True, "value": FUNCS[req["fn"]](*req["args"])}
        except Exception as exc:  # noqa: BLE001 - every Python-level failure goes back to the parent as text
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stderr.flush()
        data = pickle.dumps(reply, protocol=5)
        out.write(len(data).to_bytes(8, "little") + data)
        out.flush()


if __name__ == "__main__":
    main()
