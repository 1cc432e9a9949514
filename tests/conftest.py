"""Shared helpers: small random-weight Keras models, compiled and compared with TFLite Micro."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
if "LWCNN_DATASETS" not in os.environ and SHARED.is_dir():
    os.environ["LWCNN_DATASETS"] = str(SHARED)
CMSIS_NN_TARBALL = ROOT.parent / "shared" / "third_party" / "CMSIS-NN-99f736a6.tar.gz"
if "LWCNN_CMSIS_NN" not in os.environ and CMSIS_NN_TARBALL.is_file():
    os.environ["LWCNN_CMSIS_NN"] = str(CMSIS_NN_TARBALL)  # --kernels cmsis-nn builds with it (tests/test_cmsis_nn.py)

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None


def randomize(model, seed: int = 0) -> None:  # noqa: ANN001
    """Give every weight a random, non-trivial value (biases and batch-norm statistics included)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for var, w in zip(layer.weights, layer.get_weights(), strict=True):
            name = var.path if hasattr(var, "path") else var.name
            if "moving_variance" in name:
                v = rng.uniform(0.5, 2.0, w.shape)
            elif "gamma" in name:
                v = rng.uniform(0.5, 1.5, w.shape)
            elif "moving_mean" in name or "beta" in name or "bias" in name:
                v = rng.normal(0, 0.2, w.shape)
            else:
                v = rng.normal(0, 0.4, w.shape)
            new.append(v.astype(np.float32))
        if new:
            layer.set_weights(new)


def compile_keras(model, tmp_path: Path, seed: int = 0, n_calib: int = 64):  # noqa: ANN001, ANN201
    from lwcnn_mcu import compiler

    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    shape = tuple(model.inputs[0].shape[1:])
    calib = np.random.default_rng(seed).normal(0, 1, (n_calib,) + shape).astype(np.float32)
    return compiler.compile_model(str(path), calib=calib)


def random_inputs(c, n: int, seed: int = 1) -> np.ndarray:  # noqa: ANN001
    shape = tuple(c.graph.input.shape[1:])
    return np.random.default_rng(seed).integers(-128, 128, (n,) + shape).astype(np.int8)


@pytest.fixture(scope="session")
def keras():  # noqa: ANN201
    import keras as k

    return k


def keras_96x96(keras, out_dir: Path, *, big: bool = False) -> str:  # noqa: ANN001
    """A 96x96x3 int8 .tflite, random weights: an input (27,648 B) larger than a protocol frame (4,096 B).

    big=False: Conv2D stride 2, DepthwiseConv2D, 1x1 Conv2D, GlobalAveragePooling2D, Dense(1200) - an
    output larger than one reply too; about 37 KB of arena. big=True: a stride-1 Conv2D of 8 channels
    (a 73,728 B activation), GlobalAveragePooling2D, Dense(10): with its input it needs more RAM than a
    NUCLEO-F401RE has."""
    L = keras.layers
    inp = keras.Input((96, 96, 3))
    if big:
        x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    else:
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
        x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = L.Conv2D(16, 1, activation="relu")(x)
    out = L.Dense(10 if big else 1200)(L.GlobalAveragePooling2D()(x))
    m = keras.Model(inp, out, name="big96" if big else "m96")
    randomize(m, seed=9)
    c = compile_keras(m, out_dir, seed=9, n_calib=16)
    p = out_dir / f"{m.name}.tflite"
    p.write_bytes(c.tflite)
    return str(p)
