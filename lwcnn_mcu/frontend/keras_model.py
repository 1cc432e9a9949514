"""Read a Keras 3 ``.keras`` model, check its layers, and quantize it to a full-int8 ``.tflite``.

The inference graph is rebuilt with a fixed batch size of 1 (so ``Flatten`` becomes one
RESHAPE rather than SHAPE/STRIDED_SLICE/PACK), then converted by the TFLite converter with a
representative dataset: int8 weights per output channel, int8 activations per tensor, int8
input and output.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from lwcnn_mcu.errors import LwcnnError
from lwcnn_mcu.util import capture_fd2, quiet_tensorflow

#: Keras layer classes the compiler accepts (DESIGN.md), in one list.
SUPPORTED_LAYERS: tuple[str, ...] = (
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization", "ReLU",
    "Activation", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "Flatten", "Reshape", "Dropout", "Add", "Subtract", "Multiply", "Maximum", "Minimum", "Concatenate",
    "ZeroPadding2D", "Rescaling", "Softmax", "LeakyReLU", "PReLU", "Conv2DTranspose", "UpSampling1D", "UpSampling2D",
    "Conv1D", "SeparableConv1D", "DepthwiseConv1D", "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "Cropping1D", "Cropping2D",
)
#: Activations (``activation=`` and ``Activation`` layers). What the TFLite converter makes of them:
#: sigmoid LOGISTIC, tanh TANH, hard_silu/hard_swish HARD_SWISH, silu/swish LOGISTIC then MUL of the
#: two, hard_sigmoid ADD of 3 (with RELU6) then MUL by 1/6 (both into the op before where it can).
SUPPORTED_ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "softmax", "linear", "sigmoid", "tanh", "hard_sigmoid",
                                          "hard_silu", "hard_swish", "silu", "swish")


def _quiet_tf() -> None:
    quiet_tensorflow()


def load_keras(path: Path) -> Any:
    _quiet_tf()
    import keras

    if not path.is_file():
        raise LwcnnError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise LwcnnError(f"{path}: not a .keras archive (it is not a zip file); re-save it with model.save()")
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for corrupt archives
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise LwcnnError(f"{path}: Keras could not load the model ({msg}); the file is corrupt or was saved "
                         "by an incompatible Keras version") from None
    return model


def _walk(layer: Any) -> list[Any]:
    subs = getattr(layer, "layers", None)
    if subs is None or layer.__class__.__name__ in SUPPORTED_LAYERS:
        return [layer]
    out = []
    for s in subs:
        out += _walk(s)
    return out


def check_model(model: Any, source: str) -> tuple[int, ...]:
    """Refuse what cannot be compiled; return the input shape without the batch dimension."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise LwcnnError(f"{source}: the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                         "lwcnn-mcu compiles single-input, single-output classifiers (unify a dual model first)")
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]) or len(shape) not in (2, 3, 4):
        raise LwcnnError(f"{source}: input shape {list(int(d) if d is not None else None for d in shape)} is "
                         "dynamic or not (features,), (steps, channels) or (height, width, channels); give the "
                         "model a fixed input shape")
    if shape[0] not in (None, 1):
        raise LwcnnError(f"{source}: input batch size {shape[0]}; only batch 1 (or unspecified) is supported")
    for layer in _walk(model):
        cls = layer.__class__.__name__
        if cls not in SUPPORTED_LAYERS:
            raise LwcnnError(f"{source}: layer '{layer.name}' of type {cls} is not supported. "
                             f"Supported layers: {', '.join(SUPPORTED_LAYERS)}")
        act = getattr(layer, "activation", None)
        if act is not None and cls != "ReLU":
            name = getattr(act, "__name__", str(act))
            if name not in SUPPORTED_ACTIVATIONS:
                raise LwcnnError(f"{source}: layer '{layer.name}' ({cls}) uses activation '{name}', which is not "
                                 f"supported; use one of: {', '.join(SUPPORTED_ACTIVATIONS)}")
        if cls == "ReLU" and getattr(layer, "threshold", 0):
            raise LwcnnError(f"{source}: layer '{layer.name}' is a thresholded ReLU (threshold "
                             f"{layer.threshold:g}), which is not supported; use threshold 0")
        if cls == "ReLU" and getattr(layer, "negative_slope", 0) and getattr(layer, "max_value", None) is not None:
            raise LwcnnError(f"{source}: layer '{layer.name}' is a ReLU with both negative_slope and max_value, "
                             "which is not supported; use one of them (or LeakyReLU)")
        _check_layer_options(layer, cls, source)
        for w in layer.get_weights():
            if not np.all(np.isfinite(w)):
                raise LwcnnError(f"{source}: layer '{layer.name}' has NaN or Inf weights; retrain or fix the model")
    return tuple(int(d) for d in shape[1:])


def _check_layer_options(layer: Any, cls: str, source: str) -> None:
    """Options of an accepted layer class that the compiler does not support."""
    if cls not in ("Conv2DTranspose", "UpSampling1D", "UpSampling2D"):
        return
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        raise LwcnnError(f"{source}: layer '{layer.name}' ({cls}) uses data_format='channels_first'; lwcnn-mcu "
                         "compiles channels_last (NHWC) models")
    if cls in ("UpSampling1D", "UpSampling2D") and getattr(layer, "interpolation", "nearest") != "nearest":
        raise LwcnnError(f"{source}: layer '{layer.name}' ({cls}) uses interpolation='{layer.interpolation}'; "
                         "only 'nearest' is supported")
    if cls == "Conv2DTranspose":
        if tuple(layer.dilation_rate) != (1, 1):
            raise LwcnnError(f"{source}: layer '{layer.name}' (Conv2DTranspose) has dilation_rate "
                             f"{tuple(layer.dilation_rate)}; TFLite's TRANSPOSE_CONV has no dilation (use 1)")
        if layer.output_padding is not None:
            raise LwcnnError(f"{source}: layer '{layer.name}' (Conv2DTranspose) sets output_padding, which is not "
                             "supported; leave it None")


def _nearest_upsampling(layer: Any) -> Any:
    """A layer that computes what an UpSampling1D/2D (nearest) does, in a form the TFLite converter turns
    into RESIZE_NEAREST_NEIGHBOR (half_pixel_centers, exactly a repeat for integer factors): Keras 3
    implements UpSampling with repeat, which the converter makes RESHAPE + TILE, an op TFLite Micro
    does not have. A 1-D signal (T, C) is resized as a (T, 1, C) image (RESHAPEs around it, free)."""
    import keras

    two_d = layer.__class__.__name__ == "UpSampling2D"
    fy, fx = (int(layer.size[0]), int(layer.size[1])) if two_d else (int(layer.size), 1)

    class NearestUpsampling(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            y = x if two_d else keras.ops.reshape(x, (-1, x.shape[1], 1, x.shape[2]))
            y = keras.ops.image.resize(y, (y.shape[1] * fy, y.shape[2] * fx), interpolation="nearest",
                                       data_format="channels_last")
            return y if two_d else keras.ops.reshape(y, (-1, y.shape[1], y.shape[3]))

    return NearestUpsampling(name=layer.name)


def _clone_layer(layer: Any) -> Any:
    if layer.__class__.__name__ in ("UpSampling1D", "UpSampling2D"):
        return _nearest_upsampling(layer)
    return layer.__class__.from_config(layer.get_config())


def check_data(x: Any, input_shape: tuple[int, ...], source: str, what: str = "data") -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        dtype = getattr(x, "dtype", type(x).__name__)
        raise LwcnnError(f"{source}: {what} must be a float32 array shaped (N, {', '.join(map(str, input_shape))}) "
                         f"in the model's input range; it holds {dtype}")
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape) or len(x) == 0:
        raise LwcnnError(f"{source}: {what} has shape {list(x.shape)}, the model needs (N, "
                         f"{', '.join(map(str, input_shape))}) with N >= 1")
    if not np.all(np.isfinite(x)):
        raise LwcnnError(f"{source}: {what} contains NaN or Inf values")
    return x.astype(np.float32, copy=False)


def quantize(model: Any, calib: np.ndarray) -> bytes:
    """Convert a checked Keras model to a full-int8 .tflite (batch 1) with ``calib`` as the
    representative dataset."""
    _quiet_tf()
    import keras
    import tensorflow as tf

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    # a fixed input name: the .tflite (and the model hash in the generated C) is then the same on every
    # run, not dependent on how many Keras tensors the process has created before
    inp = keras.Input(shape, batch_size=1, name="input")
    if any(layer.__class__.__name__ in ("UpSampling1D", "UpSampling2D") for layer in _walk(model)):
        m1 = keras.models.clone_model(model, input_tensors=inp, clone_function=_clone_layer, recursive=True)
    else:
        m1 = keras.models.clone_model(model, input_tensors=inp)
    m1.set_weights(model.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(m1)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8

    def rep() -> Any:
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv.representative_dataset = rep
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), capture_fd2(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected": the int8 input's own
        try:
            return bytes(conv.convert())
        except Exception as exc:
            msg = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            raise LwcnnError(f"the TFLite converter could not quantize the model: {msg}") from None


def layer_names(model: Any) -> tuple[str, ...]:
    """Every layer's name, nested models' layers included, in the order Keras lists them."""
    out: list[str] = []
    for layer in model.layers:
        out.append(layer.name)
        if hasattr(layer, "layers"):
            out.extend(layer_names(layer))
    return tuple(out)


def keras_predict(model: Any, x: np.ndarray, batch: int = 256) -> np.ndarray:
    out = model.predict(x, batch_size=batch, verbose=0)
    return np.asarray(out)
