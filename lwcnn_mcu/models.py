"""Models shipped inside the package (trained by ``lwcnn-mcu train``)."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lwcnn_mcu.errors import LwcnnError

if TYPE_CHECKING:
    from lwcnn_mcu.ir import Graph

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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provenance(keras_file: Path, tflite: bytes, calibration: dict[str, Any]) -> dict[str, Any]:
    """What a model card records of where its int8 .tflite came from: the SHA-256 of the .keras it was
    quantized from, of the .tflite itself, and the calibration set (how it was drawn and the SHA-256 of
    its values, `datasets.array_sha256`). These identities are the same on every machine; the bytes of a
    fresh quantization are not (the converter's calibration ranges come from float sums whose rounding
    depends on the CPU), so staleness is judged by these hashes, not by re-quantizing."""
    return {"keras_sha256": sha256(Path(keras_file).read_bytes()), "tflite_sha256": sha256(tflite),
            "calibration": calibration}


def shipped_tflite_is_current(name: str) -> bool:
    """True when the shipped .tflite is the one the card says was quantized from the shipped .keras."""
    prov = card(name).get("provenance") or {}
    k, t = shipped_path(name), shipped_tflite(name)
    return (k.is_file() and t.is_file() and prov.get("keras_sha256") == sha256(k.read_bytes())
            and prov.get("tflite_sha256") == sha256(t.read_bytes()))


def quantization_drift(ref: Graph, new: Graph, rtol: float = 1e-4) -> list[str]:
    """How two int8 quantizations of the same float model differ beyond float-rounding noise: the same
    ops and tensors, scales within ``rtol`` (relative), zero points and int8 constants within 1, int32
    constants (biases, whose scale is input scale x weight scale) within ``rtol`` of their value plus 1.
    Returns one line per difference; empty means equal up to the last bits of the calibration ranges."""
    out: list[str] = []
    if [(o.opcode, o.inputs, o.outputs) for o in ref.ops] != [(o.opcode, o.inputs, o.outputs) for o in new.ops]:
        return ["the op lists differ"]
    if len(ref.tensors) != len(new.tensors):
        return [f"{len(ref.tensors)} tensors against {len(new.tensors)}"]
    for a, b in zip(ref.tensors, new.tensors, strict=True):
        if (a.shape, a.dtype) != (b.shape, b.dtype):
            out.append(f"tensor {a.id} '{a.name}': {a.dtype}{list(a.shape)} against {b.dtype}{list(b.shape)}")
            continue
        if (a.quant is None) != (b.quant is None):
            out.append(f"tensor {a.id} '{a.name}': quantized in one model only")
        elif a.quant is not None and b.quant is not None:
            sa, sb = np.asarray(a.quant.scale), np.asarray(b.quant.scale)
            za, zb = np.asarray(a.quant.zero_point), np.asarray(b.quant.zero_point)
            if sa.shape != sb.shape or not np.all(np.abs(sa - sb) <= rtol * np.abs(sa)):
                out.append(f"tensor {a.id} '{a.name}': scale {a.quant.scale[:4]} against {b.quant.scale[:4]}")
            elif za.shape != zb.shape or np.any(np.abs(za - zb) > 1):
                out.append(f"tensor {a.id} '{a.name}': zero point {a.quant.zero_point[:4]} against "
                           f"{b.quant.zero_point[:4]}")
        if (a.data is None) != (b.data is None):
            out.append(f"tensor {a.id} '{a.name}': constant in one model only")
        elif a.data is not None and b.data is not None:
            da, db = a.data.astype(np.float64), b.data.astype(np.float64)
            tol = 1.0 + (rtol * np.abs(da) if a.dtype == "int32" else 0.0)
            if np.any(np.abs(da - db) > tol):
                worst = int(np.argmax(np.abs(da - db) - tol))
                out.append(f"tensor {a.id} '{a.name}': value {worst} is {da.ravel()[worst]:g} against "
                           f"{db.ravel()[worst]:g}")
    return out


def resolve(model: str) -> Path:
    """A MODEL argument: a path to .keras/.tflite/.onnx, or the name of a shipped model."""
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
    if p.suffix not in (".keras", ".tflite", ".onnx"):
        raise LwcnnError(f"model file {p} must end in .keras, .tflite or .onnx")
    return p
