"""Bad input: exit code 2, one clear message naming what is wrong, no traceback, nothing written."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lwcnn_mcu import cli


def run(argv: list[str], capsys) -> tuple[int, str, str]:  # noqa: ANN001
    old = sys.argv
    sys.argv = ["lwcnn-mcu", *argv]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def convert(model, quantize: bool = True) -> bytes:  # noqa: ANN001
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        shape = tuple(model.inputs[0].shape[1:])
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([np.random.rand(1, *shape).astype(np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return bytes(conv.convert())


@pytest.fixture(scope="module")
def small(keras, tmp_path_factory):  # noqa: ANN001, ANN201
    d = tmp_path_factory.mktemp("small")
    inp = keras.Input((8, 8, 1), batch_size=1)
    m = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(inp))))
    (d / "good.tflite").write_bytes(convert(m))
    (d / "float.tflite").write_bytes(convert(m, quantize=False))
    m.save(d / "good.keras")
    return d


def assert_clean_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    text = " ".join(err.split())
    for n in needles:
        assert n in text, f"{n!r} not in: {text}"


def test_missing_model(tmp_path, capsys):  # noqa: ANN001
    out = tmp_path / "out"
    code, _, err = run(["compile", str(tmp_path / "nope.tflite"), "-o", str(out)], capsys)
    assert_clean_error(code, err, "nope.tflite", "neither a file nor a shipped model")
    assert not out.exists()


def test_not_a_flatbuffer(tmp_path, capsys):  # noqa: ANN001
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    code, _, err = run(["compile", str(bad), "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, "bad.tflite", "not a TFLite flatbuffer")
    assert not (tmp_path / "out").exists()


def test_truncated_tflite(small, tmp_path, capsys):  # noqa: ANN001
    data = (small / "good.tflite").read_bytes()
    bad = tmp_path / "trunc.tflite"
    bad.write_bytes(data[: len(data) // 2])
    code, _, err = run(["compile", str(bad), "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, "trunc.tflite", "corrupt or truncated")
    assert not (tmp_path / "out").exists()


def test_float_tflite(small, tmp_path, capsys):  # noqa: ANN001
    code, _, err = run(["compile", str(small / "float.tflite"), "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, "float.tflite", "compute in float", "full-integer")
    assert not (tmp_path / "out").exists()


def test_unsupported_tflite_op(keras, tmp_path, capsys):  # noqa: ANN001
    inp = keras.Input((4, 4, 2), batch_size=1)
    m = keras.Model(inp, keras.layers.Activation("gelu")(keras.layers.Conv2D(2, 1)(inp)))
    p = tmp_path / "gelu.tflite"
    p.write_bytes(convert(m))
    code, _, err = run(["compile", str(p), "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, "GELU", "is not supported", "Supported: CONV_2D")
    assert not (tmp_path / "out").exists()


def test_maximum_of_differently_quantized_inputs(keras, tmp_path, capsys):  # noqa: ANN001
    """TFLite Micro's MAXIMUM compares int8 codes: inputs quantized unlike the output are refused."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    L = keras.layers
    inp = keras.Input((4, 4, 2), batch_size=1)
    both = [L.Conv2D(2, 1)(inp), L.Conv2D(2, 3, padding="same")(inp)]
    m = fb.ModelT.InitFromPackedBuf(bytearray(convert(keras.Model(inp, L.Maximum()(both)))), 0)
    sg = m.subgraphs[0]
    q = sg.tensors[sg.operators[-1].inputs[1]].quantization
    q.scale = [q.scale[0] * 2]
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    p = tmp_path / "max.tflite"
    p.write_bytes(bytes(b.Output()))
    code, _, err = run(["compile", str(p), "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, "MAXIMUM", "TFLite Micro compares the int8 codes, so they must be equal")
    assert not (tmp_path / "out").exists()


def test_unsupported_keras_layer(keras, tmp_path, capsys):  # noqa: ANN001
    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, keras.layers.LayerNormalization(name="norm")(inp))
    m.save(tmp_path / "norm.keras")
    code, _, err = run(["compile", str(tmp_path / "norm.keras"), "--calib", "x.npy", "-o", str(tmp_path / "out")],
                       capsys)
    assert_clean_error(code, err, "layer 'norm'", "LayerNormalization", "Supported layers: InputLayer, Conv2D")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make,needle", [
    (lambda L: L.UpSampling2D(2, interpolation="bilinear", name="up"), "interpolation='bilinear'"),
    (lambda L: L.Conv2DTranspose(2, 3, dilation_rate=2, name="up"), "dilation_rate"),
], ids=["upsampling_bilinear", "tconv_dilation"])
def test_unsupported_layer_options(keras, tmp_path, capsys, make, needle):  # noqa: ANN001
    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, make(keras.layers)(inp))
    m.save(tmp_path / "up.keras")
    code, _, err = run(["compile", str(tmp_path / "up.keras"), "--calib", "x.npy", "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, "layer 'up'", needle)
    assert not (tmp_path / "out").exists()


def test_unsupported_activation(keras, tmp_path, capsys):  # noqa: ANN001
    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, keras.layers.Conv2D(2, 3, activation="gelu", name="c")(inp))
    m.save(tmp_path / "gelu.keras")
    code, _, err = run(["compile", str(tmp_path / "gelu.keras"), "--calib", "x.npy"], capsys)
    assert_clean_error(code, err, "layer 'c'", "gelu")


@pytest.mark.parametrize("kw,needle", [({"threshold": 0.5}, "thresholded ReLU"),
                                        ({"max_value": 6.0, "negative_slope": 0.1}, "both negative_slope")])
def test_unsupported_relu_variants(keras, tmp_path, capsys, kw, needle):  # noqa: ANN001
    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, keras.layers.ReLU(**kw, name="r")(keras.layers.Conv2D(2, 3)(inp)))
    m.save(tmp_path / "r.keras")
    code, _, err = run(["compile", str(tmp_path / "r.keras"), "--calib", "x.npy"], capsys)
    assert_clean_error(code, err, "layer 'r'", needle)


@pytest.mark.parametrize("shape,batch,needle", [((None, None, 1), None, "dynamic"), ((8, 8, 1), 4, "batch size 4")])
def test_bad_input_shapes(keras, tmp_path, capsys, shape, batch, needle):  # noqa: ANN001
    inp = keras.Input(shape, batch_size=batch)
    m = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    m.save(tmp_path / "m.keras")
    code, _, err = run(["compile", str(tmp_path / "m.keras"), "--dataset", "mnist"], capsys)
    assert_clean_error(code, err, "m.keras", needle)


def test_nan_weights(keras, tmp_path, capsys):  # noqa: ANN001
    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, keras.layers.Conv2D(2, 3, name="bad")(inp))
    w = m.layers[1].get_weights()
    w[0][0, 0, 0, 0] = np.nan
    m.layers[1].set_weights(w)
    m.save(tmp_path / "nan.keras")
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8, 1), np.float32))
    code, _, err = run(["compile", str(tmp_path / "nan.keras"), "--calib", str(tmp_path / "x.npy")], capsys)
    assert_clean_error(code, err, "layer 'bad'", "NaN or Inf")


@pytest.mark.parametrize("arr,needle", [(np.zeros((4, 9, 8, 1), np.float32), "has shape [4, 9, 8, 1]"),
                                        (np.zeros((4, 8, 8, 1), np.int32), "holds int32"),
                                        (np.full((2, 8, 8, 1), np.inf, np.float32), "NaN or Inf")])
def test_bad_calibration_data(small, tmp_path, capsys, arr, needle):  # noqa: ANN001
    np.save(tmp_path / "calib.npy", arr)
    out = tmp_path / "out"
    code, _, err = run(["compile", str(small / "good.keras"), "--calib", str(tmp_path / "calib.npy"), "-o", str(out)],
                       capsys)
    assert_clean_error(code, err, "calib.npy", needle)
    assert not out.exists()


def test_calibration_file_not_npy(small, tmp_path, capsys):  # noqa: ANN001
    (tmp_path / "c.npy").write_text("hello")
    code, _, err = run(["compile", str(small / "good.keras"), "--calib", str(tmp_path / "c.npy")], capsys)
    assert_clean_error(code, err, "c.npy", "not a readable .npy")


def test_keras_needs_calibration(small, capsys):  # noqa: ANN001
    code, _, err = run(["compile", str(small / "good.keras")], capsys)
    assert_clean_error(code, err, "good.keras", "--dataset D or --calib X.npy")


def test_corrupt_keras(tmp_path, capsys):  # noqa: ANN001
    (tmp_path / "c.keras").write_bytes(b"PK\x03\x04garbage")
    code, _, err = run(["compile", str(tmp_path / "c.keras"), "--dataset", "mnist"], capsys)
    assert_clean_error(code, err, "c.keras")


def test_unwritable_output(small, tmp_path, capsys):  # noqa: ANN001
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["compile", str(small / "good.tflite"), "-o", str(blocker / "sub")], capsys)
    assert_clean_error(code, err, "cannot", str(blocker))
    code, _, err = run(["compile", str(small / "good.tflite"), "-o", str(blocker)], capsys)
    assert_clean_error(code, err, "is a file")


def test_verify_bad_test_data(small, tmp_path, capsys):  # noqa: ANN001
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code, out, err = run(["verify", str(small / "good.tflite"), "--data", str(tmp_path / "x.npy"), "--json"], capsys)
    assert_clean_error(code, err, "x.npy", "(N, 8, 8, 1)")
    assert out == ""


def test_verify_labels_need_data(small, capsys):  # noqa: ANN001
    code, _, err = run(["verify", str(small / "good.tflite"), "--labels", "y.npy"], capsys)
    assert_clean_error(code, err, "--labels needs --data")


def test_compile_writes_everything(small, tmp_path, capsys):  # noqa: ANN001
    import json

    out = tmp_path / "gen"
    code, stdout, _ = run(["compile", str(small / "good.tflite"), "-o", str(out), "--json"], capsys)
    assert code == 0
    report = json.loads(stdout)
    for key in ("params", "macs", "weights_bytes", "arena_bytes", "layers"):
        assert key in report
    assert {"name", "op", "output_shape", "params", "macs", "arena_offset"} <= set(report["layers"][0])
    names = {p.name for p in out.iterdir()}
    assert {"good_model.h", "good_model.c", "good_weights.c", "model.tflite", "report.json"} <= names
    assert (out / "good_model.c").read_text().startswith("/* Generated by lwcnn-mcu")
    assert json.loads((out / "report.json").read_text())["arena_bytes"] == report["arena_bytes"]
    # a second compile into the same folder replaces it cleanly
    code, _, _ = run(["compile", str(small / "good.tflite"), "-o", str(out)], capsys)
    assert code == 0 and sorted(p.name for p in out.iterdir()) == sorted(names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gen")]


def test_verify_json_passes(small, capsys):  # noqa: ANN001
    import json

    code, stdout, _ = run(["verify", str(small / "good.tflite"), "--samples", "20", "--json"], capsys)
    assert code == 0
    r = json.loads(stdout)
    for key in ("model", "samples", "c_vs_tflm_bitexact", "c_vs_tflm_max_abs_diff", "c_vs_litert_bitexact",
                "c_vs_keras_argmax_agree", "c_accuracy", "tflm_accuracy", "keras_accuracy", "params", "macs",
                "weights_bytes", "arena_bytes"):
        assert key in r
    assert r["samples"] == 20 and r["c_vs_tflm_bitexact"] == 20 and r["c_vs_keras_argmax_agree"] is None
    assert r["c_vs_onnx_argmax_agree"] is None  # an .onnx model's key (tests/test_onnx.py), null here




@pytest.mark.parametrize("fn,needles", [
    (lambda tf, x: x[:, ::-2, :, :], ("STRIDED_SLICE with strides [1, -2, 1, 1]", "positive strides only")),
    (lambda tf, x: tf.reduce_mean(x, axis=[1, 3]), ("MEAN over axes [1, 3]", "one contiguous block")),
], ids=["negative_stride", "mean_axes_1_3"])
def test_unsupported_slice_or_reduction(tmp_path, capsys, fn, needles):  # noqa: ANN001
    import tensorflow as tf

    from tests.test_ops import _tf_int8

    p = tmp_path / "op.tflite"
    p.write_bytes(_tf_int8(lambda x: fn(tf, x), (6, 5, 3)))
    code, _, err = run(["compile", str(p), "-o", str(tmp_path / "out")], capsys)
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "out").exists()
