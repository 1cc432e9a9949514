"""--kernels cmsis-nn: the same generated model calling CMSIS-NN's s8 API, compared with TFLite Micro on every
byte - on the host (CMSIS-NN's portable C, also under AddressSanitizer/UBSan) for the op-table rows of the ops it
has, and for the shipped MNIST model on the emulated Cortex-M4 (its DSP path). Skipped when no CMSIS-NN sources
can be had offline (LWCNN_CMSIS_NN unset and the cache empty; conftest points it at ../shared/third_party)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from lwcnn_mcu import backend, cmsis_nn, compiler, hostrun, reference
from lwcnn_mcu.errors import LwcnnError
from tests.conftest import HAVE_ARM, compile_keras, random_inputs, randomize
from tests.test_c_style import CLANG_FORMAT, _formatted
from tests.test_errors import assert_clean_error, run
from tests.test_ops import CASES

pytestmark = pytest.mark.skipif(not cmsis_nn.available(), reason="no CMSIS-NN sources: set LWCNN_CMSIS_NN to a "
                                "folder or .tar.gz of CMSIS-NN commit 99f736a6 (../shared/third_party has one)")
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
CMSIS = backend.Options(kernels="cmsis-nn")
CMSIS_KINDS = set(backend.CMSIS_FUNCTIONS)

#: op-table rows of the ops CMSIS-NN has -> the CMSIS-NN kernels each must call (their variants: 1x1 fast and
#: strided, 1xN rows, im2col; depthwise 3x3, opt, generic with multiplier and dilation; pooling with padding;
#: FC per-channel; softmax; same-shape ADD/MUL with clamps), and rows whose op it lacks (broadcasting, SUB,
#: a constant operand): those must be named in the report's fallback
ROWS: dict[str, tuple[str, ...]] = {
    "conv3x3_same_s1": ("cmsis/conv",),
    "conv3x3_valid_s2": ("cmsis/conv",),
    "conv5x3_same_s2x1": ("cmsis/conv",),
    "conv1x1_c8_in_place": ("cmsis/conv",),
    "conv1x1_relu": ("cmsis/conv",),
    "conv_dilation2": ("cmsis/conv",),
    "conv_nobias_bn_relu": ("cmsis/conv",),
    "conv3x3_c1_s2_small_patch": ("cmsis/conv",),
    "conv1x1_c8_maxpool": ("cmsis/conv", "cmsis/maxpool"),
    "dwconv3x3_same": ("cmsis/dwconv",),
    "dwconv_s2_valid_mult2": ("cmsis/dwconv",),
    "dwconv3x3_c12_s2_relu": ("cmsis/dwconv",),
    "dwconv3x3_c4_dil2_valid": ("cmsis/dwconv",),
    "dwconv3x5_relu": ("cmsis/dwconv",),
    "separable_relu": ("cmsis/dwconv", "cmsis/conv"),
    "dense_flatten": ("cmsis/fc_per_channel",),
    "dense_relu_nobias_2d": ("cmsis/fc_per_channel",),
    "softmax_layer": ("cmsis/fc_per_channel", "cmsis/softmax"),
    "conv_maxpool3_s2_same": ("cmsis/conv", "cmsis/maxpool"),
    "conv_s2_avgpool3_same": ("cmsis/conv", "cmsis/avgpool"),
    "avgpool3_s2_same": ("cmsis/avgpool",),
    "maxpool3_s2_same": ("cmsis/maxpool",),
    "add": ("cmsis/add",),
    "add_relu": ("cmsis/add",),
    "mul": ("cmsis/mul",),
    "mul_relu": ("cmsis/mul",),
    "conv1d_sensor": ("cmsis/conv", "cmsis/maxpool"),
    "separable1d_dw1d": ("cmsis/dwconv", "cmsis/conv"),
    "se_block_conv": ("cmsis/conv",),
}
FALLBACK_ROWS: dict[str, str] = {"add_bcast_c_hwc": "ADD", "mul_bcast_hw1": "MUL", "sub": "SUB",
                                 "mul_add_const_per_channel": "MUL"}


def _check(c, n: int = 32) -> None:  # noqa: ANN001
    x = random_inputs(c, n)
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    got = hostrun.build_host(c.gen.files).run(x)
    assert np.array_equal(got, expect), f"{(got != expect).sum()} bytes differ from TFLite Micro"
    san = hostrun.build_host(c.gen.files, sanitize=True, opt="-O0").run(x[:6])
    assert np.array_equal(san, expect[:6]), "under sanitizers"


@pytest.mark.parametrize("case", sorted(ROWS) + sorted(FALLBACK_ROWS))
def test_cmsis_nn_op_bitexact_with_tflm(case, keras, tmp_path):  # noqa: ANN001
    model = CASES[case](keras, keras.layers)
    randomize(model, seed=len(case))
    c = compiler.recompile(compile_keras(model, tmp_path, seed=len(case)), CMSIS)
    kinds = {k.kind for k in c.kernels}
    assert c.report["kernels"] == "cmsis-nn" and c.gen.needs_cmsis_nn == (case in ROWS or bool(kinds & CMSIS_KINDS))
    assert "convpool" not in kinds, "CMSIS-NN has no fused convolution + pooling"
    for kind in ROWS.get(case, ()):
        assert kind in kinds, f"{case}: no {backend.CMSIS_FUNCTIONS[kind]} call"
    if case in FALLBACK_ROWS:
        assert any(f.endswith(f"({FALLBACK_ROWS[case]})") for f in c.report["fallback"]), c.report["fallback"]
    for row, kern in zip(c.report["layers"], c.kernels, strict=True):
        assert row["kernel"] == kern.function
        assert kern.cmsis == (f"{row['name']} ({row['op']})" not in c.report["fallback"])
    _check(c)
    if CLANG_FORMAT is not None:  # CMSIS-NN's calls printed in clang-format's layout too
        name = f"{c.gen.name}_model.c"
        assert _formatted(name, c.gen.files[name]) == c.gen.files[name]


def test_shipped_mnist_bitexact_on_the_host():
    c = compiler.compile_model("mnist", options=CMSIS)
    assert c.report["fallback"] == [f"{op.name} (RESHAPE)" for op in c.graph.ops if op.kind == "reshape"]
    assert "lw_convpool_s8" not in c.report["kernel_functions"]
    assert "arm_convolve_wrapper_s8" in c.report["kernel_functions"]
    _check(c, 64)


def _buffer_size_program(convs: list[dict], dws: list[dict], pools: list[int]) -> str:
    """C that prints CMSIS-NN's own get_buffer_size of each layer: max(DSP variant, this host's portable build)."""
    lines = ['#include <stdio.h>', '#include "arm_nnfunctions.h"', "", "static int32_t mx(int32_t a, int32_t b)",
             "{", "    return a > b ? a : b;", "}", "", "int main(void)", "{"]
    for v in convs + dws:
        dw = "depth_mult" in v
        ptype = "cmsis_nn_dw_conv_params" if dw else "cmsis_nn_conv_params"
        mult = f".ch_mult = {v['depth_mult']}, " if dw else ""
        oc = v["in_c"] * v["depth_mult"] if dw else 5
        fdims = f"{{1, {v['k_h']}, {v['k_w']}, {oc}}}" if dw else f"{{5, {v['k_h']}, {v['k_w']}, {v['in_c']}}}"
        fn = "arm_depthwise_conv_wrapper_s8_get_buffer_size" if dw else "arm_convolve_wrapper_s8_get_buffer_size"
        lines += ["    {",
                  f"        const {ptype} p = {{.input_offset = 0, .output_offset = 0, {mult}"
                  f".stride = {{{v['stride_w']}, {v['stride_h']}}}, .padding = {{{v['pad_left']}, {v['pad_top']}}}, "
                  f".dilation = {{{v['dil_w']}, {v['dil_h']}}}, .activation = {{-128, 127}}}};",
                  f"        const cmsis_nn_dims in = {{1, {v['in_h']}, 9, {v['in_c']}}};",
                  f"        const cmsis_nn_dims f = {fdims};",
                  f"        const cmsis_nn_dims out = {{1, {v['in_h']}, 9, {oc}}};",
                  f'        printf("%d\\n", (int)mx({fn}_dsp(&p, &in, &f, &out), {fn}(&p, &in, &f, &out)));',
                  "    }"]
    for ch in pools:
        lines.append(f'    printf("%d\\n", (int)mx(arm_avgpool_s8_get_buffer_size_dsp(7, {ch}), '
                     f"arm_avgpool_s8_get_buffer_size(7, {ch})));")
    return "\n".join(lines + ["    return 0;", "}", ""])


def test_scratch_sizes_are_cmsis_nns_own(tmp_path):  # noqa: ANN001
    """Kernel.scratch_bytes (computed in Python) equals CMSIS-NN's *_get_buffer_size, the larger of its DSP
    variant and its portable build, over 1x1 / 1xN / im2col convolutions and every depthwise path."""
    convs = [{"k_h": kh, "k_w": kw, "in_c": ic, "in_h": ih, "stride_h": s, "stride_w": s, "pad_top": pad,
              "pad_left": pad, "dil_h": d, "dil_w": d}
             for kh, kw in ((1, 1), (1, 3), (3, 3), (5, 3)) for ic in (1, 3, 4, 8) for ih in (1, 6)
             for s in (1, 2) for pad in (0, 1) for d in (1, 2)]
    dws = [{"k_h": kh, "k_w": kw, "in_c": ic, "in_h": 6, "stride_h": 1, "stride_w": 1, "pad_top": pad, "pad_left": pad,
            "dil_h": d, "dil_w": d, "depth_mult": m}
           for kh, kw in ((3, 3), (3, 5), (5, 5), (1, 1)) for ic in (3, 8) for pad in (0, 1, 2) for d in (1, 2)
           for m in (1, 2)]
    pools = [1, 3, 16]
    cm = cmsis_nn.locate()
    src = tmp_path / "sizes.c"
    src.write_text(_buffer_size_program(convs, dws, pools))
    cc = hostrun.compiler()
    exe = tmp_path / "sizes"
    subprocess.run([cc, "-std=c99", *(f"-I{d}" for d in cm.include_dirs), str(src),
                    *map(str, hostrun.cmsis_objects(cm, cc)), "-o", str(exe)], check=True)
    got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    ours = ([backend.cmsis_conv_buffer_size(v) for v in convs] + [backend.cmsis_dwconv_buffer_size(v) for v in dws]
            + [4 * ch for ch in pools])
    assert got == ours
    assert any(ours) and not all(ours)  # both kinds occur


def test_offline_without_the_variable_is_a_clear_error(monkeypatch, tmp_path, capsys):  # noqa: ANN001
    monkeypatch.delenv(cmsis_nn.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(LwcnnError, match="LWCNN_CMSIS_NN"):
        cmsis_nn.locate()
    code, _, err = run(["verify", "mnist", "--kernels", "cmsis-nn", "--samples", "2"], capsys)
    assert_clean_error(code, err, "downloading https://github.com/ARM-software/CMSIS-NN/archive/", "no network",
                       "set LWCNN_CMSIS_NN")


def test_sources_that_differ_are_refused(monkeypatch, tmp_path):  # noqa: ANN001
    tree = tmp_path / "cmsis"
    shutil.copytree(cmsis_nn.locate().root, tree)
    monkeypatch.setenv(cmsis_nn.ENV, str(tree))
    assert cmsis_nn.locate().root == tree
    f = tree / "Source" / "SoftmaxFunctions" / "arm_softmax_s8.c"
    f.write_text(f.read_text() + "\n")
    with pytest.raises(LwcnnError, match="arm_softmax_s8.c differs from commit 99f736a6"):
        cmsis_nn.locate()
    f.unlink()
    with pytest.raises(LwcnnError, match="lack Source/SoftmaxFunctions/arm_softmax_s8.c"):
        cmsis_nn.locate()


def test_tarball_is_extracted_once_into_the_cache(monkeypatch, tmp_path):  # noqa: ANN001
    env = cmsis_nn.locate()  # the conftest's tarball (or a folder)
    tar = tmp_path / "cmsis.tar.gz"
    subprocess.run(["tar", "czf", str(tar), "-C", str(env.root.parent), env.root.name], check=True)
    monkeypatch.setenv(cmsis_nn.ENV, str(tar))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = cmsis_nn.locate().root
    assert root == tmp_path / "cache" / "lwcnn-mcu" / "cmsis-nn" / cmsis_nn.COMMIT
    stamp = (root / ".checked").stat().st_mtime_ns
    assert cmsis_nn.locate().root == root and (root / ".checked").stat().st_mtime_ns == stamp


def test_unknown_kernels_is_refused(capsys, tmp_path):  # noqa: ANN001
    code, _, err = run(["compile", "mnist", "--kernels", "tflm", "-o", str(tmp_path / "o")], capsys)
    assert_clean_error(code, err, "unknown --kernels 'tflm'", "lw or cmsis-nn")


@pytest.mark.skipif(not (HAVE_ARM and HAVE_QEMU), reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_shipped_mnist_on_the_emulated_m4_dsp_path(tmp_path):  # noqa: ANN001
    """The firmware built with CMSIS-NN (ARM_MATH_DSP on the Cortex-M4: its SMLAD kernels) gives on the emulated
    core the bytes of the host build, which equal TFLite Micro's."""
    from lwcnn_mcu import builder, emulator

    b = builder.build("qemu-m4", "mnist", tmp_path / "fw", kernels="cmsis-nn", n_tests=6)
    assert (b.project / "cmsis-nn" / "arm_convolve_s8.o").is_file()
    dis = subprocess.run([builder.objcopy_for(builder.toolchain()).replace("objcopy", "objdump"), "-d",
                          str(b.project / "cmsis-nn" / "arm_nn_mat_mult_kernel_s8_s16.o")],
                         capture_output=True, text=True, check=True).stdout
    assert "smlad" in dis, "CMSIS-NN was not built for its DSP path"
    st = emulator.run_selftest(b.board, b.elf)
    x = b.test_inputs.reshape(len(b.test_inputs), -1).astype(np.int8)
    host = hostrun.build_host(b.compiled.gen.files).run(x)
    expect = reference.tflm_run(b.compiled.tflite, x, b.compiled.graph.input.shape)
    assert np.array_equal(host, expect)
    assert st.outputs.shape == host.shape and np.array_equal(st.outputs, host)
