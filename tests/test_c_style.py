"""The C the project ships and generates: its face. Stable formatting (a fixed point of the pinned
clang-format with the repository's .clang-format), a reviewed snapshot of the MNIST model's C, strict
warnings on the target compiler, and the portability guards of the runtime."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lwcnn_mcu import backend, codegen, compiler, hostrun
from tests.conftest import HAVE_ARM, ROOT

CLANG_FORMAT = shutil.which("clang-format", path=str(Path(sys.executable).parent)) or shutil.which("clang-format")
needs_clang_format = pytest.mark.skipif(CLANG_FORMAT is None, reason="clang-format (dev extra) is not installed")
SHIPPED = ("mnist", "fashion_mnist", "cifar10")


def _formatted(name: str, text: str) -> str:
    r = subprocess.run([CLANG_FORMAT, f"--style=file:{ROOT / '.clang-format'}", f"--assume-filename={name}"],
                       input=text, capture_output=True, text=True, check=True)
    return r.stdout


def _c_files(files: dict[str, str]) -> dict[str, str]:
    return {n: t for n, t in files.items() if n.endswith((".c", ".h"))}


@needs_clang_format
def test_runtime_host_and_firmware_sources_are_clang_format_fixed_points():
    from lwcnn_mcu import builder

    tdir = codegen.templates_dir()
    sources = sorted((tdir / "runtime").glob("*.[ch]")) + sorted((tdir / "host").glob("*.[ch]"))
    sources += sorted(builder.firmware_dir().glob("*.[ch]"))
    assert len(sources) > 25
    for path in sources:
        text = path.read_text()
        assert _formatted(path.name, text) == text, f"{path} is not clang-format clean (run clang-format -i)"


@needs_clang_format
@pytest.mark.parametrize("name", SHIPPED)
def test_generated_c_is_a_clang_format_fixed_point(name):  # noqa: ANN001
    """Every file `compile` writes is already in clang-format's layout, on every kernel variant (and with
    --kernels cmsis-nn: CMSIS-NN's calls)."""
    c = compiler.compile_model(name)
    for opts in (backend.Options(), backend.Options(**{p: False for p in backend.FAST_PATHS}),
                 backend.Options(kernels="cmsis-nn")):
        files = _c_files(compiler.recompile(c, opts).gen.files)
        for fname, text in files.items():
            assert _formatted(fname, text) == text, f"{name} {opts}: {fname} is not clang-format clean"


@needs_clang_format
def test_long_calls_wrap_like_clang_format():
    line = "lw_convpool_s8_impl(&p, (LW_ARENA + 123456), lw_w12, lw_b12, lw_m12, lw_s12, lw_r12, " \
           "(LW_ARENA + 654321), (LW_ARENA + 111111), (LW_ARENA + 222222));"
    wrapped = codegen.wrap_call(line, 8)
    assert "\n" in wrapped and max(len(x) for x in wrapped.splitlines()) + 8 <= codegen.COLUMNS
    src = "void f(void)\n{\n    {\n        " + wrapped + "\n    }\n}\n"
    assert _formatted("x.c", src) == src


def test_mnist_generated_c_snapshot(snapshot):  # noqa: ANN001
    """A change in what `lwcnn-mcu compile mnist` writes shows in this snapshot's diff
    (tests/__snapshots__/); accept a reviewed change with `pytest --snapshot-update`."""
    files = compiler.compile_model("mnist").gen.files
    for name in ("mnist_model.c", "mnist_model.h", "lw_params.h", "mnist_weights.h"):
        assert files[name] == snapshot(name=name)


def test_generated_c_reads_without_a_decoder_ring():
    text = compiler.compile_model("mnist").gen.files["mnist_model.c"]
    assert ";" not in text.split("static int lw_run")[0].split("lw_layer_names")[1].split("};")[0].replace(
        '",', "")  # layer names are short Keras names, not fused TFLite names
    assert "unified_1/" not in text and ".in_h = 28," in text
    assert max(len(line) for line in text.splitlines()) <= codegen.COLUMNS
    assert "/* 0: b1_conv + b1_pool - CONV_2D+MAX_POOL_2D" in text
    assert re.search(r"\*   tensor +shape +bytes +placed at +live\n", text)


def test_runtime_inline_asm_is_guarded_for_gnu_compilers():
    """GNU inline assembly only where the compiler is GNU-compatible (arm-none-eabi-gcc, clang):
    each __asm__ sits inside an #if that tests __GNUC__, with a portable fallback beside it."""
    for path in sorted((codegen.templates_dir() / "runtime").glob("*.[ch]")):
        stack: list[str] = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith("#if"):
                stack.append(s)
            elif s.startswith("#endif"):
                stack.pop()
            elif "__asm__" in s:
                assert any("__GNUC__" in cond for cond in stack), f"{path.name}:{n}: unguarded __asm__"


def test_sadd16_emulation_never_overflows_an_int(tmp_path):  # noqa: ANN001
    """The host model of SADD16 adds halfwords, never the whole words (whose sum can overflow an
    int32: undefined behaviour, caught here by UBSan)."""
    rt = codegen.templates_dir() / "runtime"
    for name in ("lw_common.h",):
        shutil.copy(rt / name, tmp_path / name)
    (tmp_path / "lw_params.h").write_text("#include <stdint.h>\n")
    (tmp_path / "t.c").write_text(
        '#include <stdio.h>\n#include "lw_common.h"\n'
        "int main(void)\n{\n"
        "    const int32_t r = lw_sadd16(INT32_MAX, 1), s = lw_sadd16(INT32_MIN, -1);\n"
        '    printf("%08x %08x\\n", (unsigned)r, (unsigned)s);\n'
        "    return 0;\n}\n")
    exe = tmp_path / "t"
    subprocess.run([hostrun.compiler(), *hostrun.STRICT, "-DLW_SIMD_EMULATE", "-fsanitize=undefined",
                    "-fno-sanitize-recover=all", "-I", str(tmp_path), str(tmp_path / "t.c"), "-o", str(exe)],
                   check=True, capture_output=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # halfwords: 0x7fff + 0x0000 = 0x7fff, 0xffff + 0x0001 = 0x0000 (wraps); 0x8000 + 0xffff, 0x0000 + 0xffff
    assert r.stdout.split() == ["7fff0000", "7fffffff"]


@pytest.mark.arm
@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed")
@pytest.mark.parametrize("name", SHIPPED)
def test_generated_c_compiles_for_cortex_m4_with_every_warning(name, tmp_path):  # noqa: ANN001
    """README: -std=c99 -Wall -Wextra -Werror -Wshadow -Wconversion -pedantic, DSP and portable kernels."""
    files = compiler.compile_model(name).gen.files
    for fname, text in files.items():
        if fname.endswith((".c", ".h")):
            (tmp_path / fname).write_text(text)
    for extra in ([], ["-DLW_PORTABLE"]):
        for src in (f"{name}_model.c", f"{name}_weights.c"):
            r = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                "-mfpu=fpv4-sp-d16", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow",
                                "-Wconversion", "-pedantic", *extra, "-c", str(tmp_path / src), "-o",
                                str(tmp_path / "x.o")], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-2000:]


def test_a_kernel_limit_smaller_than_a_layer_needs_fails_the_build(tmp_path):  # noqa: ANN001
    """The limits come from backend.LIMITS into lw_params.h; each layer that relies on one checks it at
    compile time, so a header edited (or drifted) below what the model needs cannot overflow a stack array."""
    files = compiler.compile_model("mnist").gen.files
    assert "LW_STATIC_ASSERT(16 <= LW_PW_MAX_OC" in files["mnist_model.c"]
    for fname, text in files.items():
        if fname.endswith((".c", ".h")):
            (tmp_path / fname).write_text(text.replace("#define LW_PW_MAX_OC 128", "#define LW_PW_MAX_OC 8"))
    for std in ("-std=c99", "-std=c11"):
        r = subprocess.run([hostrun.compiler(), std, "-Wall", "-Werror", "-c", str(tmp_path / "mnist_model.c"), "-o",
                            str(tmp_path / "m.o")], capture_output=True, text=True)
        assert r.returncode != 0 and ("lw_static_assert" in r.stderr or "layer 0: pw16 output channels" in r.stderr)


@needs_clang_format
def test_generated_firmware_files_are_clang_format_fixed_points():
    """What `build` generates beside the model's C (the model table, board header, test data,
    protocol codes), for one model and for two."""
    from lwcnn_mcu import boards, builder

    cs = [compiler.compile_model("mnist"), compiler.compile_model("cifar10")]
    for models in (cs[:1], cs):
        for board in ("qemu-m4", "nucleo_l4r5zi", "nucleo_f746zg"):
            files = builder.project_files(boards.get(board), models, builder.test_inputs(models[0], None, 2),
                                          semihosting=True)
            for fname, text in files.items():
                if fname.endswith((".c", ".h")):
                    assert _formatted(Path(fname).name, text) == text, f"{board}: {fname} is not clang-format clean"
