"""Whole networks: residual block, depthwise-separable stack, the paper-sized MNIST CNN
(issue's Net A) - bit-exact with TFLite Micro, sanitizer-clean, first-divergence tracing, and the
generated C compiles for Cortex-M4."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from lwcnn_mcu import hostrun, reference, verify
from tests.conftest import HAVE_ARM, compile_keras, random_inputs, randomize


def net_a(keras):  # noqa: ANN001, ANN201
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Rescaling(1 / 255.0),
        L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(24, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(10, activation="softmax"),
    ], name="net_a")


def net_b(keras):  # noqa: ANN001, ANN201
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(16, 3, strides=2, padding="same"),
        L.DepthwiseConv2D(3, padding="same", activation="relu"), L.Conv2D(32, 1, activation="relu"),
        L.DepthwiseConv2D(3, strides=2, padding="same"), L.Conv2D(32, 1),
        L.GlobalAveragePooling2D(), L.Dense(10),
    ], name="net_b")


def resnet_block(keras):  # noqa: ANN001, ANN201
    L = keras.layers
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.Conv2D(8, 3, padding="same")(y)
    x = L.ReLU()(L.Add()([x, y]))
    z = L.Conv2D(12, 3, strides=2, padding="same", activation="relu")(x)
    z = L.Conv2D(12, 3, padding="same")(z)
    s = L.Conv2D(12, 1, strides=2)(x)
    x = L.ReLU()(L.Add()([s, z]))
    x = L.Concatenate()([x, L.Conv2D(4, 1, strides=2)(inp)])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, activation="softmax")(x), name="resnet_block")


NETS = {"net_a": net_a, "net_b": net_b, "resnet_block": resnet_block}


@pytest.fixture(scope="module")
def compiled(keras, tmp_path_factory):  # noqa: ANN001, ANN201
    out = {}
    for name, fn in NETS.items():
        m = fn(keras)
        randomize(m, seed=7)
        out[name] = compile_keras(m, tmp_path_factory.mktemp(name), n_calib=128)
    return out


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_bitexact(compiled, name):  # noqa: ANN001
    c = compiled[name]
    x = random_inputs(c, 200, seed=3)
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    host = hostrun.build_host(c.gen.files)
    assert np.array_equal(host.run(x), expect)
    san = hostrun.build_host(c.gen.files, sanitize=True, opt="-O0")
    assert np.array_equal(san.run(x[:10]), expect[:10])
    # every layer, not just the output, equals TFLite Micro's tensor
    assert verify.first_divergence(c, host, x[0]) is None


def test_net_a_figures(compiled):  # noqa: ANN001
    c = compiled["net_a"]
    r = c.report
    assert r["macs"] == 453_744  # the anchor network of the performance issue
    assert r["arena_bytes"] > 0 and r["weights_bytes"] > r["params"]
    # each convolution is fused with the max pooling after it: the 28x28x8 map never exists
    assert [row["op"] for row in r["layers"]][:3] == ["CONV_2D+MAX_POOL_2D"] * 3
    tflm = reference.tflm_arena(c.tflite, c.graph.input.shape)
    assert r["arena_bytes"] <= 0.6 * tflm["head"]


def test_first_divergence_names_the_layer(compiled):  # noqa: ANN001
    """Corrupt one multiplier in the generated C: the trace must point at that layer."""
    c = compiled["net_a"]
    files = dict(c.gen.files)
    wname = f"{c.gen.name}_weights.c"
    text = files[wname]
    marker = f"const int32_t {c.gen.name}_m1[16] LW_ALIGN4 {c.gen.name.upper()}_WEIGHTS_ATTR = {{\n    "
    assert marker in text
    i = text.index(marker) + len(marker)
    j = text.index(",", i)
    files[wname] = text[:i] + str(int(text[i:j]) // 2) + text[j:]
    host = hostrun.build_host(files)
    x = random_inputs(c, 1, seed=5)
    d = verify.first_divergence(c, host, x[0])
    assert d is not None and d["layer"] == 1 and d["op"] == "CONV_2D+MAX_POOL_2D"


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc is not installed (make setup installs it)")
@pytest.mark.parametrize("name", sorted(NETS))
def test_generated_c_compiles_for_cortex_m4(compiled, name, tmp_path):  # noqa: ANN001
    c = compiled[name]
    for fname, text in c.gen.files.items():
        (tmp_path / fname).write_text(text)
    cfiles = sorted(str(p) for p in tmp_path.glob("*.c"))
    for opt in ("-O2", "-O0"):  # -O0: a debug build, where the inline assembly must not run out of registers
        r = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                            "-std=c99", opt, "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion",
                            "-Wno-sign-conversion", "-ffunction-sections", "-fdata-sections", "-c", *cfiles],
                           cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, f"{opt}: {r.stderr}"
        objs = list(tmp_path.glob("*.o"))
        assert len(objs) == len(cfiles)


def test_compiling_a_keras_model_twice_gives_identical_files(keras, tmp_path):  # noqa: ANN001
    """Reproducible output: the same .keras and calibration give the same .tflite and C on every run,
    however many Keras tensors the process has created in between (they used to leak into tensor
    names and so into the model hash of the provenance line)."""
    from lwcnn_mcu import compiler

    m = net_a(keras)
    randomize(m, seed=5)
    m.save(tmp_path / "a.keras")
    calib = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32) * 255
    first = compiler.compile_model(str(tmp_path / "a.keras"), calib=calib)
    net_a(keras)  # more Keras tensors in this process
    second = compiler.compile_model(str(tmp_path / "a.keras"), calib=calib)
    assert first.tflite == second.tflite
    assert first.gen.files == second.gen.files


def _convert_default(keras, model, calib):  # noqa: ANN001, ANN202
    """TFLiteConverter.from_keras_model as the TensorFlow guide writes it: batch -1 in the signature."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    return bytes(conv.convert())


def test_converter_default_export_with_dynamic_batch_compiles(keras, tmp_path):  # noqa: ANN001
    """A .tflite whose input signature has batch -1 (the converter's default) compiles as batch 1, as
    TFLite Micro runs it, and equals TFLite Micro; other dynamic dimensions are refused clearly."""
    from lwcnn_mcu import compiler
    from lwcnn_mcu.errors import LwcnnError
    from lwcnn_mcu.frontend import tflite

    L = keras.layers
    inp = keras.Input((12, 10, 2))
    x = L.Conv2D(6, 3, activation="relu")(inp)
    x = L.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, L.Dense(4)(x))
    randomize(m, seed=2)
    calib = np.random.default_rng(0).normal(0, 1, (32, 12, 10, 2)).astype(np.float32)
    buf = _convert_default(keras, m, calib)
    path = tmp_path / "dyn.tflite"
    path.write_bytes(buf)
    model = tflite.parse_model(buf, "dyn")
    sg = model.subgraphs[0]
    assert int(sg.tensors[sg.inputs[0]].shapeSignature[0]) == -1  # the door this test is about
    c = compiler.compile_model(str(path))
    x = random_inputs(c, 20)
    np.testing.assert_array_equal(hostrun.build_host(c.gen.files).run(x),
                                  reference.tflm_run(c.tflite, x, c.graph.input.shape))
    inp2 = keras.Input((None, 10, 2))
    m2 = keras.Model(inp2, L.Dense(4)(L.GlobalAveragePooling2D()(L.Conv2D(6, 3)(inp2))))
    (tmp_path / "dynh.tflite").write_bytes(_convert_default(keras, m2, calib))
    with pytest.raises(LwcnnError, match=r"input shape \[-1, -1, 10, 2\] is dynamic beyond the batch"):
        compiler.compile_model(str(tmp_path / "dynh.tflite"))
