"""The compile driver, top to bottom:

    frontend (.keras -> int8 .tflite -> IR)  ->  passes.PIPELINE  ->  backend (kernels)  ->  planner  ->  codegen

and the report (params, MACs, weights_bytes, arena_bytes beside the plan's lower bound, one row per layer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lwcnn_mcu import __version__, backend, codegen, datasets, ir, models, passes, planner, quant
from lwcnn_mcu.errors import LwcnnError
from lwcnn_mcu.frontend import keras_model, tflite


@dataclass
class Compiled:
    source: Path
    graph: ir.Graph
    kernels: tuple[backend.Kernel, ...]
    plan: planner.MemoryPlan
    gen: codegen.Generated
    tflite: bytes
    keras: Any | None
    report: dict[str, Any]
    onnx: Any | None = None  # frontend.onnx_model.OnnxInfo of an .onnx model (verify runs it on onnxruntime)

    def files(self) -> dict[str, str | bytes]:
        out: dict[str, str | bytes] = dict(self.gen.files)
        out["model.tflite"] = self.tflite
        out["report.json"] = json.dumps(self.report, indent=2) + "\n"
        return out


def load_npy(path: str | Path, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise LwcnnError(f"{what} file {p} does not exist")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise LwcnnError(f"{what} file {p} is not a readable .npy array ({str(exc)[:120]})") from None


def dataset_for(model: str) -> str | None:
    return model if model in models.SHIPPED else None


def compile_model(model: str, *, dataset: str | None = None, calib: str | Path | np.ndarray | None = None,
                  calib_samples: int = datasets.CALIBRATION_IMAGES, options: backend.Options | None = None,
                  name: str | None = None) -> Compiled:
    """Compile MODEL (a shipped name, .keras, .tflite or .onnx) to C. ``name`` is the C prefix of the generated
    files and symbols (default: the model's file name made a C identifier)."""
    path = models.resolve(model)
    keras_obj = onnx_info = None
    layers: tuple[str, ...] = ()
    if path.suffix == ".onnx":
        buf, onnx_info, layers = _quantize_onnx(path, dataset, calib, calib_samples)
    elif path.suffix == ".keras":
        keras_obj = keras_model.load_keras(path)
        shape = keras_model.check_model(keras_obj, str(path))
        if calib is not None:
            x = load_npy(calib, "calibration") if not isinstance(calib, np.ndarray) else calib
            x = keras_model.check_data(x, shape, str(calib) if not isinstance(calib, np.ndarray) else "calibration",
                                       "calibration data")
        elif (model in models.SHIPPED and dataset in (None, model)
              and calib_samples == datasets.CALIBRATION_IMAGES
              and models.shipped_tflite_is_current(model)):
            x = None  # the shipped int8 model: this .keras quantized with this calibration (its card's provenance)
        else:
            ds = dataset or dataset_for(model)
            if ds is None:
                raise LwcnnError(f"{path}: a .keras model is quantized with calibration data; "
                                 "give --dataset D or --calib X.npy")
            datasets.check_name(ds)
            if datasets.INPUT_SHAPES[ds] != shape:
                raise LwcnnError(f"{path}: the model's input {list(shape)} does not match dataset '{ds}' "
                                 f"{list(datasets.INPUT_SHAPES[ds])}")
            x = datasets.calibration_set(ds, calib_samples)
        buf = models.shipped_tflite(model).read_bytes() if x is None else keras_model.quantize(keras_obj, x)
    else:
        try:
            buf = path.read_bytes()
        except OSError as exc:
            raise LwcnnError(f"model file {path} cannot be read ({exc.strerror})") from None
    g = tflite.read_tflite(buf, str(path))
    g = g.replace(name=path.stem, keras_layers=keras_model.layer_names(keras_obj) if keras_obj is not None else layers)
    c = compile_graph(path, g, buf, keras_obj, options, codegen.check_name(name) if name else None)
    if onnx_info is not None:
        c.onnx = onnx_info
        c.report["onnx"] = onnx_info.report()
    return c


def _quantize_onnx(path: Path, dataset: str | None, calib: str | Path | np.ndarray | None,
                   calib_samples: int) -> tuple[bytes, Any, tuple[str, ...]]:
    """An .onnx model converted (frontend/onnx_model.py) and quantized with ``calib`` (NCHW, the model's own
    layout) or the training images of ``dataset``; every check runs before the calibration data is used."""
    from lwcnn_mcu.frontend import onnx_model

    conv = onnx_model.convert(path)
    shape = list(conv.info.input_shape)
    if calib is not None:
        arr = calib if isinstance(calib, np.ndarray) else load_npy(calib, "calibration")
        x = onnx_model.data_to_c_layout(arr, conv.info.c_shape, str(calib) if not isinstance(calib, np.ndarray)
                                        else "calibration")
    elif dataset is not None:
        datasets.check_name(dataset)
        if datasets.INPUT_SHAPES[dataset] != conv.info.c_shape:
            raise LwcnnError(f"{path}: the model's input (N, {', '.join(map(str, shape))}) does not match dataset "
                             f"'{dataset}' images {list(datasets.INPUT_SHAPES[dataset])} (H, W, C)")
        x = datasets.calibration_set(dataset, calib_samples)
    else:
        raise LwcnnError(f"{path}: an ONNX model is quantized with calibration data: give --calib X.npy (float32, "
                         f"shaped (N, {', '.join(map(str, shape))}) as the model takes it) or --dataset D")
    return onnx_model.quantize(conv, x), conv.info, conv.layers


def compile_graph(path: Path, g: ir.Graph, buf: bytes, keras_obj: Any | None = None,
                  options: backend.Options | None = None, name: str | None = None) -> Compiled:
    """The pipeline after the frontend: passes, kernels, memory plan, C."""
    g = passes.run_pipeline(g, passes.pipeline_for((options or backend.Options()).kernels))
    kernels = backend.kernels(g, options)
    plan = planner.plan_memory(g, kernels)
    gen = codegen.generate(g, kernels, plan, name or codegen.c_name(g.name))
    kernel_set = (options or backend.Options()).kernels
    return Compiled(path, g, kernels, plan, gen, buf, keras_obj, make_report(path, g, kernels, plan, gen, kernel_set))


def recompile(c: Compiled, options: backend.Options) -> Compiled:
    """The same model through the pipeline again with other backend options (the kernels' fast paths)."""
    g = tflite.read_tflite(c.tflite, str(c.source)).replace(name=c.graph.name, keras_layers=c.graph.keras_layers)
    out = compile_graph(c.source, g, c.tflite, c.keras, options, c.gen.name)
    if c.onnx is not None:
        out.onnx, out.report["onnx"] = c.onnx, c.report.get("onnx")
    return out


def make_report(path: Path, g: ir.Graph, kernels: tuple[backend.Kernel, ...], plan: planner.MemoryPlan,
                gen: codegen.Generated, kernel_set: str = "lw") -> dict[str, Any]:
    """The compile report; ``kernel_set`` is backend.Options.kernels ("cmsis-nn": "fallback" lists the layers our
    kernels run because CMSIS-NN lacks their op)."""
    layers = []
    for op, kern in zip(g.ops, kernels, strict=True):
        y = g.t(op.outputs[0])
        pl = plan.placements[y.id]
        layers.append({
            "name": op.name,
            "tflite_name": op.tflite_name,
            "op": op.opcode or op.kind.upper(),
            "kernel": kern.function,
            "variant": list(kern.variant),
            "output_shape": list(y.shape),
            "params": op.params(g),
            "macs": op.macs(g),
            "arena_offset": pl.offset if pl.where == "arena" else None,
            "output_in": pl.where,
        })
    return {
        "tool": f"lwcnn-mcu {__version__}",
        "model": str(path),
        "model_sha256": g.model_hash,
        "c_name": gen.name,
        "io": {"input": g.io_dtypes[0], "output": g.io_dtypes[1]},  # the model's own types (int8 core inside)
        "input_shape": list(g.input.shape),
        "input_scale": g.input.scale,
        "input_zero_point": g.input.zero_point,
        "output_shape": list(g.output.shape),
        "output_scale": g.output.scale,
        "output_zero_point": g.output.zero_point,
        "params": sum(r["params"] for r in layers),
        "macs": sum(r["macs"] for r in layers),
        "weights_bytes": gen.weights_bytes,
        "arena_bytes": plan.arena_bytes,
        "arena_lower_bound": plan.lower_bound,  # the most bytes alive at once: no plan is smaller
        "arena_gap_reason": plan.gap_reason,  # null when arena_bytes reaches the bound
        "kernels": kernel_set,
        "kernel_functions": list(dict.fromkeys(kern.function for kern in kernels)),
        **({"fallback": backend.fallback(g, kernels)} if kernel_set == "cmsis-nn" else {}),
        "layers": layers,
        "warnings": tflm_warnings(g),
    }


def tflm_warnings(g: ir.Graph) -> list[str]:
    """What TFLite Micro will refuse in this graph although the C runs it (then ``verify`` cannot compare)."""
    out = []
    for op in g.ops:
        if isinstance(op, ir.Softmax):
            x = g.t(op.inputs[0])
            real = quant.softmax_input_multiplier(op.beta, x.scale)
            if real <= 1.0:
                out.append(f"layer '{op.name}' (SOFTMAX): input scale {x.scale:.3g} gives beta*scale*2^26 = "
                           f"{real:.3g}, not above 1: TFLite Micro (and LiteRT) abort on this model, so verify "
                           "cannot compare with them; the calibration data gave the softmax input no range "
                           "(an untrained model?): calibrate with data that exercises the model, or train it")
    return out
