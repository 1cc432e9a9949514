"""Two-stage training: --quick runs, unification, the unfreezing schedule, and datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lwcnn_mcu import datasets, training
from lwcnn_mcu.errors import LwcnnError

HAVE_DATA = bool(os.environ.get("LWCNN_DATASETS")) and Path(os.environ["LWCNN_DATASETS"]).is_dir()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="LWCNN_DATASETS is not set to the offline datasets")


def test_unfreeze_plan_goes_backwards():
    plan = training.unfreeze_plan(4, ((1, 1, 1e-3), (1, 1, 1e-3), (2, 1, 1e-3), (1, 1, 1e-4)))
    assert plan == [[False, False, False, True], [False, False, True, True], [True, True, True, True],
                    [True, True, True, True]]


def test_schedule_parsing():
    assert training.parse_schedule("1:2:1e-3, 2:1:5e-4") == ((1, 2, 1e-3), (2, 1, 5e-4))
    with pytest.raises(LwcnnError, match="groups:epochs:lr"):
        training.parse_schedule("1:2")


def test_layer_groups_and_budget():
    m = training.build_backbone("lw14k", (28, 28, 1))
    names = [[layer.name for layer in g] for g in training.layer_groups(m)]
    assert names[0] == ["b1_conv", "b1_bn"] and names[-1] == ["head_fc"]
    shapes = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
    for dataset, recipe in training.RECIPES.items():  # every default architecture fits its budget
        assert training.build_backbone(recipe.arch, shapes[dataset]).count_params() <= training.PARAM_BUDGET[dataset]


def _is_bn_stat(w) -> bool:  # noqa: ANN001
    return "moving" in w.path


@pytest.mark.parametrize("strategy", training.STRATEGIES)
def test_unification(strategy):  # noqa: ANN001
    fn = lambda name: training.build_backbone("tiny", (28, 28, 1), name=name)  # noqa: E731
    dual, orig, augb = training.build_dual(fn, training.augmenter((0.05, 0.1, 0.1, 0.1), 0))
    assert all(np.array_equal(a, b) for a, b in zip(orig.get_weights(), augb.get_weights(), strict=True))
    rng = np.random.default_rng(0)
    augb.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in augb.get_weights()])
    o, a = orig.get_weights(), augb.get_weights()
    early = ([w - 1 for w in o], [w + 1 for w in a])  # an epoch-1 checkpoint, outside the last third
    br = training.Branches(orig, augb, {}, [early, (o, a), (o, a)])
    x = rng.uniform(0, 255, (64, 28, 28, 1)).astype(np.float32)
    u = training.unify_branches(br, strategy, fn, x)
    t = {"average": 0.5, "average-raw": 0.5, "mix0.25": 0.25, "mix0.75": 0.75, "swa": 0.5}.get(strategy)
    stat = [_is_bn_stat(w) for w in u.weights]
    if t is not None:  # the weights are the interpolation; (the last third of) the checkpoints for swa
        expect = [(1 - t) * p + t * q for p, q in zip(o, a, strict=True)]
        for w, e, s in zip(u.get_weights(), expect, stat, strict=True):
            assert s and strategy != "average-raw" or np.allclose(w, e, atol=1e-6)
    else:
        src = augb if strategy == "augmented" else orig
        assert np.allclose(u.predict(x, verbose=0), src.predict(x, verbose=0), atol=1e-6)
    if strategy in ("average", "mix0.25", "mix0.75", "swa"):  # batch-norm statistics re-estimated on x
        bn = [la for la in u.layers if la.name == "b1_bn"][0]
        conv = [la for la in u.layers if la.name == "b1_conv"][0]
        feat = np.asarray(conv(u.get_layer("b0_rescale")(x)))
        assert np.allclose(bn.moving_mean.numpy(), feat.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
        assert np.allclose(bn.moving_variance.numpy(), feat.var((0, 1, 2)), rtol=1e-3, atol=1e-5)
    # the dual model routes each input to its own branch
    yo, ya = dual.predict([x, x], verbose=0)
    assert np.allclose(yo, orig.predict(x, verbose=0), atol=1e-6)


@needs_data
def test_quick_training_run(tmp_path):  # noqa: ANN001
    out = tmp_path / "q.keras"
    card = training.train("mnist", out=out, quick=True, seed=1, method="two-stage")
    assert out.is_file() and out.with_suffix(".json").is_file() and out.with_suffix(".png").is_file()
    assert out.with_suffix(".tflite").read_bytes()[4:8] == b"TFL3"  # the int8 model the card measured
    assert out.with_suffix(".md").read_text().startswith("# Model card")
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["int8_test_accuracy"] == card["int8_test_accuracy"]
    assert set(saved["unification_val_accuracy"]) == set(training.STRATEGIES)
    assert saved["unification"] in training.STRATEGIES and saved["method"] == "two-stage"
    assert len(saved["history"]["stage2"]) == 2 and saved["history"]["stage2"][0]["trainable"] == ["head"]


@needs_data
@pytest.mark.parametrize("name,shape,counts", [("mnist", (28, 28, 1), None), ("fashion_mnist", (28, 28, 1), None),
                                               ("cifar10", (32, 32, 3), None)])
def test_offline_datasets(name, shape, counts):  # noqa: ANN001
    d = datasets.load(name)
    assert d.x_train.shape[1:] == shape and d.x_train.dtype == np.float32 and d.x_test.shape[0] == 10_000
    assert 0 <= d.x_test.min() and d.x_test.max() <= 255
    if name == "mnist":
        assert np.bincount(d.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    if name == "cifar10":
        assert d.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
        assert d.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_missing_dataset_file_is_named(tmp_path, monkeypatch):  # noqa: ANN001
    monkeypatch.setenv("LWCNN_DATASETS", str(tmp_path))
    datasets.load.cache_clear()
    try:
        with pytest.raises(LwcnnError, match="mnist.npz is missing"):
            datasets.load("mnist")
        with pytest.raises(LwcnnError, match="train-images-idx3-ubyte.gz is missing"):
            datasets.load("fashion_mnist")
    finally:
        datasets.load.cache_clear()


def test_unknown_dataset():
    with pytest.raises(LwcnnError, match="unknown dataset 'svhn'"):
        datasets.check_name("svhn")


def test_unknown_architecture_fails_before_training(tmp_path):  # noqa: ANN001
    with pytest.raises(LwcnnError, match="unknown architecture 'vgg16'; choose one of lw14k, lw14kv"):
        training.train("mnist", out=tmp_path / "m.keras", arch="vgg16")
    assert not list(tmp_path.iterdir())


@needs_data
def test_ablation_script_quick(tmp_path):  # noqa: ANN001
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "benchmarks" / "ablation.py"), "--dataset", "mnist", "--quick", "--out",
           str(tmp_path), "--workers", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "ablation-mnist-tiny-default-quick.json").read_text())
    strategies = [f"stage 1 ({s})" for s in training.STRATEGIES]
    assert [row["variant"] for row in res["rows"]] == ["plain", "plain+aug", *strategies, "stage 1 (best)",
                                                      "stages 1 + 2", "stage 1 synced (best)",
                                                      "stages 1 + 2, synced"]
    assert res["compute_epochs"] == 2 * 2 + 2 and res["rows"][0]["epochs"] == "6"  # plain gets equal compute
    assert "| stages 1 + 2 |" in (tmp_path / "ablation-mnist-tiny-default-quick.md").read_text()
    # the same command again resumes: nothing left to run, the same table
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0 and "4 task(s) already done, 0 to go" in r2.stdout, r2.stderr[-2000:]


@pytest.mark.parametrize("sync_every", [0, 1])
def test_stage1_checkpoints_and_sync(sync_every):  # noqa: ANN001
    """Stage 1 keeps both branches' weights after every epoch; with --sync-every 1 both branches are set to
    their mean after each epoch (so they end equal), without it they differ."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    split = training.Split(x, y, x[:16], y[:16], x[:16], y[:16])
    rec = training.Recipe("tiny", 2, 32, 1e-2, ((1, 1, 1e-3),), (0.05, 0.1, 0.1, 0.1), sync_every=sync_every)
    training.seed_everything(0)
    fn = lambda name: training.build_backbone("tiny", (28, 28, 1), name=name)  # noqa: E731
    br = training.stage1(split, fn, rec, 2, 32, 0, 0)
    assert len(br.checkpoints) == 2
    same = all(np.array_equal(a, b) for a, b in zip(br.orig.get_weights(), br.augb.get_weights(), strict=True))
    assert same == bool(sync_every)
    with pytest.raises(LwcnnError, match="--sync-every must be 0"):
        training.train("mnist", out=Path("unused.keras"), sync_every=-1)


@needs_data
def test_quick_plain_aug_run(tmp_path):  # noqa: ANN001
    """--method plain+aug: one model for the two-stage method's compute (2 x E1 + E2 epochs), card and
    curves written like a two-stage run's, the method recorded; --out's folder is created; the saved model
    has Keras's own layers (trained with the fused batch norm), and the same seed gives the same weights."""
    out = tmp_path / "new" / "p.keras"
    card = training.train("mnist", out=out, quick=True, seed=1, method="plain+aug")
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["method"] == "plain+aug" and saved["int8_test_accuracy"] == card["int8_test_accuracy"]
    assert saved["epochs"] == 2 * 1 + 2 == len(saved["history"]["plain"]["val_accuracy"])  # quick: E1 1, 2 steps
    assert "unification" not in saved and set(saved["training_time"]) == {"train_s", "float_test_s", "int8_card_s",
                                                                          "total_s"}
    assert "method plain+aug: one model, 4 epochs on the augmented images" in out.with_suffix(".md").read_text()
    assert saved["recipe"]["batch_norm"] == "fused" and "batch norm fused" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").is_file() and out.with_suffix(".tflite").is_file()
    keras = training._keras()
    saved_model = keras.saving.load_model(out)
    assert all(type(la).__module__.startswith("keras.") for la in saved_model.layers)
    assert any(isinstance(la, training.fused_batch_norm()) for la in training.build_backbone(
        "tiny", (28, 28, 1), fused_bn=True).layers)
    again = tmp_path / "again.keras"
    training.train("mnist", out=again, quick=True, seed=1, method="plain+aug")
    weights = saved_model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, keras.saving.load_model(again).get_weights(),
                                                    strict=True))
    bns = [la for la in saved_model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(np.any(np.asarray(la.moving_mean) != 0) and np.any(np.asarray(la.moving_variance) != 1)
                       for la in bns)  # the fused kernel's batch statistics reached the moving averages
    with pytest.raises(LwcnnError, match="unknown training method 'swa'"):
        training.train("mnist", out=tmp_path / "x.keras", method="swa")
    with pytest.raises(LwcnnError, match="unknown batch norm 'cudnn'; choose fused or keras"):
        training.train("mnist", out=tmp_path / "x.keras", batch_norm="cudnn")
    keras_bn = training.train("mnist", out=tmp_path / "k.keras", quick=True, seed=1, method="plain+aug",
                              batch_norm="keras")  # Keras's own ops, for comparison
    assert keras_bn["recipe"]["batch_norm"] == "keras"


def test_fused_batch_norm_matches_keras():
    """The fused training kernel: Keras's normalization, gradients and moving averages (to float rounding);
    inference and frozen layers take Keras's own path."""
    keras = training._keras()
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 3)).astype("float32"))
    ref, fused = keras.layers.BatchNormalization(momentum=0.9), training.fused_batch_norm()(momentum=0.9)
    for la in (ref, fused):
        la.build(x.shape)
        la.set_weights([np.array([1.5, 0.5, 2.0], "float32"), np.array([0.1, -0.2, 0.3], "float32"),
                        np.zeros(3, "float32"), np.ones(3, "float32")])
    outs, grads = [], []
    w = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype("float32"))
    for la in (ref, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = la(x, training=True)
            loss = tf.reduce_sum(y * w)
        outs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, la.gamma, la.beta])])
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for a, b in zip(ref.get_weights(), fused.get_weights(), strict=True):  # the moving averages
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not np.allclose(fused.get_weights()[3], 1.0)
    np.testing.assert_array_equal(ref(x, training=False).numpy(), fused(x, training=False).numpy())
    fused.trainable = False  # frozen (stage 2): the moving statistics, as Keras
    np.testing.assert_array_equal(ref(x, training=False).numpy(), fused(x, training=True).numpy())
