"""The references the generated C is held to: TensorFlow Lite Micro (bit-exact contract) and
LiteRT's reference kernels (a second, reported opinion)."""

from __future__ import annotations

import os
import re

import numpy as np

from lwcnn_mcu.util import capture_fd2


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """float -> int8 (or uint8) like TFLite's QUANTIZE: round half away from zero of x/scale (in float32),
    plus the zero point, clamped."""
    v = np.clip(np.asarray(x, np.float32) / np.float32(scale), -512, 512)  # wider than the type after the zero point
    r = np.trunc(v)
    frac = v - r  # exact for |v| <= 512
    r = r + (frac >= 0.5) - (frac <= -0.5)  # std::round: halves away from zero (floor(|v| + 0.5) can round up)
    info = np.iinfo(dtype)
    return np.clip(r + zero_point, info.min, info.max).astype(dtype)


def _tflm(buf: bytes, preserve: bool = False):  # noqa: ANN202
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tflite_micro.python.tflite_micro import runtime

    cfg = runtime.InterpreterConfig.kPreserveAllTensors if preserve else runtime.InterpreterConfig.kAllocationRecording
    return runtime.Interpreter.from_bytes(bytes(buf), arena_size=max(len(buf) * 4, 1 << 20), intrepreter_config=cfg)


def tflm_run(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """Run TFLite Micro on each input (N, ...) of the model's input type; returns (N, out_size) of its output type."""
    interp = _tflm(buf)
    outs = []
    for i in range(len(x)):
        interp.set_input(x[i].reshape(in_shape), 0)
        interp.invoke()
        outs.append(np.asarray(interp.get_output(0)).reshape(-1).copy())
    return np.stack(outs)


def tflm_trace(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...], tensor_ids: list[int]) -> dict[int, np.ndarray]:
    interp = _tflm(buf, preserve=True)
    interp.set_input(x.reshape(in_shape), 0)
    interp.invoke()
    return {t: np.asarray(interp.GetTensor(t, 0)["tensor_data"]).reshape(-1).astype(np.int8) for t in tensor_ids}


def tflm_arena(buf: bytes, in_shape: tuple[int, ...]) -> dict[str, int]:
    """TFLite Micro's arena for this model: total, activations ('head') and bookkeeping ('tail')."""
    interp = _tflm(buf)
    interp.set_input(np.zeros(in_shape, np.int8), 0)
    interp.invoke()
    with capture_fd2() as lines:
        interp.print_allocations()
    text = "\n".join(lines)
    nums = {}
    for key, pat in (("total", r"\[RecordingMicroAllocator\] Arena allocation total (\d+) bytes"),
                     ("head", r"\[RecordingMicroAllocator\] Arena allocation head (\d+) bytes"),
                     ("tail", r"\[RecordingMicroAllocator\] Arena allocation tail (\d+) bytes")):
        m = re.search(pat, text)
        if m:
            nums[key] = int(m.group(1))
    return nums


def litert_run(buf: bytes, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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
