"""Build the generated C for the host (as strictly as for the target) and run it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lwcnn_mcu import cmsis_nn, codegen
from lwcnn_mcu.errors import LwcnnError

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion", "-Wno-sign-conversion"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lwcnn-mcu" / "host"
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class HostModel:
    exe: Path
    in_size: int
    out_size: int
    n_layers: int
    in_dtype: str = "int8"  # the entry point it runs: int8 (NAME_invoke) or the model's own types
    out_dtype: str = "int8"

    def run(self, x: np.ndarray) -> np.ndarray:
        """x: (N, in_size) of in_dtype -> (N, out_size) of out_dtype."""
        x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=self.in_dtype)
        with tempfile.TemporaryDirectory() as d:
            fin, fout = Path(d) / "in.bin", Path(d) / "out.bin"
            fin.write_bytes(x.tobytes())
            self._exec([str(fin), str(len(x)), str(fout)])
            return np.frombuffer(fout.read_bytes(), self.out_dtype).reshape(len(x), self.out_size).copy()

    def trace(self, x: np.ndarray) -> dict[int, np.ndarray]:
        """Every layer's output for one input."""
        with tempfile.TemporaryDirectory() as d:
            fin, fout, ftr = Path(d) / "in.bin", Path(d) / "out.bin", Path(d) / "trace.bin"
            fin.write_bytes(np.ascontiguousarray(x, np.int8).tobytes())
            self._exec([str(fin), "1", str(fout), str(ftr)])
            raw = ftr.read_bytes()
        out: dict[int, np.ndarray] = {}
        pos = 0
        while pos < len(raw):
            layer, size = np.frombuffer(raw[pos:pos + 8], np.int32)
            out[int(layer)] = np.frombuffer(raw[pos + 8:pos + 8 + size], np.int8).copy()
            pos += 8 + int(size)
        return out

    def _exec(self, args: list[str]) -> None:
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
        r = subprocess.run([str(self.exe), *args], capture_output=True, text=True, env=env, timeout=3600)
        if r.returncode != 0 or "runtime error" in r.stderr or "AddressSanitizer" in r.stderr:
            raise RuntimeError(f"host model run failed (exit {r.returncode}):\n{r.stderr[-3000:]}")


def _build_into(d: Path, prefix: str, what: str, sources: dict[str, str],
                commands: list[list[str]]) -> None:
    """Write ``sources`` into a fresh folder, run each command there (``{tmp}`` in an argument is that folder),
    then move the folder to ``d`` at once: concurrent builds of the same key never see half a build."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=cache_dir()))
    for name, text in sources.items():
        (tmp / name).write_text(text)
    for cmd in commands:
        r = subprocess.run([a.replace("{tmp}", str(tmp)) for a in cmd], capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"host build of {what} failed:\n{r.stderr[-4000:]}")
    try:
        tmp.rename(d)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)


def cmsis_objects(cm: cmsis_nn.CmsisNN, cc: str) -> list[Path]:
    """CMSIS-NN's .c files compiled for the host once (cached by compiler and commit), with its own flags."""
    key = hashlib.sha256(repr((cc, cmsis_nn.COMMIT, sorted(cmsis_nn.SOURCES.items()), cmsis_nn.CFLAGS)).encode())
    d = cache_dir() / f"cmsis-nn-{key.hexdigest()[:16]}"
    objs = [d / (src.stem + ".o") for src in cm.sources]
    if all(o.is_file() for o in objs):
        return objs
    _build_into(d, "cmsis.", "CMSIS-NN", {}, [[cc, *cmsis_nn.CFLAGS, *(f"-I{i}" for i in cm.include_dirs), "-c",
                                               str(src), "-o", "{tmp}/" + src.stem + ".o"] for src in cm.sources])
    return objs


def compiler() -> str:
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise LwcnnError(f"no host C compiler '{cc}' on PATH; install gcc (make setup does) or set CC")
    return cc


def model_header(files: dict[str, str]) -> str:
    """The one NAME_model.h among generated files."""
    headers = [n for n in files if n.endswith("_model.h")]
    if len(headers) != 1:
        raise ValueError(f"expected one generated *_model.h, got {headers}")
    return headers[0]


_IO_ENTRY = re.compile(r"^int (\w+_invoke_(?:float|u8))\(const (\w+) \*input, (\w+) \*output\);$", re.M)
_DTYPES = {"float": "float32", "uint8_t": "uint8", "int8_t": "int8"}


def io_entry(files: dict[str, str]) -> tuple[str, str, str] | None:
    """The model's entry point on its own I/O types (function, input dtype, output dtype), if it has one."""
    m = _IO_ENTRY.search(files[model_header(files)])
    return (m.group(1), _DTYPES[m.group(2)], _DTYPES[m.group(3)]) if m else None


def build_host(files: dict[str, str], *, sanitize: bool = False, opt: str = "-O2", simd: bool = False,
               io: bool = False) -> HostModel:
    """Compile the generated sources plus the host harness into an executable (cached by content).

    simd=True builds the kernels' SIMD (Cortex-M DSP) code path with exact C models of SXTB16,
    SMLAD and SMMULR (-DLW_SIMD_EMULATE), so the host tests check that path too. io=True runs the
    model's entry point on its own I/O types (NAME_invoke_float / NAME_invoke_u8) instead of the
    int8 NAME_invoke; a model without one (int8 I/O) runs NAME_invoke either way."""
    host = codegen.templates_dir() / "host"
    sources = dict(files)
    header = model_header(files)
    prefix = header.removesuffix("_model.h")
    entry = io_entry(files) if io else None
    fn, din, dout = entry if entry else (f"{prefix}_invoke", "int8", "int8")
    ctype = {v: k for k, v in _DTYPES.items()}
    sources["lw_host_model.h"] = (f'#include "{header}"\n#define LW_HOST_INPUT_SIZE {prefix.upper()}_INPUT_SIZE\n'
                                  f"#define LW_HOST_OUTPUT_SIZE {prefix.upper()}_OUTPUT_SIZE\n"
                                  f"#define LW_HOST_INVOKE {fn}\n#define LW_HOST_IN_T {ctype[din]}\n"
                                  f"#define LW_HOST_OUT_T {ctype[dout]}\n")
    sources["lw_host_main.c"] = (host / "lw_host_main.c").read_text()
    sources["lwcnn_hooks.h"] = (host / "lwcnn_hooks.h").read_text()
    flags = STRICT + [opt, "-DLWCNN_HAVE_HOOKS"] + (SANITIZE + ["-g"] if sanitize else []) \
        + (["-DLW_SIMD_EMULATE"] if simd else [])
    cc = compiler()
    extra: list[str] = []
    if cmsis_nn.needed(files):  # kernels="cmsis-nn": CMSIS-NN's portable C (no ARM_MATH_DSP on the host)
        cm = cmsis_nn.locate()
        extra = [*(f"-I{d}" for d in cm.include_dirs), *map(str, cmsis_objects(cm, cc))]
        flags = flags + [f for f in extra if f.startswith("-I")]
    h = hashlib.sha256(repr((sorted(sources.items()), flags, cc, extra)).encode()).hexdigest()[:24]
    d = cache_dir() / h
    exe = d / "lw_host"
    if not exe.is_file():
        cfiles = sorted("{tmp}/" + n for n in sources if n.endswith(".c"))
        objs = [e for e in extra if not e.startswith("-I")]
        _build_into(d, "build.", "the generated C", sources,
                    [[cc, *flags, "-I", "{tmp}", *cfiles, *objs, "-o", "{tmp}/lw_host"]])
    model_h = files[header]

    def macro(name: str) -> int:
        for line in model_h.splitlines():
            if line.startswith(f"#define {name} "):
                return int(line.split()[2].strip("()"))
        raise KeyError(name)

    up = prefix.upper()
    return HostModel(exe, macro(f"{up}_INPUT_SIZE"), macro(f"{up}_OUTPUT_SIZE"), macro(f"{up}_NUM_LAYERS"), din, dout)
