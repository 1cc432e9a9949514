"""`.onnx` models (NCHW, as torch.onnx.export writes them; built here with the onnx helper API, no torch):
converted to Keras in NHWC, quantized with NCHW calibration data, bit-exact with TFLite Micro and
argmax-equal to onnxruntime on most inputs; bad input refused with one message before anything is
written; build, and a bench on the emulated Cortex-M4."""

from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest

from lwcnn_mcu import compiler, hostrun, models, reference
from lwcnn_mcu.errors import LwcnnError
from lwcnn_mcu.frontend import onnx_model
from tests import onnx_nets
from tests.conftest import HAVE_ARM
from tests.test_errors import assert_clean_error, run

SAMPLES = 300
#: the least share of inputs on which the int8 C's argmax equals onnxruntime's on the float model
#: (measured on 1,000 inputs: cnn_bn 97.0%, dw_separable 91.0%, residual 95.5%, gemm_head 97.0%)
MIN_AGREE = 0.85


@pytest.fixture(scope="module")
def files(tmp_path_factory):  # noqa: ANN201
    """name -> (model.onnx, calibration X.npy, test X.npy), inputs in the model's NCHW layout."""
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, make in {**onnx_nets.NETS, "op_zoo": onnx_nets.op_zoo}.items():
        m = make(d / f"{name}.onnx")
        np.save(d / f"{name}_calib.npy", onnx_nets.inputs(name, 128, seed=0))
        np.save(d / f"{name}_data.npy", onnx_nets.inputs(name, SAMPLES, seed=1))
        out[name] = (str(m), str(d / f"{name}_calib.npy"), str(d / f"{name}_data.npy"))
    return out


@pytest.mark.parametrize("name", sorted(onnx_nets.NETS))
def test_onnx_model_verifies(name, files, capsys):  # noqa: ANN001
    """`lwcnn-mcu verify model.onnx --calib x.npy --data x.npy`: the C equals TFLite Micro on every byte,
    and its argmax equals onnxruntime's on the float model on most inputs."""
    model, calib, data = files[name]
    code, out, err = run(["verify", model, "--calib", calib, "--data", data, "--samples", str(SAMPLES), "--json"],
                         capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["samples"] == SAMPLES and r["c_vs_tflm_bitexact"] == SAMPLES and r["c_vs_tflm_max_abs_diff"] == 0
    assert r["c_vs_onnx_argmax_agree"] >= MIN_AGREE * SAMPLES, r["c_vs_onnx_argmax_agree"]
    assert r["c_vs_keras_argmax_agree"] is None  # the Keras model is the converter's, not the user's
    assert r["onnx"]["conversion_max_abs_diff"] < 1e-4
    if name != "gemm_head":
        assert r["onnx"]["input_layout"] == "NCHW" and r["onnx"]["c_input_layout"] == "NHWC"
    # the classes are all in play: agreement is not one answer for every input
    y = onnx_model.predict(compiler.compile_model(model, calib=calib).onnx,
                           onnx_model.data_to_c_layout(np.load(data), tuple(r["onnx"]["c_input_shape"][1:]), data))
    assert len(set(np.argmax(y, 1))) >= 6


def test_op_zoo_bitexact_and_names(files):  # noqa: ANN001
    """The ops the networks leave out, through conversion (equal to onnxruntime in float) and the C (equal
    to TFLite Micro); layers are named after the ONNX nodes and no TRANSPOSE reaches the int8 model."""
    model, calib, _ = files["op_zoo"]
    c = compiler.compile_model(model, calib=calib)
    x = np.random.default_rng(1).integers(-128, 128, (100, *c.graph.input.shape[1:])).astype(np.int8)
    assert np.array_equal(hostrun.build_host(c.gen.files).run(x), reference.tflm_run(c.tflite, x, c.graph.input.shape))
    ops = [row["op"] for row in c.report["layers"]]
    assert "TRANSPOSE" not in ops and {"MUL", "CONCATENATION", "REDUCE_MAX", "PAD", "SOFTMAX"} <= set(ops)
    names = [row["name"] for row in c.report["layers"]]
    assert names[:2] == ["norm", "c1"] and "bn_after_add" in names  # Sub and Div merged into one layer
    assert c.report["input_shape"] == [1, 12, 12, 3]


def test_map_output_with_softmax_over_channels(tmp_path):  # noqa: ANN001
    """A 4-D output (per-pixel softmax over channels, Clip with only a minimum): the C gives it NHWC, and
    predict() gives onnxruntime's in the same order."""
    b = onnx_nets.Builder(seed=7)
    x = b.conv("input", 3, 6, 3, "c")
    x = b.node("Clip", [x, b.const(np.array(0, np.float32), "lo")], "/clip/Clip")
    x = b.node("Softmax", [b.conv(x, 6, 5, 1, "d")], "/sm/Softmax", axis=1)
    p = b.save(tmp_path / "seg.onnx", [1, 3, 8, 8], x, [1, 5, 8, 8], "seg")
    xf = np.random.default_rng(0).random((32, 3, 8, 8), dtype=np.float32)
    c = compiler.compile_model(str(p), calib=xf)
    assert [r["op"] for r in c.report["layers"]] == ["CONV_2D", "CONV_2D", "SOFTMAX"]
    assert c.report["output_shape"] == [1, 8, 8, 5]
    xq = reference.quantize_input(onnx_model.data_to_c_layout(xf, c.onnx.c_shape, "x"), c.graph.input.scale,
                                  c.graph.input.zero_point)
    y_c = hostrun.build_host(c.gen.files).run(xq)
    assert np.array_equal(y_c, reference.tflm_run(c.tflite, xq, c.graph.input.shape))
    y_o = onnx_model.predict(c.onnx, onnx_model.data_to_c_layout(xf, c.onnx.c_shape, "x"))
    deq = (y_c.astype(np.float32) - c.graph.output.zero_point) * c.graph.output.scale
    assert np.max(np.abs(deq - y_o)) < 0.05  # the same order: NHWC on both sides


def test_flatten_of_a_map_keeps_the_onnx_order(files):  # noqa: ANN001
    """cnn_bn flattens a 16x7x7 map: ONNX reads it C,H,W; the C keeps H,W,C and the Linear's rows follow."""
    model, calib, _ = files["cnn_bn"]
    conv = onnx_model.convert(__import__("pathlib").Path(model))
    x = onnx_model.data_to_c_layout(onnx_nets.inputs("cnn_bn", 8, seed=5), conv.info.c_shape, "x")
    assert onnx_model.check_conversion(conv, x) < 1e-4
    assert conv.info.c_shape == (28, 28, 1) and conv.info.input_shape == (1, 28, 28)


def test_same_onnx_and_calibration_give_identical_files(files):  # noqa: ANN001
    model, calib, _ = files["residual"]
    a = compiler.compile_model(model, calib=calib)
    b = compiler.compile_model(model, calib=calib)
    assert a.tflite == b.tflite and a.gen.files == b.gen.files


def test_conversion_needs_no_network(files, monkeypatch):  # noqa: ANN001
    """Nothing on the ONNX path downloads (some converters fetch calibration images by default)."""
    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("network access during an ONNX compile")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    model, calib, _ = files["dw_separable"]
    c = compiler.compile_model(model, calib=calib)
    assert c.onnx is not None and c.report["onnx"]["opset"] == 18


def test_external_weights(files, tmp_path):  # noqa: ANN001
    """Weights saved beside the model (save_as_external_data, as torch does for large models)."""
    import onnx

    model, calib, _ = files["gemm_head"]
    ext = tmp_path / "ext.onnx"
    onnx.save_model(onnx.load(model), str(ext), save_as_external_data=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 10_000
    a, b = compiler.compile_model(model, calib=calib), compiler.compile_model(str(ext), calib=calib)
    def consts(c):  # noqa: ANN001, ANN202
        return [t.data.tobytes() for t in c.graph.tensors if t.data is not None]

    assert consts(a) == consts(b) and a.report["macs"] == b.report["macs"]
    x = onnx_model.data_to_c_layout(np.load(calib)[:4], b.onnx.c_shape, "x")
    assert np.array_equal(onnx_model.predict(a.onnx, x), onnx_model.predict(b.onnx, x))


def test_resolve_accepts_onnx(files):  # noqa: ANN001
    assert models.resolve(files["gemm_head"][0]).suffix == ".onnx"


# -- bad input: exit 2, one message, nothing written ----------------------------------------------------

def _one_conv(tmp_path, name, in_shape=(1, 3, 8, 8), opset=17, extra=None, out_rank=4):  # noqa: ANN001, ANN202
    b = onnx_nets.Builder(seed=5, opset=opset)
    x = b.conv("input", 3, 4, 3, "conv")
    if extra is not None:
        x = extra(b, x)
    return b.save(tmp_path / f"{name}.onnx", list(in_shape), x, [f"d{i}" for i in range(out_rank)], name)


BAD = {
    "text": ("not an ONNX model",),
    "sigmoid": ("ONNX op Sigmoid (node '/act/Sigmoid') is not supported", "Supported ops: Conv"),
    "custom_domain": ("ONNX op com.example.Swish (node '/act/Swish') is not supported",),
    "dynamic_height": ("dynamic height dimension ('height' at position 2)", "only the batch may be dynamic"),
    "opset11": ("opset 11", "opset_version=13"),
    "batch4": ("fixed batch of 4",),
    "grouped": ("ONNX op Conv (node '/conv/Conv')", "grouped convolution with group=3"),
    "gather_on_tensor": ("ONNX op Gather (node '/g/Gather')", "only on constants"),
    "maxpool_pad_negative": ("ONNX op MaxPool (node '/pool/MaxPool')", "may be negative"),
    "no_calibration": ("quantized with calibration data", "--calib X.npy", "(N, 3, 8, 8)"),
    "nhwc_calibration": ("which is NHWC", "NCHW (N, 3, 8, 8)", "transpose(0, 3, 1, 2)"),
}


def _make_bad(case, tmp_path):  # noqa: ANN001, ANN202
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32))
    if case == "text":
        (tmp_path / "m.onnx").write_text("this is not an onnx model\n")
        return tmp_path / "m.onnx", calib
    if case == "sigmoid":
        return _one_conv(tmp_path, case, extra=lambda b, x: b.node("Sigmoid", [x], "/act/Sigmoid")), calib
    if case == "custom_domain":
        return _one_conv(tmp_path, case, extra=lambda b, x: b.node("Swish", [x], "/act/Swish",
                                                                    domain="com.example")), calib
    if case == "dynamic_height":
        return _one_conv(tmp_path, case, in_shape=(1, 3, "height", 8)), calib
    if case == "opset11":
        return _one_conv(tmp_path, case, opset=11), calib
    if case == "batch4":
        return _one_conv(tmp_path, case, in_shape=(4, 3, 8, 8)), calib
    if case == "grouped":  # 6 input channels in 3 groups: neither a plain nor a depthwise convolution
        b = onnx_nets.Builder(seed=5)
        w = b.const(np.ones((6, 2, 3, 3), np.float32), "conv.weight")
        x = b.node("Conv", ["input", w], "/conv/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=3)
        np.save(calib, np.random.default_rng(0).random((4, 6, 8, 8), dtype=np.float32))
        return b.save(tmp_path / "grouped.onnx", [1, 6, 8, 8], x, [1, 6, 8, 8], "grouped"), calib
    if case == "gather_on_tensor":
        def gather(b, x):  # noqa: ANN001, ANN202
            return b.node("Gather", [x, b.const(np.array([0, 1], np.int64), "idx")], "/g/Gather", axis=1)
        return _one_conv(tmp_path, case, extra=gather), calib
    if case == "maxpool_pad_negative":
        def pool(b, x):  # noqa: ANN001, ANN202
            return b.node("MaxPool", [x], "/pool/MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        return _one_conv(tmp_path, case, extra=pool), calib
    model = _one_conv(tmp_path, case)
    if case == "no_calibration":
        return model, None
    np.save(calib, np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32))
    return model, calib


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_onnx_input_is_refused_cleanly(case, tmp_path, capsys):  # noqa: ANN001
    model, calib = _make_bad(case, tmp_path)
    out = tmp_path / "out"
    argv = ["compile", str(model), "-o", str(out)] + (["--calib", str(calib)] if calib is not None else [])
    code, _, err = run(argv, capsys)
    assert_clean_error(code, err, *BAD[case])
    assert not out.exists()
    assert len(err.strip().splitlines()) <= 3  # one message (the console may wrap it)


def test_bad_test_data_layout_is_refused(files, capsys):  # noqa: ANN001
    model, calib, data = files["residual"]
    bad = data.replace("_data.npy", "_nhwc.npy")
    np.save(bad, np.load(data).transpose(0, 2, 3, 1))
    code, _, err = run(["verify", model, "--calib", calib, "--data", bad, "--samples", "5"], capsys)
    assert_clean_error(code, err, "test data has shape [300, 16, 16, 3], which is NHWC")


def test_converter_refuses_a_flattened_output(tmp_path):  # noqa: ANN001
    def flat(b, x):  # noqa: ANN001, ANN202
        return b.node("Flatten", [x], "/flatten/Flatten", axis=1)
    with pytest.raises(LwcnnError, match="flattened C x H x W map"):
        onnx_model.convert(_one_conv(tmp_path, "flat", extra=flat, out_rank=2))


# -- on the boards ----------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed (make setup installs it)")
def test_build_nucleo_from_onnx(files, tmp_path, capsys):  # noqa: ANN001
    model, calib, _ = files["cnn_bn"]
    code, out, err = run(["build", "--board", "nucleo", "--model", model, "--calib", calib,
                          "-o", str(tmp_path / "fw"), "--builder", "make", "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["board"] == "nucleo_f401re" and 0 < r["flash_bytes"] <= r["flash_limit"]
    assert r["model"].endswith("cnn_bn.onnx")


@pytest.mark.skipif(not HAVE_ARM or shutil.which("qemu-system-arm") is None,
                    reason="needs arm-none-eabi-gcc and qemu-system-arm (make setup)")
def test_bench_onnx_on_qemu_m4(files, tmp_path, monkeypatch):  # noqa: ANN001
    """The ONNX model on the emulated Cortex-M4: built, booted, NCHW test data streamed over its UART,
    every output equal to the host C."""
    from lwcnn_mcu import bench

    monkeypatch.chdir(tmp_path)
    model, calib, data = files["cnn_bn"]
    r = bench.run_bench(board="qemu-m4", port=None, model=model, dataset=None, data=data, labels=None,
                        samples=30, layers=True, calib=calib)
    assert r["samples"] == 30 and r["agree_with_host"] == 30 and r["transport_errors"] == 0
    assert r["model"].endswith("cnn_bn.onnx") and len(r["layers"]) >= 4
    assert set(r["instructions"]) == {"min", "median", "p99", "max"}
