"""End to end over the serial protocol: the emulated Cortex-M4 and the Nucleo image on
netduinoplus2, every output equal to the host C, deterministic counts, and a fault-injecting
proxy between host and emulator (drops, corrupts, delays) with no wrong result recorded."""

from __future__ import annotations

import random
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lwcnn_mcu import bench, models
from lwcnn_mcu.errors import LwcnnError
from tests.conftest import HAVE_ARM, keras_96x96, randomize
from tests.test_errors import assert_clean_error, run

pytestmark = pytest.mark.skipif(not HAVE_ARM or shutil.which("qemu-system-arm") is None,
                                reason="needs arm-none-eabi-gcc and qemu-system-arm (make setup)")
HAVE_MNIST = models.shipped_path("mnist").is_file()


@pytest.fixture(scope="module")
def model(keras, tmp_path_factory) -> str:  # noqa: ANN001
    """The shipped MNIST model when installed, else a small random-weight MNIST-shaped CNN."""
    if HAVE_MNIST:
        return "mnist"
    L = keras.layers
    inp = keras.Input((28, 28, 1), batch_size=1)
    x = L.Rescaling(1 / 255.0)(inp)
    x = L.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = L.MaxPooling2D()(x)
    m = keras.Model(inp, L.Dense(10, activation="softmax")(L.Flatten()(x)))
    randomize(m, seed=11)
    p = tmp_path_factory.mktemp("bench") / "mnist_like.tflite"

    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([np.random.rand(1, 28, 28, 1).astype(np.float32) * 255] for _ in range(16))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    p.write_bytes(conv.convert())
    return str(p)


@pytest.mark.parametrize("board", ["qemu-m4", "nucleo"])
def test_bench_end_to_end(board, model, tmp_path, monkeypatch):  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    # a clean link: no transport error, however slow a loaded host is to answer (hence the long timeout)
    r1 = bench.run_bench(board=board, port=None, model=model, dataset="mnist", data=None, labels=None, samples=40,
                         layers=True, device_timeout=30.0)
    assert r1["samples"] == 40 and r1["agree_with_host"] == 40
    assert r1["accuracy"] == r1["host_accuracy"]
    assert r1["transport_errors"] == 0
    assert set(r1["instructions"]) == {"min", "median", "p99", "max"} and "cycles" not in r1
    assert 0.5 < r1["instructions_per_mac"] < 60.0  # plausible for either kernel path
    assert r1["instructions"]["max"] - r1["instructions"]["min"] < 0.05 * r1["instructions"]["median"]
    assert 0.9 < sum(x["instructions"] for x in r1["layers"]) / r1["instructions"]["median"] < 1.05
    assert len(r1["layers"]) > 2 and all(x["instructions"] >= 0 for x in r1["layers"])
    r2 = bench.run_bench(board=board, port=None, model=model, dataset="mnist", data=None, labels=None, samples=40,
                         layers=False)
    assert r2["per_inference"] == r1["per_inference"]  # deterministic instruction counts
    out = tmp_path / "r.png"
    bench.plot(r1, out)
    assert out.stat().st_size > 10_000
    saved = bench.save_result(r1, tmp_path / "results")
    assert saved.is_file() and '"commit"' in saved.read_text()


@pytest.fixture(scope="module")
def kernel_mix(keras, tmp_path_factory) -> str:  # noqa: ANN001
    """A model that takes every specialised kernel path: conv with 3 and 8 input channels, conv +
    max and average pooling, depthwise 3x3 (4k channels, stride 1 and 2, borders), 1x1 read in
    place, an odd output-channel count, a residual add, global average pooling, dense."""
    from tests.conftest import compile_keras

    L = keras.layers
    inp = keras.Input((15, 14, 3))
    x = L.MaxPooling2D(2)(L.Conv2D(8, 3, padding="same", activation="relu")(inp))
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = L.Conv2D(8, 1, activation="relu")(y)
    x = L.Add()([x, y])
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(2, padding="same")(L.Conv2D(7, 3, padding="same", activation="relu")(x))
    out = L.Dense(10)(L.GlobalAveragePooling2D()(L.Conv2D(12, 1)(x)))
    m = keras.Model(inp, out)
    randomize(m, seed=5)
    d = tmp_path_factory.mktemp("mix")
    c = compile_keras(m, d, seed=5)
    (d / "mix.tflite").write_bytes(c.tflite)
    return str(d / "mix.tflite")


@pytest.mark.parametrize("kernels", ["auto", "portable"])
def test_dsp_and_portable_kernels_on_the_emulated_m4(kernel_mix, kernels, tmp_path, monkeypatch):  # noqa: ANN001
    """The Cortex-M4 build with the DSP (SXTB16/SMLAD/SMLABB) kernels and the portable C build both
    give, on the emulated core, exactly the bytes of the host C - which equals TFLite Micro."""
    from lwcnn_mcu import compiler, hostrun, reference

    monkeypatch.chdir(tmp_path)
    r = bench.run_bench(board="qemu-m4", port=None, model=kernel_mix, dataset=None, data=None, labels=None,
                        samples=24, layers=False, kernels=kernels)
    assert r["kernels"] == kernels and r["agree_with_host"] == 24 and r["transport_errors"] == 0
    c = compiler.compile_model(kernel_mix)
    x = np.random.default_rng(0).integers(-128, 128, (24, c.graph.input.size)).astype(np.int8)
    assert np.array_equal(hostrun.build_host(c.gen.files).run(x), reference.tflm_run(c.tflite, x, c.graph.input.shape))


@pytest.fixture(scope="module")
def model_96x96(keras, tmp_path_factory) -> str:  # noqa: ANN001
    return keras_96x96(keras, tmp_path_factory.mktemp("m96"))


def test_bench_of_a_96x96x3_model_stages_its_input_in_chunks(model_96x96, tmp_path, monkeypatch):  # noqa: ANN001
    """A 27,648 B input (more than a frame's 4,096 B) staged in INPUT chunks straight into the model's input
    buffer, and a 1,200 B output (more than one reply) read on in OUTPUT chunks: every output equal to the
    host C, which equals TFLite Micro; TIME and LAYERS on the staged input."""
    from lwcnn_mcu import compiler, hostrun, protocol, reference

    monkeypatch.chdir(tmp_path)
    n = 3
    r = bench.run_bench(board="qemu-m4", port=None, model=model_96x96, dataset=None, data=None, labels=None,
                        samples=n, layers=True, device_timeout=30.0)
    assert r["agree_with_host"] == r["samples"] == n and r["transport_errors"] == 0
    tr = r["transport"]
    assert tr["input_chunks"] == n * -(-27_648 // protocol.CHUNK) and tr["output_chunks"] == n  # 1,024 + 176 B
    assert r["timing_run"]["inferences"] == 10 and len(r["layers"]) == 5
    assert r["instructions"]["min"] == r["instructions"]["max"] > 1_000_000
    c = compiler.compile_model(model_96x96)
    x = np.random.default_rng(0).integers(-128, 128, (n, c.graph.input.size)).astype(np.int8)  # bench's inputs
    assert np.array_equal(hostrun.build_host(c.gen.files).run(x), reference.tflm_run(c.tflite, x, c.graph.input.shape))


def test_model_and_io_larger_than_the_board_ram_is_refused(keras, tmp_path, capsys):  # noqa: ANN001
    """build and bench refuse (exit 2), with the RAM needed and the board's, a model whose arena fits the
    NUCLEO-F401RE's 96 KB but not with its 27,648 B input."""
    big = keras_96x96(keras, tmp_path, big=True)
    for cmd in (["build", "--board", "nucleo", "--model", big, "-o", str(tmp_path / "fw")],
                ["bench", "--board", "nucleo", "--model", big, "--samples", "1", "--no-save"]):
        code, _, err = run(cmd, capsys)
        assert_clean_error(code, err, "does not fit nucleo_f401re", "input and output buffers 27,658 B")
        need, have, arena = (int(v.replace(",", "")) for v in re.search(
            r"RAM ([\d,]+) B needed of ([\d,]+) B.*arena ([\d,]+) B", " ".join(err.split())).groups())
        assert have == 98_304 and arena < have < need and need > arena + 27_658
    assert not (tmp_path / "fw").exists()


class FaultyProxy:
    """TCP proxy that drops, corrupts and delays bytes in both directions (seeded, bounded)."""

    #: chunk numbers (per direction) that always get a fault, so every run sees some
    FORCED = {3: "corrupt", 8: "drop", 14: "delay", 20: "corrupt", 27: "drop"}

    def __init__(self, upstream: str, seed: int = 0, p: float = 0.01, forced: dict[int, str] | None = None,
                 lose_boot: bool = False) -> None:
        host, port = upstream.removeprefix("socket://").split(":")
        self.forced = self.FORCED if forced is None else forced
        self.lose_boot = lose_boot  # swallow all the device says before the host speaks: its banner and READY
        self.host_spoke = False
        self.upstream = (host, int(port))
        self.rng = random.Random(seed)
        self.p = p
        self.faults = 0
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.srv.accept()
        for _ in range(100):
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._pump, args=(client, up), daemon=True).start()
        threading.Thread(target=self._pump, args=(up, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_device: bool = False) -> None:
        src.settimeout(0.5)
        chunk = 0
        deadline = time.monotonic() + 600
        while not self.stop and time.monotonic() < deadline:
            try:
                data = bytearray(src.recv(256))
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            chunk += 1
            if not from_device:
                self.host_spoke = True
            elif self.lose_boot and not self.host_spoke:
                self.faults += 1
                continue
            forced = self.forced.get(chunk)
            roll = self.rng.random()
            if forced == "drop" or roll < self.p:  # drop one byte
                del data[self.rng.randrange(len(data))]
                self.faults += 1
            elif forced == "corrupt" or roll < 2 * self.p:  # corrupt one byte
                data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
                self.faults += 1
            elif forced == "delay" or roll < 3 * self.p:  # delay
                time.sleep(0.05)
            try:
                dst.sendall(bytes(data))
            except OSError:
                return


def test_faulty_link_records_no_wrong_result(model, tmp_path, monkeypatch):  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    proxies: list[FaultyProxy] = []

    def via(url: str) -> str:
        proxies.append(FaultyProxy(url, seed=5))
        return proxies[-1].url

    r = bench.run_bench(board="qemu-m4", port=None, model=model, dataset="mnist", data=None, labels=None,
                        samples=60, layers=False, via=via, device_timeout=2.0)
    proxies[0].stop = True
    assert proxies[0].faults > 0
    assert r["agree_with_host"] == r["samples"] == 60  # nothing recorded from a corrupted frame
    assert r["transport_errors"] > 0 and r["transport"]["retries"] > 0


def test_lost_boot_ready_is_recovered_by_asking_info(model, tmp_path, monkeypatch):  # noqa: ANN001
    """The emulated board says READY once, at boot; when that frame is lost the host asks INFO."""
    monkeypatch.chdir(tmp_path)
    proxies: list[FaultyProxy] = []

    def via(url: str) -> str:
        proxies.append(FaultyProxy(url, p=0.0, forced={}, lose_boot=True))
        return proxies[-1].url

    r = bench.run_bench(board="qemu-m4", port=None, model=model, dataset="mnist", data=None, labels=None,
                        samples=3, layers=False, via=via, device_timeout=2.0)
    proxies[0].stop = True
    assert proxies[0].faults >= 1
    assert r["agree_with_host"] == r["samples"] == 3


def test_bench_argument_errors(capsys):  # noqa: ANN001
    code, _, err = run(["bench", "--board", "qemu-m4", "--port", "/dev/null"], capsys)
    assert_clean_error(code, err, "either --board or --port")
    code, _, err = run(["bench", "--board", "nucleo_l4r5zi", "--model", "mnist"], capsys)
    assert code == 2 and "Traceback" not in err


def test_bench_wrong_port_is_clear(model, capsys):  # noqa: ANN001
    code, _, err = run(["bench", "--port", "/dev/nonexistent-tty", "--model", model, "--samples", "1"], capsys)
    assert_clean_error(code, err, "/dev/nonexistent-tty")




def test_device_reset_is_detected_and_run_resumes(model, tmp_path, monkeypatch):  # noqa: ANN001
    """A RESET request reboots the emulated board mid-run: the host sees READY, counts the reset,
    checks the model again and resumes with the same input."""
    monkeypatch.chdir(tmp_path)
    original = bench.Device.infer
    calls = {"n": 0}

    def infer_with_reset(self, x):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 5:  # reset the device before the 5th input
            self.port.write(bench.protocol.encode(bench.protocol.MSG["RESET"], 0xEE))
        return original(self, x)

    monkeypatch.setattr(bench.Device, "infer", infer_with_reset)
    r = bench.run_bench(board="qemu-m4", port=None, model=model, dataset="mnist", data=None, labels=None,
                        samples=10, layers=False)
    assert r["transport"]["device_resets"] == 1
    assert r["agree_with_host"] == r["samples"] == 10


def test_results_folder_is_configurable_and_never_the_repository(tmp_path, monkeypatch):  # noqa: ANN001
    """bench saves into --results DIR, else $LWCNN_RESULTS, else ./lwcnn-results (not benchmarks/results)."""
    r = {"board": "qemu-m4", "model": "mnist", "date": "2026-01-01T00:00:00Z"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LWCNN_RESULTS", raising=False)
    assert bench.save_result(dict(r)).parent == Path("lwcnn-results")
    monkeypatch.setenv("LWCNN_RESULTS", str(tmp_path / "env"))
    assert bench.save_result(dict(r)).parent == tmp_path / "env"
    assert bench.save_result(dict(r), tmp_path / "opt").parent == tmp_path / "opt"
    (tmp_path / "file").write_text("")
    with pytest.raises(LwcnnError, match="cannot create the results folder"):
        bench.save_result(dict(r), tmp_path / "file" / "x")
