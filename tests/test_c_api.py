"""The generated C API as an embedded engineer integrates it: the header's documented usage compiles
as C99 and C++ with every warning, several models link into one program, the caller's arena is used
and never written past its end, and the quantize/dequantize helpers round exactly as TFLite does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from lwcnn_mcu import compiler, hostrun, reference

CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wshadow", "-Wconversion", "-Wno-sign-conversion"]
CXXFLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wshadow"]
GUARD = 64  # bytes of pattern before and after the caller's arena

USER_PROGRAM = r"""
/* A user program: every macro and function of @_model.h, as its header comment documents them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "@_model.h"

static float x[@U_INPUT_SIZE];
static int8_t in[@U_INPUT_SIZE];
static int8_t out_static[@U_OUTPUT_SIZE];
static int8_t out_caller[@U_OUTPUT_SIZE];
/* the caller's arena, between two guard regions */
static int32_t block[(@GUARD + @U_ARENA_BYTES + 3) / 4 + @GUARD / 4 + 1];

int main(void)
{
    const int size = @U_INPUT_H * @U_INPUT_W * @U_INPUT_C;
    const float scale = @U_INPUT_SCALE;
    const int zero = @U_INPUT_ZERO_POINT;
    FILE *f = fopen("x.bin", "rb");
    if (size != @U_INPUT_SIZE || f == NULL || fread(x, sizeof x[0], (size_t)size, f) != (size_t)size) {
        return 10;
    }
    fclose(f);
    for (int i = 0; i < @U_INPUT_SIZE; ++i) {
        in[i] = @_quantize_input(x[i]);
    }
    if (@_invoke(in, out_static) != 0) {
        return 11;
    }
    uint8_t *bytes = (uint8_t *)block;
    memset(bytes, 0xA5, sizeof block);
    void *arena = bytes + @GUARD;
    if ((uintptr_t)arena % @U_ARENA_ALIGN != 0 || @_invoke_with_arena(arena, in, out_caller) != 0) {
        return 12;
    }
    for (size_t i = 0; i < sizeof block; ++i) {
        const int inside = i >= @GUARD && i < @GUARD + (size_t)@U_ARENA_BYTES;
        if (!inside && bytes[i] != 0xA5) {
            return 13; /* a write outside the arena */
        }
    }
    if (memcmp(out_static, out_caller, sizeof out_static) != 0) {
        return 14;
    }
    if (@_invoke_with_arena(bytes + @GUARD + 1, in, out_caller) != -1 ||
        @_invoke_with_arena(NULL, in, out_caller) != -1) {
        return 15; /* misaligned or missing arena: refused */
    }
    f = fopen("y.bin", "wb");
    for (int i = 0; i < @U_OUTPUT_SIZE; ++i) {
        const float y = @_dequantize_output(out_static[i]);
        const float again = (float)(out_static[i] - @U_OUTPUT_ZERO_POINT) * @U_OUTPUT_SCALE;
        if (y != again || fwrite(&out_static[i], 1, 1, f) != 1) {
            return 16;
        }
    }
    fclose(f);
    printf("%s %s %d %s %d %d\n", @U_MODEL_NAME, @U_MODEL_HASH, @U_NUM_LAYERS, @_layer_name(0),
           @U_WEIGHTS_BYTES, zero + (int)scale * 0);
    return 0;
}
"""


def user_program(name: str) -> str:
    return USER_PROGRAM.replace("@U", name.upper()).replace("@GUARD", str(GUARD)).replace("@", name)


def build_user_program(c: compiler.Compiled, root: Path, cxx: bool = False, opt: str = "-O1") -> Path:
    """The model's C compiled as C99 (strict), the user program as C99 or C++17, linked."""
    root.mkdir(parents=True, exist_ok=True)
    for fname, text in c.gen.files.items():
        (root / fname).write_text(text)
    (root / ("user.cpp" if cxx else "user.c")).write_text(user_program(c.gen.name))
    cc = hostrun.compiler()
    objs = []
    for src in sorted(n for n in c.gen.files if n.endswith(".c")):
        obj = root / (src + ".o")
        r = subprocess.run([cc, *CFLAGS, opt, "-c", str(root / src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        objs.append(str(obj))
    exe = root / "user"
    if cxx:
        cmd = ["g++", *CXXFLAGS, opt, "-I", str(root), str(root / "user.cpp"), *objs, "-o", str(exe)]
    else:
        cmd = [cc, *CFLAGS, opt, "-I", str(root), str(root / "user.c"), *objs, "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return exe


def run_user_program(c: compiler.Compiled, exe: Path, x: np.ndarray) -> np.ndarray:
    x.astype(np.float32).tofile(exe.parent / "x.bin")
    r = subprocess.run([str(exe)], cwd=exe.parent, capture_output=True, text=True)
    assert r.returncode == 0, f"user program failed with {r.returncode}: {r.stderr}"
    assert r.stdout.split()[:3] == [c.graph.name, c.graph.model_hash, str(len(c.graph.ops))]
    return np.fromfile(exe.parent / "y.bin", np.int8)


def check_documented_usage(c: compiler.Compiled, root: Path, opt: str = "-O1") -> None:
    """For the op table: the documented usage compiles as C99 and C++17 and runs, on both arenas."""
    shape = c.graph.input.shape[1:]
    x = np.random.default_rng(3).normal(0, 2, shape).astype(np.float32)
    xq = reference.quantize_input(x, c.graph.input.scale, c.graph.input.zero_point).reshape(1, -1)
    expect = reference.tflm_run(c.tflite, xq, c.graph.input.shape)[0]
    for cxx in (False, True):
        exe = build_user_program(c, root / ("cxx" if cxx else "c"), cxx=cxx, opt=opt)
        np.testing.assert_array_equal(run_user_program(c, exe, x), expect)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_documented_usage_of_each_shipped_model(name, tmp_path):  # noqa: ANN001
    check_documented_usage(compiler.compile_model(name), tmp_path)


def test_two_models_link_into_one_program(tmp_path):  # noqa: ANN001
    """MNIST (28x28x1) and CIFAR-10 (32x32x3) in one program, kernels shared and compiled once,
    each output equal to TFLite Micro's."""
    a, b = compiler.compile_model("mnist"), compiler.compile_model("cifar10")
    assert a.gen.name != b.gen.name
    for fname in set(a.gen.files) & set(b.gen.files):
        assert a.gen.files[fname] == b.gen.files[fname], f"{fname} differs between the two models"
    files = {**a.gen.files, **b.gen.files}
    for fname, text in files.items():
        (tmp_path / fname).write_text(text)
    (tmp_path / "main.c").write_text(r"""
#include <stdio.h>
#include "mnist_model.h"
#include "cifar10_model.h"
static int8_t xa[MNIST_INPUT_SIZE], ya[MNIST_OUTPUT_SIZE], xb[CIFAR10_INPUT_SIZE], yb[CIFAR10_OUTPUT_SIZE];
int main(void)
{
    FILE *f = fopen("in.bin", "rb");
    if (f == NULL || fread(xa, 1, sizeof xa, f) != sizeof xa || fread(xb, 1, sizeof xb, f) != sizeof xb) {
        return 2;
    }
    fclose(f);
    if (mnist_invoke(xa, ya) != 0 || cifar10_invoke(xb, yb) != 0) {
        return 3;
    }
    f = fopen("out.bin", "wb");
    fwrite(ya, 1, sizeof ya, f);
    fwrite(yb, 1, sizeof yb, f);
    fclose(f);
    return 0;
}
""")
    srcs = [str(tmp_path / n) for n in files if n.endswith(".c")] + [str(tmp_path / "main.c")]
    r = subprocess.run([hostrun.compiler(), *CFLAGS, "-O2", "-I", str(tmp_path), *srcs, "-o", str(tmp_path / "two")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rng = np.random.default_rng(9)
    xa = rng.integers(-128, 128, a.graph.input.size).astype(np.int8)
    xb = rng.integers(-128, 128, b.graph.input.size).astype(np.int8)
    (tmp_path / "in.bin").write_bytes(xa.tobytes() + xb.tobytes())
    subprocess.run([str(tmp_path / "two")], cwd=tmp_path, check=True)
    out = np.fromfile(tmp_path / "out.bin", np.int8)
    np.testing.assert_array_equal(out[:a.graph.output.size],
                                  reference.tflm_run(a.tflite, xa[None], a.graph.input.shape)[0])
    np.testing.assert_array_equal(out[a.graph.output.size:],
                                  reference.tflm_run(b.tflite, xb[None], b.graph.input.shape)[0])


def test_quantize_and_dequantize_helpers_round_as_tflite(tmp_path):  # noqa: ANN001
    """The header's helpers against TFLite's QUANTIZE (x / scale in float, round half away, clamp) and
    DEQUANTIZE ((q - zp) * scale), on values around every rounding boundary."""
    c = compiler.compile_model("cifar10", name="net")
    for fname, text in c.gen.files.items():
        (tmp_path / fname).write_text(text)
    s, zp = np.float32(c.graph.input.scale), c.graph.input.zero_point
    k = np.arange(-300, 300, dtype=np.float32)
    edges = np.concatenate([(k + 0.5) * s, (k - 0.5) * s])
    x = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, np.float32(-np.inf)),
                        np.random.default_rng(0).normal(0, 200, 5000).astype(np.float32),
                        np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf], np.float32)]).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    (tmp_path / "q.c").write_text(r"""
#include <stdio.h>
#include "net_model.h"
int main(void)
{
    FILE *f = fopen("x.bin", "rb"), *g = fopen("q.bin", "wb"), *h = fopen("d.bin", "wb");
    float v;
    while (fread(&v, sizeof v, 1, f) == 1) {
        const int8_t q = net_quantize_input(v);
        fwrite(&q, 1, 1, g);
    }
    for (int q = -128; q < 128; ++q) {
        const float d = net_dequantize_output((int8_t)q);
        fwrite(&d, sizeof d, 1, h);
    }
    fclose(f);
    fclose(g);
    fclose(h);
    return 0;
}
""")
    r = subprocess.run([hostrun.compiler(), *CFLAGS, "-O2", "-I", str(tmp_path), str(tmp_path / "q.c"), "-o",
                        str(tmp_path / "q")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    subprocess.run([str(tmp_path / "q")], cwd=tmp_path, check=True)
    got = np.fromfile(tmp_path / "q.bin", np.int8)
    with np.errstate(invalid="ignore", over="ignore"):
        expect = reference.quantize_input(x, float(s), zp)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(got[finite], expect[finite])
    assert got[x == np.inf] == 127 and got[x == -np.inf] == -128
    so, zo = c.graph.output.scale, c.graph.output.zero_point
    d = np.fromfile(tmp_path / "d.bin", np.float32)
    np.testing.assert_array_equal(d, (np.float64(np.float32(so)) * (np.arange(-128, 128) - zo)).astype(np.float32))


def test_name_option_prefixes_every_file_and_symbol(tmp_path, capsys):  # noqa: ANN001
    from tests.test_errors import run

    code, _, _ = run(["compile", "mnist", "--name", "kws", "-o", str(tmp_path / "o")], capsys)
    assert code == 0
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"kws_model.h", "kws_model.c", "kws_weights.c", "kws_weights.h"} <= names
    h = (tmp_path / "o" / "kws_model.h").read_text()
    assert "int kws_invoke(" in h and "#define KWS_ARENA_BYTES " in h and "#define KWS_INPUT_SCALE 1.0f" in h
    nm = subprocess.run(["gcc", "-c", "-std=c99", "-I", str(tmp_path / "o"), str(tmp_path / "o" / "kws_model.c"),
                         "-o", str(tmp_path / "m.o")], capture_output=True, text=True)
    assert nm.returncode == 0, nm.stderr
    syms = subprocess.run(["nm", "-g", "--defined-only", str(tmp_path / "m.o")], capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in syms.splitlines()}
    assert exported == {"kws_invoke", "kws_invoke_with_arena", "kws_layer_name"}, exported
    subprocess.run(["gcc", "-c", "-std=c99", "-I", str(tmp_path / "o"), str(tmp_path / "o" / "kws_weights.c"), "-o",
                    str(tmp_path / "w.o")], check=True)
    syms = subprocess.run(["nm", "-g", "--defined-only", str(tmp_path / "w.o")], capture_output=True, text=True).stdout
    assert syms and all(line.split()[-1].startswith("kws_") for line in syms.splitlines())
    code, _, err = run(["compile", "mnist", "--name", "9lives", "-o", str(tmp_path / "p")], capsys)
    assert code == 2 and "not a C identifier" in err and not (tmp_path / "p").exists()
