"""Models shipped inside the package (trained by ``lwcnn-mcu train``)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

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
