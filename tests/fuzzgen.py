"""The differential fuzzer's generator and checker: hypothesis draws random Keras graphs over the supported
layers (shapes, strides, padding, dilation, channels, branches and skip connections, I/O types); each one is
quantized with random calibration data, compiled, and its C (portable and SIMD builds) compared with TFLite Micro
on random inputs, byte for byte.

Used by ``tests/test_fuzz.py`` (a fixed-seed subset in ``make test``) and ``benchmarks/fuzz.py`` (campaigns of
thousands of models). A spec is plain JSON (a dict), so every result records how to rebuild its model.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from lwcnn_mcu.util import capture_fd2

#: "int8": quantized the way `lwcnn-mcu compile` quantizes a .keras (batch 1, int8 I/O); the others are the
#: TFLite converter's exports of the model as built (batch -1): int8, float32 or uint8 I/O.
IO_KINDS = ("int8", "int8_dyn", "float", "uint8")


def _out(n: int, k: int, stride: int, dil: int, padding: str) -> int:
    eff = (k - 1) * dil + 1
    return -(-n // stride) if padding == "same" else (n - eff) // stride + 1


@st.composite
def _window(draw: Any, h: int, w: int, max_k: int = 5, dilation: bool = True) -> dict[str, Any]:
    """Kernel, stride, dilation and padding that leave at least one output pixel."""
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    stride = draw(st.integers(1, 3))
    dil = draw(st.integers(1, 2)) if dilation and stride == 1 else 1
    padding = draw(st.sampled_from(["same", "valid"]))
    if padding == "valid" and ((kh - 1) * dil + 1 > h or (kw - 1) * dil + 1 > w):
        padding = "same"
    return {"kernel": [kh, kw], "stride": stride, "dilation": dil, "padding": padding}


ACTS = ("linear", "relu", "relu6", "sigmoid", "tanh", "hard_silu", "silu", "hard_sigmoid")
MAX_SIDE = 24  # upsampling and transposed convolutions stop growing a map beyond this


@st.composite
def _layer(draw: Any, shape: list[int], batch1: bool) -> tuple[dict[str, Any], list[int]]:
    """One layer spec for an (H, W, C) input and the shape it produces. Three layers only where the model is
    quantized at batch 1 (as `lwcnn-mcu compile` does), because the converter's batch -1 export of them is
    refused, rightly: dilation (SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND, which TFLite Micro gets wrong), UpSampling
    (TILE, which TFLite Micro lacks) and PReLU (a float NEG the converter leaves unquantized)."""
    h, w, c = shape
    kinds = ["conv", "conv", "dwconv", "sepconv", "pool", "zeropad", "relu", "bn", "branch", "residual", "act",
             "leaky", "tconv", "crop"] + (["prelu", "upsample"] if batch1 else [])
    kind = draw(st.sampled_from(kinds))
    if kind in ("tconv", "upsample") and max(h, w) * 2 > MAX_SIDE:
        kind = "conv"
    if kind == "crop" and min(h, w) < 3:
        kind = "relu"
    if kind == "act":
        return {"kind": "act", "act": draw(st.sampled_from(ACTS[1:]))}, shape
    if kind == "leaky":
        return {"kind": "leaky", "alpha": draw(st.sampled_from([0.01, 0.1, 0.3, 2.0]))}, shape
    if kind == "prelu":
        return {"kind": "prelu", "shared": draw(st.sampled_from([[], [1, 2], [1], [2]]))}, shape
    if kind == "tconv":
        k, stride = draw(st.integers(1, 4)), draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["same", "valid"]))
        f = draw(st.integers(1, 8))
        out = [n * stride + (max(k - stride, 0) if padding == "valid" else 0) for n in (h, w)]  # Keras' lengths
        return ({"kind": "tconv", "filters": f, "kernel": k, "stride": stride, "padding": padding,
                 "act": draw(st.sampled_from(ACTS[:3])), "bias": draw(st.booleans())}, out + [f])
    if kind == "upsample":
        size = [draw(st.integers(1, 2)), draw(st.integers(1, 3))]
        return {"kind": "upsample", "size": size}, [h * size[0], w * size[1], c]
    if kind == "crop":
        cr = [draw(st.integers(0, (h - 1) // 2)), draw(st.integers(0, (h - 1) // 2)),
              draw(st.integers(0, (w - 1) // 2)), draw(st.integers(0, (w - 1) // 2))]
        return {"kind": "crop", "crop": cr}, [h - cr[0] - cr[1], w - cr[2] - cr[3], c]
    if kind in ("conv", "dwconv", "sepconv"):
        win = draw(_window(h, w, dilation=batch1))
        spec = {"kind": kind, **win, "act": draw(st.sampled_from(ACTS)), "bias": draw(st.booleans())}
        if kind == "dwconv":
            spec["multiplier"] = draw(st.integers(1, 2))
            oc = c * spec["multiplier"]
        else:
            oc = spec["filters"] = draw(st.integers(1, 12))
        return spec, [_out(h, win["kernel"][0], win["stride"], win["dilation"], win["padding"]),
                      _out(w, win["kernel"][1], win["stride"], win["dilation"], win["padding"]), oc]
    if kind == "pool":
        win = draw(_window(h, w, max_k=3, dilation=False))
        return ({"kind": draw(st.sampled_from(["maxpool", "avgpool"])), **win},
                [_out(h, win["kernel"][0], win["stride"], 1, win["padding"]),
                 _out(w, win["kernel"][1], win["stride"], 1, win["padding"]), c])
    if kind == "zeropad":
        p = [draw(st.integers(0, 2)) for _ in range(4)]
        return {"kind": "zeropad", "pad": p}, [h + p[0] + p[1], w + p[2] + p[3], c]
    if kind == "relu":
        return {"kind": "relu", "max": draw(st.sampled_from([None, 6.0]))}, shape
    if kind == "bn":
        return {"kind": "bn"}, shape
    if kind == "branch":  # two convolutions of the same input, merged
        merge = draw(st.sampled_from(["add", "concat"]))
        f = draw(st.integers(1, 8))
        k2 = draw(st.sampled_from([1, 3]))
        spec = {"kind": "branch", "merge": merge, "filters": f, "kernel2": k2, "act": draw(st.sampled_from(ACTS))}
        return spec, [h, w, 2 * f if merge == "concat" else f]
    return {"kind": "residual", "act": draw(st.sampled_from(ACTS))}, shape  # x + conv3x3(x)


@st.composite
def graphs(draw: Any, max_layers: int = 5) -> dict[str, Any]:
    """A random model spec: input, layers, head, I/O type, seeds."""
    rank = draw(st.sampled_from([4, 4, 4, 3, 2]))
    spec: dict[str, Any] = {"io": draw(st.sampled_from(IO_KINDS)), "seed": draw(st.integers(0, 2**31 - 1)),
                            "layers": []}
    if rank == 2:
        spec["input"] = [draw(st.integers(1, 48))]
        spec["layers"] = [{"kind": "dense", "units": draw(st.integers(1, 24)), "act": draw(st.sampled_from(ACTS)),
                           "bias": draw(st.booleans())} for _ in range(draw(st.integers(1, 3)))]
        spec["head"] = draw(st.sampled_from(["none", "softmax"]))
        return spec
    if rank == 3:
        return _signal(draw, spec)
    shape = [draw(st.integers(1, 14)), draw(st.integers(1, 14)), draw(st.integers(1, 9))]
    spec["input"] = list(shape)
    for _ in range(draw(st.integers(1, max_layers))):
        layer, shape = draw(_layer(shape, batch1=spec["io"] == "int8"))
        spec["layers"].append(layer)
    spec["head"] = draw(st.sampled_from(["none", "gap", "gmp", "flatten_dense", "dense_softmax"]))
    spec["units"] = draw(st.integers(1, 12))
    return spec


def _signal(draw: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """A 1-D model: (T, C) input, Conv1D family and 1-D pooling, a 1-D head."""
    t, c = draw(st.integers(4, 40)), draw(st.integers(1, 6))
    spec["input"] = [t, c]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv1d", "conv1d", "sepconv1d", "dwconv1d", "pool1d", "crop1d"]))
        if kind == "crop1d" and t < 3:
            kind = "conv1d"
        if kind == "crop1d":
            a, b = draw(st.integers(0, (t - 1) // 2)), draw(st.integers(0, (t - 1) // 2))
            spec["layers"].append({"kind": kind, "crop": [a, b]})
            t -= a + b
            continue
        k = draw(st.integers(1, min(5, t) if kind != "pool1d" else min(3, t)))
        stride = draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["same", "valid"] + (["causal"] if kind == "conv1d" and stride == 1 else [])))
        layer = {"kind": kind, "kernel": k, "stride": stride, "padding": padding}
        if kind == "pool1d":
            layer["op"] = draw(st.sampled_from(["max", "avg"]))
            padding = "valid" if padding == "causal" else padding
            layer["padding"] = padding
        else:
            layer["act"] = draw(st.sampled_from(ACTS))
            if kind == "dwconv1d":
                layer["multiplier"] = draw(st.integers(1, 2))
                c *= layer["multiplier"]
            else:
                c = layer["filters"] = draw(st.integers(1, 10))
        spec["layers"].append(layer)
        t = -(-t // stride) if padding in ("same", "causal") else (t - k) // stride + 1
    spec["head"] = draw(st.sampled_from(["none", "gap1d", "gmp1d", "flatten_dense"]))
    spec["units"] = draw(st.integers(1, 12))
    return spec


def build(spec: dict[str, Any]) -> Any:
    """The Keras model of a spec (random weights from its seed)."""
    import keras

    from tests.conftest import randomize

    L = keras.layers
    inp = keras.Input(tuple(spec["input"]))
    x = inp
    for s in spec["layers"]:
        k = s["kind"]
        act = None if s.get("act", "linear") == "linear" else s["act"]
        win = {"strides": s.get("stride", 1), "padding": s.get("padding", "same")}
        if k == "conv":
            x = L.Conv2D(s["filters"], tuple(s["kernel"]), dilation_rate=s["dilation"], activation=act,
                         use_bias=s["bias"], **win)(x)
        elif k == "dwconv":
            x = L.DepthwiseConv2D(tuple(s["kernel"]), depth_multiplier=s["multiplier"], dilation_rate=s["dilation"],
                                  activation=act, use_bias=s["bias"], **win)(x)
        elif k == "sepconv":
            x = L.SeparableConv2D(s["filters"], tuple(s["kernel"]), dilation_rate=s["dilation"], activation=act,
                                  use_bias=s["bias"], **win)(x)
        elif k in ("maxpool", "avgpool"):
            cls = L.MaxPooling2D if k == "maxpool" else L.AveragePooling2D
            x = cls(tuple(s["kernel"]), **win)(x)
        elif k == "zeropad":
            p = s["pad"]
            x = L.ZeroPadding2D(((p[0], p[1]), (p[2], p[3])))(x)
        elif k == "relu":
            x = L.ReLU(s["max"])(x)
        elif k == "bn":
            x = L.BatchNormalization()(x)
        elif k == "branch":
            a = L.Conv2D(s["filters"], 1, padding="same")(x)
            b = L.Conv2D(s["filters"], s["kernel2"], padding="same", activation="relu")(x)
            x = (L.Add() if s["merge"] == "add" else L.Concatenate())([a, b])
            if act:
                x = L.Activation(act)(x)
        elif k == "residual":
            y = L.Conv2D(int(x.shape[-1]), 3, padding="same")(x)
            x = L.Add()([x, y])
            if act:
                x = L.Activation(act)(x)
        elif k == "act":
            x = L.Activation(s["act"])(x)
        elif k == "leaky":
            x = L.LeakyReLU(s["alpha"])(x)
        elif k == "prelu":
            x = L.PReLU(shared_axes=s["shared"] or None)(x)
        elif k == "tconv":
            x = L.Conv2DTranspose(s["filters"], s["kernel"], strides=s["stride"], padding=s["padding"], activation=act,
                                  use_bias=s["bias"])(x)
        elif k == "upsample":
            x = L.UpSampling2D(tuple(s["size"]))(x)
        elif k == "crop":
            cr = s["crop"]
            x = L.Cropping2D(((cr[0], cr[1]), (cr[2], cr[3])))(x)
        elif k in ("conv1d", "sepconv1d", "dwconv1d"):
            common = {"strides": s["stride"], "padding": s["padding"], "activation": act}
            if k == "conv1d":
                x = L.Conv1D(s["filters"], s["kernel"], **common)(x)
            elif k == "sepconv1d":
                x = L.SeparableConv1D(s["filters"], s["kernel"], **common)(x)
            else:
                x = L.DepthwiseConv1D(s["kernel"], depth_multiplier=s["multiplier"], **common)(x)
        elif k == "pool1d":
            cls = L.MaxPooling1D if s["op"] == "max" else L.AveragePooling1D
            x = cls(s["kernel"], strides=s["stride"], padding=s["padding"])(x)
        elif k == "crop1d":
            x = L.Cropping1D(tuple(s["crop"]))(x)
        elif k == "dense":
            x = L.Dense(s["units"], activation=act, use_bias=s["bias"])(x)
        else:
            raise ValueError(f"unknown layer kind {k}")
    head = spec["head"]
    if head == "gap":
        x = L.GlobalAveragePooling2D()(x)
    elif head == "gmp":
        x = L.GlobalMaxPooling2D()(x)
    elif head == "gap1d":
        x = L.GlobalAveragePooling1D()(x)
    elif head == "gmp1d":
        x = L.GlobalMaxPooling1D()(x)
    elif head in ("flatten_dense", "dense_softmax"):
        x = L.Dense(spec["units"], activation="softmax" if head == "dense_softmax" else None)(L.Flatten()(x))
    elif head == "softmax":
        x = L.Softmax()(x)
    model = keras.Model(inp, x)
    randomize(model, seed=spec["seed"] % 10_000)
    return model


def export_tflite(model: Any, kind: str, calib: np.ndarray) -> bytes:
    """TFLiteConverter.from_keras_model on the model as built (batch -1), full-integer quantization with
    ``calib`` as the representative dataset: "float" keeps float32 I/O (the converter's default, QUANTIZE and
    DEQUANTIZE at the edges); "int8"/"uint8" set inference_input/output_type; "dynamic" is dynamic-range (hybrid)
    quantization (no representative dataset); "none" does not quantize at all."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind != "none":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind not in ("none", "dynamic"):
        conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    if kind in ("int8", "uint8"):
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = getattr(tf, kind)
    with contextlib.redirect_stdout(io.StringIO()), capture_fd2(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected": uint8/int8 I/O
        return bytes(conv.convert())


def check(spec: dict[str, Any], n_inputs: int = 12, simd: bool = True) -> dict[str, Any]:
    """Build, quantize, compile and compare one spec. Never raises: the outcome is in ``result``
    (match, mismatch, refused - an LwcnnError - or error)."""
    from lwcnn_mcu.errors import LwcnnError

    t0 = time.time()
    out: dict[str, Any] = {"spec": spec}
    try:
        from lwcnn_mcu import compiler, hostrun, reference, verify

        model = build(spec)
        rng = np.random.default_rng(spec["seed"])
        calib = rng.normal(0, 1, (24,) + tuple(spec["input"])).astype(np.float32)
        if spec["io"] == "int8":
            from lwcnn_mcu.frontend import keras_model

            buf = keras_model.quantize(model, calib)
        else:
            buf = export_tflite(model, spec["io"].removesuffix("_dyn"), calib)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "fuzz.tflite"
            path.write_bytes(buf)
            c = compiler.compile_model(str(path))
        out.update(ops=[op.opcode for op in c.graph.ops], params=c.report["params"], macs=c.report["macs"],
                   arena=c.report["arena_bytes"], io=list(c.graph.io_dtypes))
        x = verify.model_inputs(c.graph, verify.TestData(None, None, "random"), n_inputs)
        expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
        for path_name, flags in (("portable", {}), ("simd", {"simd": True}))[:2 if simd else 1]:
            got = hostrun.build_host(c.gen.files, io=True, opt="-O1", **flags).run(x)
            n_bad = int((got.reshape(len(x), -1).view(np.uint8) != expect.reshape(len(x), -1).view(np.uint8)).sum())
            if got.shape != expect.shape or n_bad:
                out.update(result="mismatch", path=path_name, bytes_differing=n_bad)
                break
        else:
            out["result"] = "match"
    except LwcnnError as exc:
        out.update(result="refused", error=exc.message)
    except Exception as exc:  # noqa: BLE001 - a campaign records every failure and goes on
        out.update(result="error", error=f"{type(exc).__name__}: {exc}"[:500],
                   where=traceback.extract_tb(exc.__traceback__)[-1].name)
    out["seconds"] = round(time.time() - t0, 2)
    return out
