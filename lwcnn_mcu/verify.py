"""``lwcnn-mcu verify``: the generated C, built for the host, against TFLite Micro (must be equal
on every byte), LiteRT's reference kernels (reported) and the float Keras or ONNX model (argmax)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lwcnn_mcu import backend, compiler, datasets, hostrun, ir, reference
from lwcnn_mcu.errors import LwcnnError
from lwcnn_mcu.frontend import keras_model


@dataclass
class TestData:
    x: np.ndarray | None  # float inputs in the model's input range (None: random int8)
    y: np.ndarray | None
    source: str


def load_test_data(model: str, dataset: str | None, data: str | None, labels: str | None, samples: int,
                   input_shape: tuple[int, ...]) -> TestData:
    if samples < 1:
        raise LwcnnError(f"--samples must be at least 1 (got {samples})")
    if data is not None:
        x = compiler.load_npy(data, "data")
        if str(model).endswith(".onnx"):  # in the ONNX model's own layout (NCHW): transposed to the C's NHWC
            from lwcnn_mcu.frontend import onnx_model

            x = onnx_model.data_to_c_layout(x, input_shape, data, "test data")[:samples]
        else:
            x = keras_model.check_data(x, input_shape, data, "test data")[:samples]
        y = None
        if labels is not None:
            y = compiler.load_npy(labels, "labels")
            if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) < len(x):
                raise LwcnnError(f"{labels}: labels must be a 1-D integer array with at least {len(x)} entries "
                                 f"(it is {y.dtype} shaped {list(y.shape)})")
            y = y[:len(x)].astype(np.int64)
        return TestData(x, y, str(data))
    if labels is not None:
        raise LwcnnError("--labels needs --data")
    ds = dataset or compiler.dataset_for(model)
    if ds is not None:
        d = datasets.load(datasets.check_name(ds))
        if tuple(d.x_test.shape[1:]) != tuple(input_shape):
            raise LwcnnError(f"dataset '{ds}' images are {list(d.x_test.shape[1:])}, the model needs "
                             f"{list(input_shape)}")
        return TestData(d.x_test[:samples], d.y_test[:samples], f"{ds} test set")
    return TestData(None, None, "random int8 inputs")


def model_inputs(g: ir.Graph, td: TestData, n: int) -> np.ndarray:
    """The test inputs in the model's own input type: the data quantized as its QUANTIZE would (or as
    given, for float32), else random values over the whole int8/uint8 range (float32: the range the
    input's quantization covers, and 10% beyond it on each side)."""
    din = g.io_dtypes[0]
    rng = np.random.default_rng(0)
    shape = (n,) + tuple(g.input.shape[1:])
    if din == "float32":
        if td.x is not None:
            return td.x.astype(np.float32)
        lo, hi = ((q - g.input.zero_point) * g.input.scale for q in (-128, 127))
        pad = 0.1 * (hi - lo)
        return rng.uniform(lo - pad, hi + pad, shape).astype(np.float32)
    if td.x is None:
        return rng.integers(*((-128, 128) if din == "int8" else (0, 256)), shape).astype(din)
    t = g.t(g.edge_in.inputs[0]) if g.edge_in is not None else g.input
    return reference.quantize_input(td.x, t.scale, t.zero_point, din)


def core_input(g: ir.Graph, x: np.ndarray) -> np.ndarray:
    """The int8 core's input for inputs in the model's own type (what its edge QUANTIZE makes of them)."""
    if g.edge_in is None:
        return x
    if "table" in g.edge_in.lowered:
        return np.asarray(g.edge_in.lowered["table"], np.int8)[x.astype(np.int64)]
    return reference.quantize_input(x, g.input.scale, g.input.zero_point)


def first_divergence(c: compiler.Compiled, host: hostrun.HostModel, x: np.ndarray) -> dict[str, Any] | None:
    """Run one input (in the model's own type) through both and name the first layer whose output differs."""
    tr = host.trace(core_input(c.graph, x))
    ids = [op.outputs[0] for op in c.graph.ops]
    ref = reference.tflm_trace(c.tflite, x, c.graph.input.shape, ids)
    for k, op in enumerate(c.graph.ops):
        a, b = tr.get(k), ref[op.outputs[0]]
        if a is None or a.shape != b.shape or not np.array_equal(a, b):
            n = int((a != b).sum()) if a is not None and a.shape == b.shape else -1
            return {"layer": k, "name": op.name, "op": op.opcode, "bytes_differing": n}
    return None


def run_verify(model: str, *, dataset: str | None = None, data: str | None = None, labels: str | None = None,
               calib: str | None = None, samples: int = 1000, progress: Any = None,
               options: backend.Options | None = None) -> dict[str, Any]:
    """``options``: the backend's (kernels="cmsis-nn": the C calls CMSIS-NN, its portable C on the host)."""
    c = compiler.compile_model(model, dataset=dataset, calib=calib, options=options)
    g = c.graph
    in_shape = tuple(g.input.shape[1:])
    td = load_test_data(model, dataset, data, labels, samples, in_shape)
    xq = model_inputs(g, td, samples if td.x is None else len(td.x))  # in the model's own input type
    n = len(xq)

    def step(name: str) -> None:
        if progress is not None:
            progress(name)

    step("building the C for the host")
    host = hostrun.build_host(c.gen.files, io=True)  # the entry point on the model's own I/O types
    step("running the C")
    y_c = host.run(xq)
    step("running TFLite Micro")
    y_tflm, tflm_error = _run_reference(reference.tflm_run, c.tflite, xq, g.input.shape)
    step("running LiteRT (reference kernels)")
    y_lrt, litert_error = _run_reference(reference.litert_run, c.tflite, xq, g.input.shape)

    def equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # per sample, on every byte (float bit patterns)
        return np.all(a.reshape(n, -1).view(np.uint8) == b.reshape(n, -1).view(np.uint8), axis=1)

    same = diff = None
    if y_tflm is not None:
        same = equal(y_c, y_tflm)
        d = np.abs(y_c.astype(np.float64) - y_tflm.astype(np.float64)).max() if n else 0
        diff = int(d) if y_c.dtype != np.float32 else float(d)
    keras_agree = keras_acc = None
    if c.keras is not None and td.x is not None:
        step("running Keras (float)")
        y_k = keras_model.keras_predict(c.keras, td.x).reshape(n, -1)
        keras_agree = int(np.sum(np.argmax(y_k, 1) == np.argmax(y_c, 1)))
        if td.y is not None:
            keras_acc = float(np.mean(np.argmax(y_k, 1) == td.y))
    onnx_agree = onnx_acc = None
    if c.onnx is not None:
        from lwcnn_mcu.frontend import onnx_model

        step("running onnxruntime (float ONNX)")
        x_f = td.x if td.x is not None else (xq.astype(np.float32) - g.input.zero_point) * np.float32(g.input.scale)
        y_o = onnx_model.predict(c.onnx, x_f)
        onnx_agree = int(np.sum(np.argmax(y_o, 1) == np.argmax(y_c, 1)))
        if td.y is not None:
            onnx_acc = float(np.mean(np.argmax(y_o, 1) == td.y))
    c_acc = tflm_acc = None
    if td.y is not None:
        c_acc = float(np.mean(np.argmax(y_c, 1) == td.y))
        tflm_acc = None if y_tflm is None else float(np.mean(np.argmax(y_tflm, 1) == td.y))
    divergence = None
    if same is not None and not same.all():
        step("tracing the first mismatching input layer by layer")
        try:
            divergence = first_divergence(c, hostrun.build_host(c.gen.files), xq[int(np.argmin(same))])
        except reference.ReferenceFailed as exc:  # the outputs ran, the trace did not: say so, keep the counts
            divergence = {"error": exc.message}
    r = c.report
    return {
        "model": str(c.source),
        "data": td.source,
        "samples": n,
        "io": {"input": g.io_dtypes[0], "output": g.io_dtypes[1]},
        "c_vs_tflm_bitexact": None if same is None else int(same.sum()),
        "c_vs_tflm_max_abs_diff": diff,
        "tflm_error": tflm_error,
        "c_vs_litert_bitexact": None if y_lrt is None else int(equal(y_c, y_lrt).sum()),
        "litert_error": litert_error,
        "c_vs_keras_argmax_agree": keras_agree,
        "c_accuracy": c_acc,
        "tflm_accuracy": tflm_acc,
        "keras_accuracy": keras_acc,
        "c_vs_onnx_argmax_agree": onnx_agree,
        "onnx_accuracy": onnx_acc,
        "first_divergence": divergence,
        "params": r["params"],
        "macs": r["macs"],
        "weights_bytes": r["weights_bytes"],
        "arena_bytes": r["arena_bytes"],
        "kernels": r["kernels"],
        **({"fallback": r["fallback"]} if "fallback" in r else {}),
        "model_sha256": r["model_sha256"],
        "onnx": r.get("onnx"),  # an .onnx model: opset, layouts, the converter's max |diff| with onnxruntime
    }


def _run_reference(run: Any, buf: bytes, xq: np.ndarray,
                   shape: tuple[int, ...]) -> tuple[np.ndarray | None, str | None]:
    """A reference's outputs, or None and why it could not run (its crash never ends verify)."""
    try:
        return run(buf, xq, shape), None
    except reference.ReferenceFailed as exc:
        return None, exc.message


def is_pass(result: dict[str, Any]) -> bool:
    """The contract held: TFLite Micro ran and the C equals it on every output byte. (A run where TFLite Micro
    could not run the model is no pass and no mismatch: ``tflm_error`` says why; the CLI exits 4.)"""
    return result.get("tflm_error") is None and result["c_vs_tflm_bitexact"] == result["samples"]
