"""The "models from elsewhere" corpus: Keras 3 models as other people write them, with random weights.

Each builder returns a fresh ``keras.Model`` with fixed-seed weights (no downloads: ``weights=None``):
keras.applications MobileNets at 96x96x3, the MLPerf Tiny reference architectures rebuilt from their
public definitions (mlcommons/tiny, v0.1 training scripts), a Conv1D sensor model, a small U-Net and a
squeeze-and-excitation block. ``CORPUS`` maps a name to its builder, ``FAMILY`` the name to its family
(mobilenet, mlperf, 1d, unet, se) and ``INPUT_RANGE`` to the float range its inputs live in.

Weights: each model's own initializers under a fixed seed (they keep activations of deep models in a
sane range), then every batch-norm statistic and every bias made random and non-trivial, so that
folding and requantization are exercised (see :func:`perturb`).

Exports (what a user's own script writes): :func:`int8_io` (lwcnn-mcu's own ``keras_model.quantize``:
batch 1, int8 in and out), :func:`converter_default` (the post-training integer quantization guide:
batch -1, float32 in and out with QUANTIZE/DEQUANTIZE at the edges) and :func:`mlperf_int8` (the MLPerf
Tiny scripts: batch -1, TFLITE_BUILTINS_INT8, int8 in and out).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lwcnn_mcu.util import capture_fd2, quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

L = keras.layers

CORPUS: dict[str, Callable[[], keras.Model]] = {}
FAMILY: dict[str, str] = {}
#: the float interval the model's inputs come from (calibration and test inputs are drawn from it)
INPUT_RANGE: dict[str, tuple[float, float]] = {}
FAMILIES = ("mobilenet", "mlperf", "1d", "unet", "se")


def _register(family: str, lo: float = -1.0, hi: float = 1.0) -> Callable[[Callable[[], keras.Model]],
                                                                           Callable[[], keras.Model]]:
    assert family in FAMILIES

    def deco(fn: Callable[[], keras.Model]) -> Callable[[], keras.Model]:
        name = fn.__name__
        seed = sum(map(ord, name))  # fixed per model, independent of the order models are built in

        def build() -> keras.Model:
            keras.utils.set_random_seed(seed)
            model = fn()
            perturb(model, seed)
            return model

        build.__name__ = name
        build.__doc__ = fn.__doc__
        build.family = family  # type: ignore[attr-defined]
        CORPUS[name] = build
        FAMILY[name] = family
        INPUT_RANGE[name] = (lo, hi)
        return build

    return deco


def perturb(model: keras.Model, seed: int) -> None:
    """Batch-norm statistics and biases random (the kernels keep the model's own seeded initializers)."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if not layer.weights:
            continue
        new = []
        for var, w in zip(layer.weights, layer.get_weights(), strict=True):
            name = var.path if hasattr(var, "path") else var.name
            leaf = name.rsplit("/", 1)[-1]
            if leaf == "moving_variance":
                w = rng.uniform(0.5, 2.0, w.shape)
            elif leaf == "gamma":
                w = rng.uniform(0.5, 1.5, w.shape)
            elif leaf in ("moving_mean", "beta", "bias"):
                w = rng.normal(0.0, 0.2, w.shape)
            new.append(np.asarray(w, np.float32))
        layer.set_weights(new)


def _all_layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def calibration(name: str, n: int, seed: int = 0, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``n`` float32 inputs drawn uniformly from the model's input range."""
    lo, hi = INPUT_RANGE[name]
    if shape is None:
        shape = tuple(int(d) for d in CORPUS[name]().inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(lo, hi, (n,) + tuple(shape)).astype(np.float32)


# --- keras.applications (weights=None: random, no download; include_top=True with a small `classes`) -----------

_APP = {"input_shape": (96, 96, 3), "weights": None, "include_top": True, "classes": 10}


@_register("mobilenet")
def mobilenet_v1_025() -> keras.Model:
    """keras.applications.MobileNet alpha 0.25 (inputs in [-1, 1], as its preprocess_input makes them)."""
    return keras.applications.MobileNet(alpha=0.25, **_APP)


@_register("mobilenet")
def mobilenet_v2_035() -> keras.Model:
    """keras.applications.MobileNetV2 alpha 0.35 (inputs in [-1, 1])."""
    return keras.applications.MobileNetV2(alpha=0.35, **_APP)


# MobileNetV3 has its preprocessing inside (include_preprocessing=True: Rescaling to [-1, 1]): inputs in [0, 255]
@_register("mobilenet", 0.0, 255.0)
def mobilenet_v3_small_075() -> keras.Model:
    """keras.applications.MobileNetV3Small alpha 0.75 (hard-swish, squeeze-and-excitation)."""
    return keras.applications.MobileNetV3Small(alpha=0.75, minimalistic=False, **_APP)


@_register("mobilenet", 0.0, 255.0)
def mobilenet_v3_small_min() -> keras.Model:
    """keras.applications.MobileNetV3Small alpha 0.75 minimalistic (no SE, no hard-swish, 3x3 kernels only)."""
    return keras.applications.MobileNetV3Small(alpha=0.75, minimalistic=True, **_APP)


@_register("mobilenet", 0.0, 255.0)
def mobilenet_v3_large() -> keras.Model:
    """keras.applications.MobileNetV3Large alpha 1.0."""
    return keras.applications.MobileNetV3Large(alpha=1.0, minimalistic=False, **_APP)


@_register("mobilenet", 0.0, 255.0)
def mobilenet_v3_large_min() -> keras.Model:
    """keras.applications.MobileNetV3Large minimalistic."""
    return keras.applications.MobileNetV3Large(alpha=1.0, minimalistic=True, **_APP)


# --- MLPerf Tiny reference architectures (mlcommons/tiny v0.1) -------------------------------------------------

def _bn_relu(x: Any) -> Any:
    return L.Activation("relu")(L.BatchNormalization()(x))


@_register("mlperf", -1.0, 1.0)
def mlperf_kws_dscnn() -> keras.Model:
    """Keyword spotting DS-CNN: 49x10x1 MFCCs, Conv 64 10x4 /2, four depthwise-separable blocks, 12 classes."""
    reg = keras.regularizers.l2(1e-4)
    inp = keras.Input((49, 10, 1))
    x = _bn_relu(L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", kernel_regularizer=reg)(inp))
    x = L.Dropout(0.2)(x)
    for _ in range(4):
        x = _bn_relu(L.DepthwiseConv2D((3, 3), padding="same", depth_multiplier=1, depthwise_regularizer=reg)(x))
        x = _bn_relu(L.Conv2D(64, (1, 1), padding="same", kernel_regularizer=reg)(x))
    x = L.Dropout(0.4)(x)
    x = L.AveragePooling2D(pool_size=(25, 5))(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(12, activation="softmax")(x), name="ds_cnn")


@_register("mlperf", 0.0, 1.0)
def mlperf_ic_resnet8() -> keras.Model:
    """Image classification ResNet-8 (EEMBC's ResNetv1 for CIFAR-10): 32x32x3, stacks of 16/32/64 filters."""
    def conv(x: Any, filters: int, k: int, s: int) -> Any:
        return L.Conv2D(filters, k, strides=s, padding="same", kernel_initializer="he_normal",
                        kernel_regularizer=keras.regularizers.l2(1e-4))(x)

    inp = keras.Input((32, 32, 3))
    x = _bn_relu(conv(inp, 16, 3, 1))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = _bn_relu(conv(x, filters, 3, stride))
        y = L.BatchNormalization()(conv(y, filters, 3, 1))
        if stride != 1:  # the identity path adjusted to the new shape by a 1x1 convolution
            x = conv(x, filters, 1, stride)
        x = L.Activation("relu")(L.add([x, y]))
    pool = int(min(x.shape[1:3]))
    x = L.Flatten()(L.AveragePooling2D(pool_size=pool)(x))
    out = L.Dense(10, activation="softmax", kernel_initializer="he_normal")(x)
    return keras.Model(inp, out, name="resnet8")


@_register("mlperf", -1.0, 1.0)
def mlperf_ad_autoencoder() -> keras.Model:
    """Anomaly detection FC autoencoder: 640 -> 128x4 -> 8 -> 128x4 -> 640 (Dense + BN + ReLU)."""
    inp = keras.Input((640,))
    h = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        h = _bn_relu(L.Dense(units)(h))
    return keras.Model(inp, L.Dense(640)(h), name="fc_autoencoder")


@_register("mlperf", 0.0, 1.0)
def mlperf_vww_mobilenet() -> keras.Model:
    """Visual wake words MobileNetV1 0.25 (Silicon Labs / EEMBC): 96x96x3, 2 classes, AveragePooling + Dense."""
    def conv(x: Any, filters: int, k: int, s: int) -> Any:
        return _bn_relu(L.Conv2D(filters, k, strides=s, padding="same", kernel_initializer="he_normal",
                                 kernel_regularizer=keras.regularizers.l2(1e-4))(x))

    def dw(x: Any, s: int) -> Any:
        return _bn_relu(L.DepthwiseConv2D(3, strides=s, padding="same", depthwise_initializer="he_normal",
                                          depthwise_regularizer=keras.regularizers.l2(1e-4))(x))

    inp = keras.Input((96, 96, 3))
    x = conv(inp, 8, 3, 2)
    # (depthwise stride, pointwise filters) of layers 2..14, as in the reference
    for s, f in ((1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128), (1, 128), (1, 128), (1, 128), (1, 128),
                 (1, 128), (2, 256), (1, 256)):
        x = conv(dw(x, s), f, 1, 1)
    x = L.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]))(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(2, activation="softmax")(x), name="vww_mobilenet_v1")


# --- a Conv1D sensor model, a small U-Net, a squeeze-and-excitation block ---------------------------------------

@_register("1d", -2.0, 2.0)
def conv1d_sensor() -> keras.Model:
    """Human-activity style: 128 time steps x 6 IMU channels -> 6 classes."""
    inp = keras.Input((128, 6))
    x = L.Conv1D(16, 5, padding="same", activation="relu")(inp)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(32, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(6, activation="softmax")(x), name="conv1d_sensor")


@_register("unet", 0.0, 1.0)
def unet_small() -> keras.Model:
    """Two-level U-Net on 64x64x1: Conv/MaxPool down, UpSampling2D and Conv2DTranspose up, skip Concatenate,
    sigmoid mask."""
    inp = keras.Input((64, 64, 1))
    c1 = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    d1 = L.MaxPooling2D(2)(c1)
    c2 = L.Conv2D(16, 3, padding="same", activation="relu")(d1)
    d2 = L.MaxPooling2D(2)(c2)
    b = L.Conv2D(32, 3, padding="same", activation="relu")(d2)
    u2 = L.Conv2D(16, 1, activation="relu")(L.UpSampling2D(2)(b))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(L.Concatenate()([u2, c2]))
    u1 = L.Conv2DTranspose(8, 2, strides=2, padding="same")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([u1, c1]))
    return keras.Model(inp, L.Conv2D(1, 1, activation="sigmoid")(x), name="unet_small")


@_register("se", -1.0, 1.0)
def se_block() -> keras.Model:
    """Conv, then squeeze-and-excitation (GlobalAveragePooling2D keepdims -> 1x1 relu -> 1x1 hard_sigmoid ->
    Multiply), then a classifier: 32x32x3 -> 10 classes."""
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(4, 1, activation="relu")(s)
    s = L.Conv2D(16, 1, activation="hard_sigmoid")(s)
    x = L.Multiply()([x, s])
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, activation="softmax")(x), name="se_block")


# --- the exports -------------------------------------------------------------------------------------------------

EXPORTS = ("int8_io", "converter_default", "mlperf_int8")


def int8_io(model: keras.Model, calib: np.ndarray) -> bytes:
    """lwcnn-mcu's own quantization (batch 1, int8 input and output)."""
    from lwcnn_mcu.frontend import keras_model

    return keras_model.quantize(model, calib)


def _convert(model: keras.Model, calib: np.ndarray, int8_edges: bool) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)  # the model as built: batch -1
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep() -> Iterator[list[np.ndarray]]:
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv.representative_dataset = rep
    if int8_edges:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), capture_fd2(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(conv.convert())


def converter_default(model: keras.Model, calib: np.ndarray) -> bytes:
    """The post-training integer quantization guide's first recipe: optimizations DEFAULT and a representative
    dataset, nothing else (float32 input and output, QUANTIZE/DEQUANTIZE at the edges, batch -1)."""
    return _convert(model, calib, int8_edges=False)


def mlperf_int8(model: keras.Model, calib: np.ndarray) -> bytes:
    """The MLPerf Tiny scripts' export: TFLITE_BUILTINS_INT8, int8 input and output, batch -1."""
    return _convert(model, calib, int8_edges=True)


EXPORTERS: dict[str, Callable[[keras.Model, np.ndarray], bytes]] = {
    "int8_io": int8_io, "converter_default": converter_default, "mlperf_int8": mlperf_int8}
assert tuple(EXPORTERS) == EXPORTS


# --- what a .tflite holds ------------------------------------------------------------------------------------------

#: the ops whose multiply-accumulates are counted (as MLPerf Tiny and lwcnn-mcu's report count them)
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclass(frozen=True)
class TfliteInfo:
    ops: dict[str, int]  # builtin op -> count, in order of first appearance
    input_dtype: str
    output_dtype: str
    input_shape: list[int]
    input_signature: list[int]  # shape_signature: -1 where the converter left the batch dynamic
    output_shape: list[int]
    params: int  # elements of the constant inputs (weights, biases) of the MAC ops
    macs: int
    core_input: tuple[float, int]  # (scale, zero point) of the int8 tensor the model computes on
    core_output: tuple[float, int]


def runtime_shapes(buf: bytes) -> dict[int, list[int]]:
    """Every tensor's shape after one batch-1 run in LiteRT: in a batch -1 export the shapes stored for tensors
    behind a SHAPE-computed RESHAPE are placeholders (e.g. [1, 1, 32, 32] for [1, 32, 32, 32]). The builtin
    kernels without delegates (the reference resolver has no int8 TILE)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with capture_fd2(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = Interpreter(model_content=bytes(buf),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                         experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        return {int(t["index"]): [int(v) for v in t["shape"]] for t in it.get_tensor_details()}


def analyze(buf: bytes) -> TfliteInfo:
    """Ops, edges, parameters and MACs of a .tflite (one subgraph, one input, one output). MACs are counted on the
    shapes of a batch-1 run (:func:`runtime_shapes`)."""
    from ai_edge_litert import schema_py_generated as fb

    op_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    m = fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = m.subgraphs[0]

    run = runtime_shapes(buf)

    def shape(tid: int) -> list[int]:
        if tid in run:
            return run[tid]
        s = sg.tensors[tid].shape
        return [int(d) for d in (s if s is not None else [])]

    def size(tid: int) -> int:
        return int(np.prod(shape(tid))) if shape(tid) else 1

    def const(tid: int) -> bool:
        return tid >= 0 and m.buffers[sg.tensors[tid].buffer].data is not None

    def qp(tid: int) -> tuple[float, int]:
        q = sg.tensors[tid].quantization
        if q is None or q.scale is None or not len(q.scale):
            return (0.0, 0)
        return float(q.scale[0]), int(q.zeroPoint[0]) if q.zeroPoint is not None else 0

    ops: dict[str, int] = {}
    params = macs = 0
    tin, tout = int(sg.inputs[0]), int(sg.outputs[0])
    core_in, core_out = qp(tin), qp(tout)
    for op in sg.operators or []:
        oc = m.operatorCodes[op.opcodeIndex]
        name = op_names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), f"CUSTOM({oc.customCode})")
        ops[name] = ops.get(name, 0) + 1
        ins, outs = [int(i) for i in op.inputs], [int(i) for i in op.outputs]
        if name == "QUANTIZE" and ins[0] == tin:
            core_in = qp(outs[0])
        if name == "DEQUANTIZE" and outs[0] == tout:
            core_out = qp(ins[0])
        if name in MAC_OPS:
            w = ins[1]
            # constants after the first input: weights and bias (TRANSPOSE_CONV: its first input is the output shape)
            params += sum(size(i) for k, i in enumerate(ins) if k > 0 and const(i))
            ws = shape(w)
            if name == "CONV_2D":
                macs += size(outs[0]) * int(np.prod(ws[1:]))
            elif name == "DEPTHWISE_CONV_2D":
                macs += size(outs[0]) * ws[1] * ws[2]
            elif name == "FULLY_CONNECTED":
                macs += size(outs[0]) * ws[1]
            else:  # TRANSPOSE_CONV (output_shape, weights OHWI, input): each input value meets each kernel tap
                macs += size(ins[2]) * ws[0] * ws[1] * ws[2]
    sig = sg.tensors[tin].shapeSignature
    return TfliteInfo(ops, type_names.get(sg.tensors[tin].type, "?"), type_names.get(sg.tensors[tout].type, "?"),
                      shape(tin), [int(d) for d in (sig if sig is not None else shape(tin))], shape(tout),
                      params, macs, core_in, core_out)
