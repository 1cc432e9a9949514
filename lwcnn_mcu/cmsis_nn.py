"""CMSIS-NN, the build-time dependency of ``--kernels cmsis-nn``: where its sources are, checked.

CMSIS-NN is never copied into this repository. ``LWCNN_CMSIS_NN`` names a folder or a ``.tar.gz`` of its sources
(the ``Source/`` and ``Include/`` folders of commit :data:`COMMIT`, at the top or one folder down); a tarball is
extracted once into the user cache (``~/.cache/lwcnn-mcu/cmsis-nn/<commit>/``). When the variable is unset, that
same commit is downloaded from its public repository (:data:`URL`) into the cache. Either way every file we
compile or include is checked against its SHA-256 in :data:`SOURCES` / :data:`HEADERS` before it is used, so the
kernels that run are the ones whose bytes the tests compared with TFLite Micro.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lwcnn_mcu.errors import LwcnnError

COMMIT = "99f736a63036613032f9b70de36b493bcd7802d4"  # ARM-software/CMSIS-NN main, 2026-07-15 (v7.0.0 + 43)
URL = f"https://github.com/ARM-software/CMSIS-NN/archive/{COMMIT}.tar.gz"
ENV = "LWCNN_CMSIS_NN"
_WANT = f"{ENV} must name a folder or .tar.gz of CMSIS-NN commit {COMMIT[:8]} (its Source/ and Include/)"

#: The .c files the s8 kernels we call need (the union of what the linker keeps on the host and on a Cortex-M4
#: with the DSP extension), with their SHA-256 at COMMIT.
SOURCES: dict[str, str] = {
    "Source/ConvolutionFunctions/arm_convolve_wrapper_s8.c":
        "42a80bd1f7177f0605e5546f630d332c2bdf92e6eeed654cdcedfefe7a906827",
    "Source/ConvolutionFunctions/arm_convolve_s8.c":
        "a968f1cc5d19ef89bb5f9384a6af956cf1aaabcc9b5f7481069a59aafa083d5b",
    "Source/ConvolutionFunctions/arm_convolve_1x1_s8.c":
        "56e53bf06603eb5b75e455fa91a6c1a650a8038062dbb49c572a1f4fe87cc4b7",
    "Source/ConvolutionFunctions/arm_convolve_1x1_s8_fast.c":
        "2344d4f50ae47a67c6f4d32fb2c68307a68cb98697aa35a55ae91309b706bcae",
    "Source/ConvolutionFunctions/arm_convolve_1_x_n_s8.c":
        "dfd6bb779cfac165e799156d28fda549fda3f174e31baf9a4d2cf0c82b6b5832",
    "Source/ConvolutionFunctions/arm_depthwise_conv_wrapper_s8.c":
        "c8352f0cc292add5120714d5c07a79ed6d95e4bfe38442616bba48883378d929",
    "Source/ConvolutionFunctions/arm_depthwise_conv_s8.c":
        "75676b3c415f2a02bed567a9a132e63779547dfc5dda949ad9b0ad6e7cdac714",
    "Source/ConvolutionFunctions/arm_depthwise_conv_s8_opt.c":
        "c2a642c34a1d3b5471e5a21448f79942b65342732367cd167e49ce5e7e54b601",
    "Source/ConvolutionFunctions/arm_depthwise_conv_3x3_s8.c":
        "5e896798702f9c3814dd45a78c0a283fdadaf591dbfc87ae1f4344a834e8a450",
    "Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c":
        "54fcdf431c8b5ff32e4aea7732a60a6ae1695da14e5f01ffa2bda56fb62211b2",
    "Source/ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c":
        "35d6a50b9f52ade91c6e2ecf06d283a68d8d7edd0120a4edf1338c9e216e77cd",
    "Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c":
        "144c7751c94c22c61222d1c0369127be36d05f637d3d90997cf3f7dca4251a42",
    "Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_row_offset_s8_s16.c":
        "ab0578b7d6f4e68ca36b3703ef115faac561da0502a709c0e5145e6db390d721",
    "Source/FullyConnectedFunctions/arm_fully_connected_s8.c":
        "e6eb8c143a8f473a218e5310820a346cccb1564fd4690b0a0fdaa1124f6a3435",
    "Source/FullyConnectedFunctions/arm_fully_connected_per_channel_s8.c":
        "ddc6f0c00b1bb2f769317abf11c11416289f159f75fdb09aa786c62477e21d9c",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_per_ch_s8.c":
        "316a9b62c9c79a0a390149fa75d704b51ec392bc19751c443dcd73750e809ad6",
    "Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c":
        "50e714f19778df42cbc60e358bf716b6a6cef46c35fd897f429e6e6adebd4a78",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c":
        "056300bafed58af6a5e337e5391d63bee4e0cfba1749fa1b58c7365aae41221e",
    "Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c":
        "7d3ab53e51527b83378f52477b3f2729397d258e38aa9eceb3d6ceced7c1061c",
    "Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c":
        "fb04e819e13ee61177d8ccbcdfc6d3b512cadd94cf3fec0dfadc157939e33de2",
    "Source/PoolingFunctions/arm_max_pool_s8.c":
        "0fd7ac0d4bd6cbd578f8d2157432828e3c7b9b079908fd68048be282564514e4",
    "Source/PoolingFunctions/arm_avgpool_s8.c":
        "2817d6e0e2f52e587d073ff84dff7c4b62be4191827972d7f5ee8c6eb24c5901",
    "Source/PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c":
        "05021601da4a064bd1ae70eb3a6ac6eeedfa61eeb365efd7e1d9e949453a3f4d",
    "Source/SoftmaxFunctions/arm_softmax_s8.c":
        "36e3014092a8820f583692e37d63f230104c9cf4aca508d921eec5830771deeb",
    "Source/SoftmaxFunctions/arm_nn_softmax_common_s8.c":
        "a332f2b1173efd2faf67ca11b83cc7eaaf196bd5391e8ce23b4d1dd79940e6cf",
    "Source/BasicMathFunctions/arm_elementwise_add_s8.c":
        "7a5b6da4f9c4a506d6d17e0f8888448069df875adf5590c2bf399c59ee10ad2f",
    "Source/BasicMathFunctions/arm_elementwise_mul_s8.c":
        "4365d15aa7e44dd7c85891c29f57955de09a77cde24c128ed665697561c19596",
}

#: The headers those files and the generated C include, with their SHA-256 at COMMIT.
HEADERS: dict[str, str] = {
    "Include/arm_nn_math_types.h":
        "0d3b5bf0eb8605cca3607c774c40ba43a63db0e18e290cfb89a245854968a63d",
    "Include/arm_nn_types.h":
        "b070ae15f82a42d9ea556d9e6209e2b81ff9e399e836dbea937323154928ee84",
    "Include/arm_nnfunctions.h":
        "58552550dc1041f91a58a0aacd15b278d88324685b4c90fc703e7b20082447cd",
    "Include/arm_nnsupportfunctions.h":
        "0d5f6dd9f81ae6361e2d0ffa7fa91ccd3ae1f84fb898942b027260609caaae6b",
    "Include/Internal/arm_nn_compiler.h":
        "0cc714d91b613f9c1554bba53ac170968dd9ba5108243a607e6c422f7ca38698",
    "Include/Internal/arm_nn_config.h":
        "d2087bb49151b14665d70e0f9269b8df265c678ff86eca7a2b371caf8e2db57b",
}

INCLUDE_DIRS = ("Include",)

#: The compiler flags CMSIS-NN's own files are built with (its code is not written for our -Wconversion -Werror;
#: no sanitizer either: its portable C is checked by its own project, ours by the comparison with TFLite Micro).
CFLAGS = ("-std=c99", "-O2", "-w", "-ffunction-sections", "-fdata-sections")


@dataclass(frozen=True)
class CmsisNN:
    """A checked CMSIS-NN source tree."""

    root: Path  # the folder holding Source/ and Include/

    @property
    def include_dirs(self) -> tuple[Path, ...]:
        return tuple(self.root / d for d in INCLUDE_DIRS)

    @property
    def sources(self) -> tuple[Path, ...]:
        return tuple(self.root / p for p in SOURCES)


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lwcnn-mcu" / "cmsis-nn"


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _checked_mark() -> str:
    """What a cached tree's .checked file holds: the commit and a digest of the file list it was checked against
    (a newer list makes the cache checked again)."""
    digest = hashlib.sha256(repr(sorted({**SOURCES, **HEADERS}.items())).encode()).hexdigest()[:16]
    return f"{COMMIT} {digest}\n"


def _cached() -> Path | None:
    """The cache's tree of COMMIT, if one was extracted (checked again when the file list changed)."""
    dest = cache_root() / COMMIT
    mark = dest / ".checked"
    if not mark.is_file():
        return None
    if mark.read_text() != _checked_mark():
        check_tree(dest, str(dest))
        mark.write_text(_checked_mark())
    return dest


def _find_root(folder: Path) -> Path | None:
    """The folder itself, or its one subfolder, that holds Source/ and Include/."""
    if (folder / "Source").is_dir() and (folder / "Include").is_dir():
        return folder
    subs = [d for d in folder.iterdir() if d.is_dir() and (d / "Source").is_dir() and (d / "Include").is_dir()]
    return subs[0] if len(subs) == 1 else None


def check_tree(root: Path, origin: str) -> None:
    """Every file we compile or include is there with its SHA-256 at COMMIT, else LwcnnError."""
    for rel, want in {**SOURCES, **HEADERS}.items():
        p = root / rel
        if not p.is_file():
            raise LwcnnError(f"the CMSIS-NN sources of {origin} lack {rel}: {_WANT}")
        if _sha256(p) != want:
            raise LwcnnError(f"the CMSIS-NN sources of {origin}: {rel} differs from commit {COMMIT[:8]} (its SHA-256); "
                             f"{_WANT}")


def _extract(archive: Path, origin: str) -> Path:
    """Extract a tarball of CMSIS-NN into the cache, once; checked before it is moved into place."""
    dest = cache_root() / COMMIT
    if _cached() is not None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="extract.", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise LwcnnError(f"{origin} is not a readable .tar.gz ({str(exc)[:120]}); {_WANT}") from None
        root = _find_root(tmp)
        if root is None:
            raise LwcnnError(f"{origin} holds no CMSIS-NN tree (Source/ and Include/ at the top or one folder "
                             f"down); {_WANT}")
        check_tree(root, origin)
        (root / ".checked").write_text(_checked_mark())
        if dest.exists() and not (dest / ".checked").is_file():
            shutil.rmtree(dest, ignore_errors=True)  # a tree left unchecked: replace it
        try:
            root.rename(dest)
        except OSError:
            if _cached() is None:  # else another process put its checked tree there first: use that one
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _download() -> Path:
    """COMMIT from its public repository into the cache (its archive holds more files than we check)."""
    dest = cache_root() / COMMIT
    if _cached() is not None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="download.", suffix=".tar.gz", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            with urllib.request.urlopen(URL, timeout=60) as r, tmp.open("wb") as f:
                shutil.copyfileobj(r, f)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LwcnnError(f"--kernels cmsis-nn needs the CMSIS-NN sources and {ENV} is not set: downloading "
                             f"{URL} failed ({reason}); offline, set {ENV} to a folder or .tar.gz of CMSIS-NN commit "
                             f"{COMMIT[:8]}") from None
        return _extract(tmp, URL)
    finally:
        tmp.unlink(missing_ok=True)


def locate() -> CmsisNN:
    """The checked CMSIS-NN sources: ``LWCNN_CMSIS_NN`` (a folder, or a tarball extracted into the cache), else
    the cache, else a download of COMMIT into the cache. LwcnnError when none can be had."""
    env = os.environ.get(ENV)
    if not env:
        return CmsisNN(_download())
    p = Path(env).expanduser()
    if p.is_dir():
        root = _find_root(p)
        if root is None:
            raise LwcnnError(f"{ENV}={env} holds no CMSIS-NN tree (Source/ and Include/ at the top or one folder "
                             f"down); {_WANT}")
        check_tree(root, f"{ENV}={env}")
        return CmsisNN(root)
    if p.is_file():
        return CmsisNN(_extract(p, f"{ENV}={env}"))
    raise LwcnnError(f"{ENV}={env} does not exist; {_WANT}")


def available() -> bool:
    """Whether the sources can be had without a download (LWCNN_CMSIS_NN set, or the cache filled)."""
    env = os.environ.get(ENV)
    return bool(env and Path(env).expanduser().exists()) or (cache_root() / COMMIT / ".checked").is_file()


#: The line of a generated model's C that calls CMSIS-NN; builders add its sources where they find it.
MARKER = '#include "arm_nnfunctions.h"'


def needed(files: dict[str, str]) -> bool:
    """Whether generated C (file name -> text) calls CMSIS-NN (a model compiled with kernels="cmsis-nn")."""
    return any(name.endswith("_model.c") and MARKER in text for name, text in files.items())
