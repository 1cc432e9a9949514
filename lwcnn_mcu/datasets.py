"""MNIST, Fashion-MNIST and CIFAR-10, from an offline folder or through Keras.

When ``LWCNN_DATASETS`` is set it names a folder laid out like ``shared/datasets``:
``mnist.npz``, ``fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` and
``cifar-10-batches-py.tar.xz``. Otherwise Keras's own download and cache are used.

Images come back as float32 NHWC in the model's input range (raw pixels 0..255: the models
scale them with a Rescaling layer, so compile, verify and the firmware all feed the same thing);
labels as int64.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lwcnn_mcu.errors import LwcnnError

DATASETS = ("mnist", "fashion_mnist", "cifar10")
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
INPUT_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def check_name(name: str) -> str:
    if name not in DATASETS:
        raise LwcnnError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    return name


def _need(path: Path) -> Path:
    if not path.is_file():
        raise LwcnnError(f"dataset file {path} is missing (LWCNN_DATASETS={os.environ.get('LWCNN_DATASETS')}); "
                         "put it there or unset LWCNN_DATASETS to let Keras download it")
    return path


def _idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise LwcnnError(f"dataset file {path} is not a readable gzip file ({exc})") from None
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise LwcnnError(f"dataset file {path} is truncated: {arr.size} bytes for shape {dims}")
    return arr.reshape(dims)


def _offline(name: str, root: Path) -> tuple[np.ndarray, ...]:
    if name == "mnist":
        try:
            with np.load(_need(root / "mnist.npz")) as d:
                return d["x_train"], d["y_train"], d["x_test"], d["y_test"]
        except (OSError, ValueError, KeyError) as exc:
            raise LwcnnError(f"dataset file {root / 'mnist.npz'} is unreadable ({exc})") from None
    if name == "fashion_mnist":
        d = root / "fashion-mnist"
        return (_idx(_need(d / "train-images-idx3-ubyte.gz")), _idx(_need(d / "train-labels-idx1-ubyte.gz")),
                _idx(_need(d / "t10k-images-idx3-ubyte.gz")), _idx(_need(d / "t10k-labels-idx1-ubyte.gz")))
    path = _need(root / "cifar-10-batches-py.tar.xz")
    xs, ys = {}, {}
    try:
        with tarfile.open(path, "r:xz") as tf:
            for m in tf.getmembers():
                base = m.name.rsplit("/", 1)[-1]
                if base.startswith("data_batch_") or base == "test_batch":
                    f = tf.extractfile(m)
                    assert f is not None
                    batch = pickle.load(f, encoding="bytes")
                    xs[base] = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                    ys[base] = np.asarray(batch[b"labels"], np.int64)
    except (OSError, tarfile.TarError, EOFError, pickle.UnpicklingError, KeyError) as exc:
        raise LwcnnError(f"dataset file {path} is unreadable ({type(exc).__name__}: {exc})") from None
    train = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [b for b in train + ["test_batch"] if b not in xs]
    if missing:
        raise LwcnnError(f"dataset file {path} lacks {', '.join(missing)}")
    return (np.concatenate([xs[b] for b in train]), np.concatenate([ys[b] for b in train]),
            xs["test_batch"], ys["test_batch"])


def _keras(name: str) -> tuple[np.ndarray, ...]:
    from lwcnn_mcu.util import quiet_tensorflow

    quiet_tensorflow()
    import keras

    mod = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist,
           "cifar10": keras.datasets.cifar10}[name]
    try:
        (xt, yt), (xs, ys) = mod.load_data()
    except Exception as exc:  # network errors come in many types
        raise LwcnnError(f"could not download dataset '{name}' through Keras ({type(exc).__name__}); "
                         "set LWCNN_DATASETS to a folder with the offline copies") from None
    return xt, yt, xs, ys


@lru_cache(maxsize=3)
def load(name: str) -> Dataset:
    check_name(name)
    root = os.environ.get("LWCNN_DATASETS")
    xt, yt, xs, ys = _offline(name, Path(root)) if root else _keras(name)
    shape = INPUT_SHAPES[name]
    fix = lambda x: np.asarray(x, np.float32).reshape((-1,) + shape)  # noqa: E731
    return Dataset(name, fix(xt), np.asarray(yt, np.int64).ravel(), fix(xs), np.asarray(ys, np.int64).ravel())


CALIBRATION_IMAGES = 500  # the default calibration: this many fixed random training images


def calibration_set(name: str, n: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """A fixed random sample of training images for int8 calibration."""
    ds = load(name)
    idx = np.random.default_rng(seed).choice(len(ds.x_train), size=min(n, len(ds.x_train)), replace=False)
    return ds.x_train[np.sort(idx)]


def array_sha256(x: np.ndarray) -> str:
    """SHA-256 of an array's shape and its values as little-endian float32 (C order): the identity of a
    calibration set, the same on every machine (the images are integers, the sample is NumPy's PCG64)."""
    a = np.ascontiguousarray(x, dtype="<f4")
    return hashlib.sha256(repr(tuple(a.shape)).encode() + a.tobytes()).hexdigest()
