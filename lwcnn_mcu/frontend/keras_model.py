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
    "ZeroPadding2D", "Rescaling", "Softmax",
)
SUPPORTED_ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "softmax", "linear")


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
    if any(d is None for d in shape[1:]) or len(shape) not in (2, 4):
        raise LwcnnError(f"{source}: input shape {list(shape)} is dynamic or not (H, W, C); "
                         "give the model a fixed input shape")
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
        if cls == "ReLU" and (getattr(layer, "negative_slope", 0) or getattr(layer, "threshold", 0)):
            raise LwcnnError(f"{source}: layer '{layer.name}' is a leaky/thresholded ReLU, which is not supported")
        for w in layer.get_weights():
            if not np.all(np.isfinite(w)):
                raise LwcnnError(f"{source}: layer '{layer.name}' has NaN or Inf weights; retrain or fix the model")
    return tuple(int(d) for d in shape[1:])


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
    m1 = keras.models.clone_model(model, input_tensors=keras.Input(shape, batch_size=1, name="input"))
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
