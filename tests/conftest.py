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
