"""Models shipped inside the package (trained by ``lwcnn-mcu train``)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from lwcnn_mcu.errors import LwcnnError

SHIPPED: dict[str, str] = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10"}


def models_dir() -> Path:
    return Path(str(resources.files("lwcnn_mcu"))) / "models"


def shipped_path(name: str) -> Path:
    return models_dir() / f"{name}.keras"


def shipped_tflite(name: str) -> Path:
    """The int8 .tflite of a shipped model: its .keras quantized with the default calibration (the 500
    fixed training images of `datasets.calibration_set`), written by `lwcnn-mcu train`. With it,
    compile/build/flash of a shipped model need neither the dataset nor a download."""
    return models_dir() / f"{name}.tflite"


N_SAMPLES = 8  # test images shipped per model: what the firmware embeds for its self-test


def shipped_samples(name: str, n: int) -> np.ndarray | None:
    """The first n test images of a shipped model's dataset (float32 0-255, as `datasets.load` gives
    them), from ``models/<name>.samples.npy`` (uint8, written by `save_samples`), so that a firmware
    build needs no dataset; None when not shipped or n is larger than what is."""
    p = models_dir() / f"{name}.samples.npy"
    if name not in SHIPPED or not p.is_file():
        return None
    x = np.load(p, allow_pickle=False)
    return x[:n].astype(np.float32) if n <= len(x) else None


def save_samples(name: str, x_test: np.ndarray) -> Path:
    p = models_dir() / f"{name}.samples.npy"
    np.save(p, x_test[:N_SAMPLES].astype(np.uint8), allow_pickle=False)
    return p


def card(name: str) -> dict:
    p = models_dir() / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def resolve(model: str) -> Path:
    """A MODEL argument: a path to .keras/.tflite, or the name of a shipped model."""
    if model in SHIPPED:
        p = shipped_path(model)
        if not p.is_file():
            raise LwcnnError(f"the shipped model '{model}' is not in this installation ({p} is missing); "
                             f"train it with: lwcnn-mcu train --dataset {model}")
        return p
    p = Path(model)
    if not p.exists():
        names = ", ".join(SHIPPED)
        raise LwcnnError(f"model '{model}' is neither a file nor a shipped model ({names})")
    if p.suffix not in (".keras", ".tflite"):
        raise LwcnnError(f"model file {p} must end in .keras or .tflite")
    return p
