"""Small helpers: quiet C++ stderr, atomic output folders."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lwcnn_mcu.errors import LwcnnError


@contextlib.contextmanager
def capture_fd2() -> Iterator[list[str]]:
    """Redirect file descriptor 2 (C/C++ stderr) into a list of lines while the block runs."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(tmp.read().decode(errors="replace").splitlines())


def quiet_tensorflow() -> None:
    """Import TensorFlow (and so Keras) without its log noise: the absl and CUDA-stub lines it prints
    on C++ stderr while importing, and its Python-level warnings. Call before any TensorFlow or Keras
    import; a no-op once TensorFlow is loaded."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "tensorflow" in sys.modules:
        return
    import logging
    import warnings

    with capture_fd2(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def check_writable_dir(out: Path) -> None:
    parent = out.resolve().parent
    if out.exists() and not out.is_dir():
        raise LwcnnError(f"output folder {out} exists and is a file; choose another -o")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise LwcnnError(f"output folder {out} cannot be created: {probe} is not writable; choose another -o")


def write_dir_atomically(out: Path, files: dict[str, bytes | str]) -> None:
    """Write all files into a sibling temporary folder, then swap it in: never a half-written folder."""
    check_writable_dir(out)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise LwcnnError(f"output folder {out} cannot be created ({exc.strerror}); choose another -o") from None
    try:
        for name, data in files.items():
            p = tmp / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                p.write_text(data)
            else:
                p.write_bytes(data)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            old.rmdir()
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LwcnnError(f"could not write {out} ({exc.strerror}); nothing was written") from None
