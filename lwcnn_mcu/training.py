"""Two-stage training (arXiv:2501.15547), as a product.

Stage 1 - **dual-input-output model.** Two identical sub-networks (same architecture, same
initial weights) in one Keras model: one sees the original images, the other the same images
through random rotation, zoom, translation and brightness. Both outputs are trained together
(sum of the two cross-entropies). The two branches are then **unified** into one single-input
model by a named strategy: ``average`` (element-wise mean of every weight, batch-norm statistics
included; meaningful because both start from the same weights), ``augmented`` or ``original``
(keep one branch), or ``best`` (the one of those three with the highest validation accuracy).

Stage 2 - **progressive unfreezing** (as ULMFiT's gradual unfreezing). The unified model's layer
groups (each conv block, then the classifier head) are frozen; fine-tuning on the original images
starts with only the last group trainable and unfreezes one more group per step, backwards, with
small, decreasing learning rates. The schedule is a list of steps ``groups:epochs:lr`` (groups =
how many more groups to unfreeze at that step). The weights kept are those of the step with the
best validation accuracy (step 0 being the unified model itself), so stage 2 never makes the
model worse on held-out data; the model card records which step won.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lwcnn_mcu import datasets
from lwcnn_mcu.errors import LwcnnError

# How stage 1's two branches become one model (`train --unify`). "best" takes the strategy with the highest
# validation accuracy. Every weight-space strategy re-estimates the batch-norm statistics afterwards on
# training images (`reestimate_bn`): an average of two networks is a new network whose activations no
# longer have the statistics either branch measured ("average-raw" keeps the averaged statistics, for
# the record: what `average` was before).
#   original / augmented   one branch as it is
#   average                the element-wise mean of both branches' weights
#   mix0.25 / mix0.75      interpolations, 25% / 75% of the way from the original to the augmented branch
#   swa                    the mean of both branches over the checkpoints of the last third of stage 1's
#                          epochs (stochastic weight averaging over two branches)
STRATEGIES = ("original", "augmented", "average", "mix0.25", "mix0.75", "swa", "average-raw")
UNIFY = ("best", *STRATEGIES)
BN_IMAGES = 10_000  # training images that re-estimate the batch-norm statistics of a unified model


@dataclass(frozen=True)
class Recipe:
    arch: str
    stage1_epochs: int
    batch: int
    lr: float
    schedule: tuple[tuple[int, int, float], ...]  # (groups to unfreeze, epochs, learning rate)
    aug: tuple[float, float, float, float]  # rotation (fraction of 2pi), zoom, translation, brightness
    stage2_augment: bool = True  # fine-tune on (mildly) augmented images
    sync_every: int = 0  # stage 1: set both branches to their mean every N epochs (0: independent branches)
    method: str = "two-stage"  # METHODS; the plain ones train one model for compute_epochs() epochs


# How `train` trains (`train --method`), every one at the same compute (`compute_epochs`):
#   two-stage   the paper's method: stage 1 (two branches at once, so 2 x E1 model-epochs), then stage 2
#   plain+aug   one model on stage 1's augmented images for 2 x E1 + E2 epochs, cosine learning rate
#   plain       the same on the original images
# A recipe's `method` is what the multi-seed ablation (benchmarks/ablation.py, README) found best.
METHODS = ("two-stage", "plain+aug", "plain")


def compute_epochs(recipe: Recipe, stage1_epochs: int | None = None,
                   schedule: tuple[tuple[int, int, float], ...] | None = None) -> int:
    """C, the two-stage method's training compute in model-epochs: 2 x E1 (stage 1 trains two models at
    once) + E2 (stage 2's epochs). The plain methods train one model for C epochs (equal compute)."""
    e1 = recipe.stage1_epochs if stage1_epochs is None else stage1_epochs
    return 2 * e1 + sum(e for _g, e, _lr in (recipe.schedule if schedule is None else schedule))


# The paper's two-stage recipes at full length ("paper"): what the shipped models were trained with
# until the multi-seed ablation (the Fashion-MNIST and CIFAR-10 ones still are).
PAPER_RECIPES: dict[str, Recipe] = {
    "mnist": Recipe("lw14kv", 30, 128, 2e-3, ((1, 2, 3e-4), (1, 2, 2e-4), (1, 2, 1e-4), (1, 2, 5e-5), (1, 2, 2e-5)),
                    (0.02, 0.05, 0.08, 0.05)),
    "fashion_mnist": Recipe("lw14k", 30, 128, 2e-3, ((1, 2, 2e-4), (1, 2, 1e-4), (1, 2, 6e-5), (1, 2, 4e-5),
                                                      (1, 2, 2e-5)), (0.02, 0.08, 0.08, 0.1)),
    "cifar10": Recipe("lwds20k", 40, 64, 3e-3, ((1, 2, 2e-4), (1, 2, 1e-4), (1, 2, 8e-5), (1, 2, 6e-5), (1, 2, 4e-5),
                                                (1, 2, 2e-5)), (0.03, 0.1, 0.1, 0.15)),
}
# The two-stage recipes at batch 512 ("fast"; the multi-seed ablation's): profiled on this CPU, the
# convolutions dominate; the augmentation layers cost about 3 s of a 40 s dual-model epoch (moving them
# into a tf.data pipeline changed nothing) and XLA (jit_compile) made the dual model slower, so the lever
# is the batch: 4x fewer, larger steps, the learning rate scaled with it, and half the epochs.
FAST_RECIPES: dict[str, Recipe] = {
    "mnist": Recipe("lw14kv", 15, 512, 4e-3, ((1, 1, 6e-4), (1, 1, 4e-4), (1, 1, 2e-4), (1, 1, 1e-4),
                                              (1, 1, 4e-5)), (0.02, 0.05, 0.08, 0.05)),
    "fashion_mnist": Recipe("lw14k", 15, 512, 4e-3, ((1, 1, 4e-4), (1, 1, 2e-4), (1, 1, 1.2e-4), (1, 1, 8e-5),
                                                     (1, 1, 4e-5)), (0.02, 0.08, 0.08, 0.1)),
}
# The defaults ("default"): per dataset, the best variant of the multi-seed ablation at equal compute
# (benchmarks/results/ablation-<dataset>-*-fast.md, README): one model for the fast recipe's 35
# model-epochs, with stage 1's augmentation on MNIST (99.52% against 99.23% for the two stages, 2 seeds),
# without it on Fashion-MNIST (91.31% against 91.00%). CIFAR-10 has no ablation yet: the paper's method.
RECIPES: dict[str, Recipe] = {
    "mnist": replace(FAST_RECIPES["mnist"], method="plain+aug"),
    "fashion_mnist": replace(FAST_RECIPES["fashion_mnist"], method="plain"),
    "cifar10": PAPER_RECIPES["cifar10"],
}
# What each shipped model was trained with ("shipped"; its card records it too).
SHIPPED_RECIPES: dict[str, Recipe] = {
    "mnist": RECIPES["mnist"],
    "fashion_mnist": PAPER_RECIPES["fashion_mnist"],
    "cifar10": PAPER_RECIPES["cifar10"],
}
RECIPE_NAMES = ("default", "shipped", "fast", "paper")
PARAM_BUDGET = {"mnist": 14862, "fashion_mnist": 14862, "cifar10": 19999}


def recipe_for(dataset: str, which: str = "default") -> Recipe:
    """The dataset's recipe by name: default (the ablation's best), shipped (its shipped model's), fast
    (two stages at batch 512) or paper (two stages at full length)."""
    if which not in RECIPE_NAMES:
        raise LwcnnError(f"unknown recipe '{which}'; choose {', '.join(RECIPE_NAMES)}")
    table = {"default": RECIPES, "shipped": SHIPPED_RECIPES, "fast": FAST_RECIPES, "paper": PAPER_RECIPES}[which]
    if dataset not in table:
        raise LwcnnError(f"no {which} recipe for {dataset} yet; use the default")
    return table[dataset]


def _keras() -> Any:
    from lwcnn_mcu.util import quiet_tensorflow

    quiet_tensorflow()
    import keras

    return keras


_FUSED_BN: list[Any] = []


def fused_batch_norm() -> Any:
    """Keras's BatchNormalization with TensorFlow's fused kernel (FusedBatchNormV3) for its training step.
    Keras 3's TensorFlow backend computes the batch moments, the normalization and their gradients as
    separate ops, several passes over every activation; the fused op does the same arithmetic in one.
    Measured here on lw14kv at batch 512 (benchmarks/train_profile.py --bn): it halves a training step.
    Same normalization and gradients; the moving averages as Keras keeps them (the op returns the
    unbiased batch variance, Keras averages the biased one, so it is scaled back). Inference, frozen
    layers (stage 2), masks and other configurations take Keras's own path. Training only: `train` saves
    plain Keras layers (`plain_copy`), so a saved model loads anywhere."""
    if _FUSED_BN:
        return _FUSED_BN[0]
    keras = _keras()
    import tensorflow as tf

    class FusedBatchNormalization(keras.layers.BatchNormalization):
        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            if not (training and self.trainable) or mask is not None or len(inputs.shape) != 4 or self.renorm \
                    or self.axis not in (-1, 3) or not (self.scale and self.center) or inputs.dtype != tf.float32:
                return super().call(inputs, training=training, mask=mask)
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(inputs, self.gamma, self.beta, epsilon=self.epsilon,
                                                            is_training=True)
            n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], var.dtype)
            var = var * (n - 1.0) / n
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + var * (1.0 - self.momentum))
            return y

    _FUSED_BN.append(FusedBatchNormalization)
    return FusedBatchNormalization


def _block(keras: Any, x: Any, filters: int, k: int, name: str, depthwise: bool = False, stride: int = 1,
           fused_bn: bool = False) -> Any:
    L = keras.layers
    bn = fused_batch_norm() if fused_bn else L.BatchNormalization
    if depthwise:
        x = L.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
        x = bn(name=f"{name}_dwbn")(x)
        x = L.ReLU(name=f"{name}_dwrelu")(x)
        x = L.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}_pw")(x)
    else:
        x = L.Conv2D(filters, k, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = bn(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


# Architectures as layer lists: "c<n>" conv 3x3 + BN + ReLU, "d<n>" depthwise-separable block, an optional
# "k<k>" suffix for another (odd) kernel size ("c16k5", "d32k5"), "p" 2x2 max pooling, and the head: "flat"
# (flatten, dropout 0.2) or "gap" (global average, dropout 0.1). Besides these names, `--arch` and the model
# search take such a list written out, joined by "-": "c16k5-p-d24-p-c16-p-flat".
ARCHS: dict[str, tuple[str, ...]] = {
    # 13,690 params, 1.13 M MACs on 28x28x1; Fashion-MNIST default (MNIST with it: 99.33-99.38% int8 test)
    "lw14k": ("c16", "p", "c24", "p", "c32", "p", "flat"),
    # 14,010 params, 1.98 M MACs: VGG-style, two convolutions at 14x14; MNIST default (99.40-99.43%)
    "lw14kv": ("c16", "p", "c24", "c24", "p", "c16", "p", "flat"),
    # 14,710 params, 1.52 M MACs: tried for MNIST, 99.16% int8 test, so not the default
    "lw14kd": ("c12", "p", "c16", "c24", "p", "c40", "gap"),
    # depthwise-separable, 17,626 params on 32x32x3; CIFAR-10 default
    "lwds20k": ("c24", "d32", "p", "d48", "p", "d64", "d112", "gap"),
    "tiny": ("c4", "p", "c8", "gap"),  # for tests
}
_TOKEN = re.compile(r"^(?P<kind>[cd])(?P<filters>[1-9][0-9]*)(?:k(?P<k>[1-9][0-9]?))?$")


def parse_arch(arch: str) -> tuple[str, ...]:
    """An architecture name (ARCHS) or a written-out layer list ("c16-p-d24k5-gap") as its tokens."""
    if arch in ARCHS:
        return ARCHS[arch]
    tokens = tuple(t.strip() for t in arch.split("-"))
    body, head = tokens[:-1], tokens[-1] if tokens else ""
    ok = (head in ("flat", "gap") and any(_TOKEN.match(t) for t in body)
          and all(t == "p" or (_TOKEN.match(t) and int(_TOKEN.match(t)["k"] or 3) % 2 == 1) for t in body))
    if not ok:
        raise LwcnnError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHS)}, or write one out as "
                         "blocks c<filters>[k<odd kernel>] (conv) and d<filters>[k<kernel>] (depthwise-separable), "
                         "p (2x2 max pooling), and a head flat or gap, joined by '-': c16-p-d24k5-p-flat")
    return tokens


def build_backbone(arch: str, input_shape: tuple[int, ...], classes: int = 10, name: str = "lwcnn",
                   fused_bn: bool = False) -> Any:
    """The single-input classifier. Layer names start with the group name (b1_, b2_, ..., head_);
    a pooling layer belongs to the block before it. ``fused_bn``: batch norm with the fused training
    kernel (fused_batch_norm; for training, see plain_copy)."""
    tokens = parse_arch(arch)
    keras = _keras()
    L = keras.layers
    inp = keras.Input(input_shape, name="image")
    x = L.Rescaling(1.0 / 255, name="b0_rescale")(inp)
    block = 0
    for item in tokens:
        if item == "p":
            x = L.MaxPooling2D(name=f"b{block}_pool")(x)
        elif item == "flat":
            x = L.Dropout(0.2, name="head_drop")(L.Flatten(name="head_flatten")(x))
        elif item == "gap":
            x = L.Dropout(0.1, name="head_drop")(L.GlobalAveragePooling2D(name="head_gap")(x))
        else:
            block += 1
            m = _TOKEN.match(item)
            assert m is not None
            x = _block(keras, x, int(m["filters"]), int(m["k"] or 3), f"b{block}", depthwise=m["kind"] == "d",
                       fused_bn=fused_bn)
    out = L.Dense(classes, activation="softmax", name="head_fc")(x)
    return keras.Model(inp, out, name=name)


def plain_copy(model: Any, arch: str) -> Any:
    """The same backbone with Keras's own layers (no fused_batch_norm) and the same weights: what is saved."""
    plain = build_backbone(arch, tuple(model.inputs[0].shape[1:]), int(model.outputs[0].shape[-1]), model.name)
    plain.set_weights(model.get_weights())
    return plain


def layer_groups(model: Any) -> list[list[Any]]:
    """Groups of layers with weights, in forward order: b1, b2, ..., head."""
    groups: dict[str, list[Any]] = {}
    for layer in model.layers:
        if layer.weights:
            groups.setdefault(layer.name.split("_")[0], []).append(layer)
    return list(groups.values())


def augmenter(aug: tuple[float, float, float, float], seed: int) -> Any:
    keras = _keras()
    L = keras.layers
    rot, zoom, trans, bright = aug
    return keras.Sequential([
        L.RandomRotation(rot, fill_mode="constant", seed=seed),
        L.RandomZoom(zoom, fill_mode="constant", seed=seed + 1),
        L.RandomTranslation(trans, trans, fill_mode="constant", seed=seed + 2),
        L.RandomBrightness(bright, value_range=(0, 255), seed=seed + 3),
    ], name="augment")


def build_dual(backbone_fn: Any, aug: Any) -> tuple[Any, Any, Any]:
    """Stage-1 model: (original, augmented) inputs -> (original, augmented) outputs."""
    keras = _keras()
    orig = backbone_fn("original")
    augb = backbone_fn("augmented")
    augb.set_weights(orig.get_weights())  # identical sub-models, identical start
    shape = orig.inputs[0].shape[1:]
    i_o = keras.Input(shape, name="original_image")
    i_a = keras.Input(shape, name="augmented_image")
    dual = keras.Model([i_o, i_a], [orig(i_o), augb(aug(i_a))], name="dual")
    return dual, orig, augb


Weights = list[np.ndarray]


def _mix(a: Weights, b: Weights, t: float) -> Weights:
    """(1 - t) a + t b, weight by weight."""
    return [((1.0 - t) * x + t * y).astype(x.dtype) for x, y in zip(a, b, strict=True)]


def _mean(ws: list[Weights]) -> Weights:
    return [(sum(w[i].astype(np.float64) for w in ws) / len(ws)).astype(ws[0][i].dtype) for i in range(len(ws[0]))]


def reestimate_bn(model: Any, x: np.ndarray, batch: int = 500) -> Any:
    """Replace every batch-norm layer's moving mean and variance by the exact average, over the images
    ``x``, of the statistics it measures in training mode (the cumulative average of the batch means and
    variances, as SWA's BN update does). Only batch-norm state changes; dropout sits after the last
    batch-norm layer, so it cannot bias them."""
    keras = _keras()
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    if not bns or len(x) == 0:
        return model
    saved = [la.momentum for la in bns]
    try:
        for k, i in enumerate(range(0, len(x), batch)):
            for la in bns:  # moving <- moving * m + batch * (1 - m): m = k/(k+1) keeps a running mean
                la.momentum = k / (k + 1)
            model(x[i:i + batch], training=True)
    finally:
        for la, m in zip(bns, saved, strict=True):
            la.momentum = m
    return model


@dataclass
class Branches:
    """What stage 1 leaves: the two trained branches and both branches' weights after each epoch."""

    orig: Any
    augb: Any
    history: dict[str, list[float]]
    checkpoints: list[tuple[Weights, Weights]]  # (original, augmented) after epoch 1, 2, ...


def unify_weights(br: Branches, strategy: str) -> Weights:
    o, a = br.orig.get_weights(), br.augb.get_weights()
    if strategy == "original":
        return o
    if strategy == "augmented":
        return a
    if strategy in ("average", "average-raw"):
        return _mix(o, a, 0.5)
    if strategy.startswith("mix"):
        return _mix(o, a, float(strategy[3:]))
    if strategy == "swa":
        tail = br.checkpoints[-max(1, len(br.checkpoints) // 3):] or [(o, a)]
        return _mean([w for pair in tail for w in pair])
    raise LwcnnError(f"unknown unification strategy '{strategy}'; choose one of {', '.join(UNIFY)}")


def unify_branches(br: Branches, strategy: str, backbone_fn: Any, x_bn: np.ndarray | None = None) -> Any:
    """One model from the two branches; weight-space strategies get their batch-norm statistics
    re-estimated on ``x_bn`` (training images) when it is given."""
    m = backbone_fn("unified")
    m.set_weights(unify_weights(br, strategy))
    if strategy not in ("original", "augmented", "average-raw") and x_bn is not None:
        reestimate_bn(m, x_bn)
    return m


def parse_schedule(text: str) -> tuple[tuple[int, int, float], ...]:
    try:
        steps = []
        for part in text.split(","):
            g, e, lr = part.strip().split(":")
            steps.append((int(g), int(e), float(lr)))
        if not steps or any(g < 1 or e < 0 or lr <= 0 for g, e, lr in steps):
            raise ValueError
        return tuple(steps)
    except ValueError:
        raise LwcnnError(f"--schedule '{text}' is not a list of groups:epochs:lr steps, "
                         "e.g. 1:2:1e-3,1:2:5e-4") from None


def unfreeze_plan(n_groups: int, schedule: tuple[tuple[int, int, float], ...]) -> list[list[bool]]:
    """Which groups are trainable at each step: the last groups first, one (or more) more per step."""
    plan, k = [], 0
    for more, _e, _lr in schedule:
        k = min(n_groups, k + more)
        plan.append([i >= n_groups - k for i in range(n_groups)])
    return plan


def _compile(model: Any, lr: float, n_outputs: int = 1) -> None:
    keras = _keras()
    loss = ["sparse_categorical_crossentropy"] * n_outputs if n_outputs > 1 else "sparse_categorical_crossentropy"
    metrics = [["accuracy"]] * n_outputs if n_outputs > 1 else ["accuracy"]
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics)


def _hist(h: Any) -> dict[str, list[float]]:
    return {k: [float(v) for v in vs] for k, vs in h.history.items()}


@dataclass(frozen=True)
class Split:
    """Training images minus the last 5,000 (validation), and the test set."""

    x_tr: np.ndarray
    y_tr: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_te: np.ndarray
    y_te: np.ndarray

    @staticmethod
    def of(ds: datasets.Dataset, quick: bool = False, train_images: int | None = None) -> Split:
        s = Split(ds.x_train[:-5000], ds.y_train[:-5000], ds.x_train[-5000:], ds.y_train[-5000:], ds.x_test, ds.y_test)
        if train_images:  # the first N training images (a model search's cheaper trials); validation unchanged
            s = Split(s.x_tr[:train_images], s.y_tr[:train_images], s.x_val, s.y_val, s.x_te, s.y_te)
        if quick:
            s = Split(s.x_tr[:512], s.y_tr[:512], s.x_val[:256], s.y_val[:256], s.x_te[:256], s.y_te[:256])
        return s


def configure_threads(dual: bool = True) -> None:
    """TensorFlow set up for training speed, before it starts: oneDNN's CPU kernels on (the compiler keeps
    them off elsewhere; the int8 models it writes are the same bytes either way, checked on the shipped
    models), and thread pools for the dual model, whose two branches are independent: two inter-op
    threads run them side by side, each with half the cores for its own ops. Profiled on this 2-core
    machine, a stage-1 epoch of lw14kv at batch 512 on 55,000 images: 20-22 s with oneDNN, 1 intra-op
    and 2 inter-op threads; 42 s (and up to 83 s) without oneDNN, whatever the pools; 21-42 s with
    oneDNN and TensorFlow's default pools (2 and 2, which oversubscribe two cores). A user's own
    TF_ENABLE_ONEDNN_OPTS wins; the pools are left alone when a search or ablation worker has sized them
    (LWCNN_TRIAL_THREADS) or TensorFlow has already started in this process. One model (``dual=False``,
    the plain methods): every core for its ops, one inter-op thread."""
    if "tensorflow" not in sys.modules:  # only a process whose TensorFlow starts here (not a test session's)
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if os.environ.get("LWCNN_TRIAL_THREADS"):
        return
    _keras()
    import tensorflow as tf

    cores = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // 2) if dual else cores)
        tf.config.threading.set_inter_op_parallelism_threads(2 if dual else 1)
    except RuntimeError:  # the runtime is already initialized in this process: keep its pools
        pass


def seed_everything(seed: int) -> None:
    keras = _keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF
        pass


def _cosine_adam(lr: float, epochs: int, n: int, batch: int) -> Any:
    keras = _keras()
    steps = max(1, int(np.ceil(n / batch)))
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps),
                                                                        alpha=0.02))


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Accuracy (argmax against the labels, as Keras's accuracy metric), called eagerly in batches: no
    compile and no traced function per call (a training run evaluates a dozen models once each)."""
    hits = 0
    for i in range(0, len(x), batch):
        p = np.asarray(model(x[i:i + batch], training=False))
        hits += int(np.sum(np.argmax(p, 1) == y[i:i + batch]))
    return hits / max(1, len(x))


def stage1(split: Split, backbone_fn: Any, recipe: Recipe, epochs: int, batch: int, seed: int, verbose: int,
           backup: Path | None = None) -> Branches:
    """Train the dual-input-output model; return its two branches, the history and per-epoch weights.
    With ``recipe.sync_every`` N, both branches are set to their mean after every N epochs (averaging
    earlier checkpoints of the two branches, so that they stay close enough for their final mean to be
    a good model; each branch keeps its own optimizer state)."""
    keras = _keras()
    dual, orig, augb = build_dual(backbone_fn, augmenter(recipe.aug, seed))
    dual.compile(optimizer=_cosine_adam(recipe.lr, epochs, len(split.x_tr), batch),
                 loss=["sparse_categorical_crossentropy"] * 2, metrics=[["accuracy"], ["accuracy"]])
    ckpts: list[tuple[Weights, Weights]] = []

    def sync(epoch: int, _logs: Any) -> None:  # local SGD with two workers, one per kind of image
        if recipe.sync_every and (epoch + 1) % recipe.sync_every == 0:
            w = _mix(orig.get_weights(), augb.get_weights(), 0.5)
            orig.set_weights(w)
            augb.set_weights(w)

    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda _e, _l: ckpts.append((orig.get_weights(),
                                                                                    augb.get_weights())))
    callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=sync), keep]
    if backup is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup)))
    h = dual.fit([split.x_tr, split.x_tr], [split.y_tr, split.y_tr], batch_size=batch, epochs=epochs,
                 callbacks=callbacks, validation_data=([split.x_val, split.x_val], [split.y_val, split.y_val]),
                 verbose=verbose, shuffle=True)
    return Branches(orig, augb, _hist(h), ckpts)


def bn_images(split: Split, n: int = BN_IMAGES) -> np.ndarray:
    return split.x_tr[:n]


def select_unified(br: Branches, strategy: str, backbone_fn: Any,
                   split: Split) -> tuple[Any, str, dict[str, float]]:
    """Unify the branches; with 'best', the strategy with the highest validation accuracy (every
    strategy is scored on the validation split either way, for the model card)."""
    xb = bn_images(split)
    candidates = {s: evaluate(unify_branches(br, s, backbone_fn, xb), split.x_val, split.y_val) for s in STRATEGIES}
    chosen = max(candidates, key=lambda k: candidates[k]) if strategy == "best" else strategy
    return unify_branches(br, chosen, backbone_fn, xb), chosen, candidates


def stage2(model: Any, split: Split, sched: tuple[tuple[int, int, float], ...], batch: int, verbose: int,
           say: Any, augment: Any = None) -> tuple[list[dict[str, Any]], int, float]:
    """Progressive unfreezing; keeps the weights of the best validation step (0 = unchanged).
    With ``augment`` (an augmentation model), fine-tuning sees augmented images."""
    keras = _keras()
    net = keras.Sequential([keras.Input(model.inputs[0].shape[1:]), augment, model]) if augment is not None else model
    groups = layer_groups(model)
    plan = unfreeze_plan(len(groups), sched)
    best_val = evaluate(model, split.x_val, split.y_val)
    best_weights, best_step = model.get_weights(), 0
    h2: list[dict[str, Any]] = []
    for step, ((_more, ep, lr), trainable) in enumerate(zip(sched, plan, strict=True)):
        for grp, flag in zip(groups, trainable, strict=True):
            for layer in grp:
                layer.trainable = flag
        names = [grp[0].name.split("_")[0] for grp, f in zip(groups, trainable, strict=True) if f]
        say(f"stage 2 step {step + 1}/{len(sched)}: trainable groups {names}, {ep} epochs at lr {lr:g}")
        _compile(net, lr)
        if ep:
            h = net.fit(split.x_tr, split.y_tr, batch_size=batch, epochs=ep,
                          validation_data=(split.x_val, split.y_val), verbose=verbose)
            h2.append({"step": step + 1, "trainable": names, "lr": lr, **_hist(h)})
            val = float(h.history["val_accuracy"][-1])
            if val > best_val:
                best_val, best_weights, best_step = val, model.get_weights(), step + 1
    model.set_weights(best_weights)
    for layer in model.layers:
        layer.trainable = True
    say(f"stage 2: keeping the weights after step {best_step} (validation accuracy {best_val:.4f})")
    return h2, best_step, best_val


def train_plain(split: Split, backbone_fn: Any, recipe: Recipe, epochs: int, batch: int, seed: int, verbose: int,
                augment: bool, backup: Path | None = None) -> tuple[Any, dict[str, list[float]]]:
    """One model (methods plain and plain+aug): the recipe's learning rate on a cosine schedule for
    ``epochs`` epochs, on stage 1's augmented images or the original ones. Returns it and its history."""
    keras = _keras()
    model = backbone_fn("plain")
    net = keras.Sequential([keras.Input(model.inputs[0].shape[1:]), augmenter(recipe.aug, seed), model]) \
        if augment else model
    net.compile(optimizer=_cosine_adam(recipe.lr, epochs, len(split.x_tr), batch),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [] if backup is None else [keras.callbacks.BackupAndRestore(str(backup))]
    h = net.fit(split.x_tr, split.y_tr, batch_size=batch, epochs=epochs, validation_data=(split.x_val, split.y_val),
                verbose=verbose, shuffle=True, callbacks=callbacks)
    return model, _hist(h)


def train(dataset: str, *, out: Path | None = None, seed: int = 0, quick: bool = False, unify: str = "best",
          epochs: int | None = None, schedule: str | None = None, console: Any = None,
          arch: str | None = None, recipe: str | Recipe = "default",
          train_images: int | None = None, verbose: int | None = None,
          sync_every: int | None = None, method: str | None = None, batch_norm: str = "fused") -> dict[str, Any]:
    """Train with the recipe's method (or ``method``: METHODS); save the .keras, its model card (JSON,
    Markdown) and training curves (PNG). ``recipe="shipped"`` trains with the recipe of the dataset's
    shipped model instead of the default; a ``Recipe`` is used as it is (the model search's trials).
    ``epochs``: stage 1's epochs for two-stage, all the epochs for the plain methods. ``batch_norm``:
    fused (TensorFlow's fused kernel in training, fused_batch_norm) or keras (Keras's own ops, slower;
    the same arithmetic, for comparison)."""
    datasets.check_name(dataset)
    if unify not in UNIFY:
        raise LwcnnError(f"unknown unification strategy '{unify}'; choose one of {', '.join(UNIFY)}")
    if method is not None and method not in METHODS:
        raise LwcnnError(f"unknown training method '{method}'; choose one of {', '.join(METHODS)}")
    if batch_norm not in ("fused", "keras"):
        raise LwcnnError(f"unknown batch norm '{batch_norm}'; choose fused or keras")
    if arch is not None:
        parse_arch(arch)
    out = Path(out or f"{dataset}.keras")
    if out.suffix != ".keras":
        raise LwcnnError(f"--out {out} must end in .keras")
    from lwcnn_mcu import util

    util.check_writable_dir(out.parent if str(out.parent) else Path("."))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LwcnnError(f"--out {out}: its folder cannot be created ({exc.strerror}); choose another --out") from None
    rec = recipe if isinstance(recipe, Recipe) else recipe_for(dataset, recipe)
    if sync_every is not None:
        if sync_every < 0:
            raise LwcnnError(f"--sync-every must be 0 (independent branches) or a number of epochs (got {sync_every})")
        rec = replace(rec, sync_every=sync_every)
    method = method or rec.method
    if epochs is not None and epochs < 1:
        raise LwcnnError(f"--epochs must be at least 1 (got {epochs})")
    configure_threads(dual=method == "two-stage")
    sched = parse_schedule(schedule) if schedule else rec.schedule
    e1 = epochs if epochs is not None else rec.stage1_epochs
    seed_everything(seed)
    split = Split.of(datasets.load(dataset), quick, train_images)
    a, batch = arch or rec.arch, rec.batch
    if quick:
        e1 = epochs if epochs is not None else 1
        a, batch = arch or "tiny", 64
        if schedule is None:
            sched = tuple((g, min(e, 1), lr) for g, e, lr in sched[:2])
    shape = tuple(split.x_tr.shape[1:])
    say = console.print if console is not None else print
    verbose = (0 if quick else 2) if verbose is None else verbose
    t0 = time.time()

    def backbone_fn(name: str) -> Any:
        return build_backbone(a, shape, name=name, fused_bn=batch_norm == "fused")

    recipe_info = {"name": recipe if isinstance(recipe, str) else "custom", "batch": batch, "lr": rec.lr,
                   "augmentation": list(rec.aug), "sync_every": rec.sync_every, "batch_norm": batch_norm}
    if method != "two-stage":
        n = epochs if epochs is not None else compute_epochs(rec, e1, sched)
        say(f"{method}: one model ({a}, {backbone_fn('probe').count_params():,} params), {n} epochs on "
            f"{'augmented' if method == 'plain+aug' else 'original'} images")
        model, h = train_plain(split, backbone_fn, rec, n, batch, seed, verbose, method == "plain+aug",
                               None if quick else out.with_suffix(".train-backup"))
        t1 = time.time()
        model = plain_copy(model, a)
        test_acc = evaluate(model, split.x_te, split.y_te)
        model.save(out)
        times = {"train_s": round(t1 - t0, 1), "float_test_s": round(time.time() - t1, 1)}
        card = _model_card(dataset, out, model, a, seed, quick, test_acc, times, split.x_tr, split.x_te,
                           split.y_te, {"method": method, "epochs": n, "history": {"plain": h},
                                        "val_accuracy": h["val_accuracy"][-1], "recipe": recipe_info}, t0=t0)
        say(f"saved {out}: float test accuracy {test_acc:.4f}, int8 (generated C) {card['int8_test_accuracy']:.4f}")
        return card

    say(f"stage 1: dual-input-output model ({a}, 2 x {backbone_fn('probe').count_params():,} params), {e1} epochs")
    br = stage1(split, backbone_fn, rec, e1, batch, seed, verbose, None if quick else out.with_suffix(".stage1-backup"))
    h1 = br.history
    t1 = time.time()
    model, chosen, candidates = select_unified(br, unify, backbone_fn, split)
    say("unification (validation accuracy): " + ", ".join(f"{k} {v:.4f}" for k, v in candidates.items())
        + f" -> {chosen}")
    tu = time.time()
    h2, best_step, best_val = stage2(model, split, sched, batch, verbose, say,
                                     augmenter(rec.aug, seed + 10) if rec.stage2_augment else None)
    t2 = time.time()
    model = plain_copy(model, a)
    test_acc = evaluate(model, split.x_te, split.y_te)
    stage1_test = {s: evaluate(unify_branches(br, s, backbone_fn, bn_images(split)), split.x_te, split.y_te)
                   for s in STRATEGIES}
    model.save(out)
    times = {"stage1_s": round(t1 - t0, 1), "unify_s": round(tu - t1, 1), "stage2_s": round(t2 - tu, 1),
             "float_test_s": round(time.time() - t2, 1)}
    card = _model_card(dataset, out, model, a, seed, quick, test_acc, times, split.x_tr, split.x_te, split.y_te,
                       {"method": method, "stage1_epochs": e1,
                        "stage2_schedule": [{"unfreeze_groups": g, "epochs": e, "lr": lr} for g, e, lr in sched],
                        "unification": chosen, "unification_val_accuracy": candidates,
                        "stage1_test_accuracy": stage1_test, "history": {"stage1": h1, "stage2": h2},
                        "stage2_kept_step": best_step, "stage2_val_accuracy": best_val, "recipe": recipe_info},
                       t0=t0)
    say(f"saved {out}: float test accuracy {test_acc:.4f}, int8 (generated C) {card['int8_test_accuracy']:.4f}")
    return card


def _model_card(dataset: str, out: Path, model: Any, arch: str, seed: int, quick: bool, test_acc: float,
                times: dict[str, float], x_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
                training: dict[str, Any], t0: float | None = None) -> dict[str, Any]:
    """Quantize, compile and run the int8 C on the test set; write the card (JSON, Markdown), the
    .tflite and the curves. ``training``: the method's own keys (method, epochs or stages, history)."""
    from lwcnn_mcu import compiler, hostrun, models, reference

    tc = time.time()

    # the same calibration `lwcnn-mcu compile MODEL --dataset D` uses, so the card matches what users get
    if quick:
        calib = x_tr[np.random.default_rng(seed).choice(len(x_tr), min(500, len(x_tr)), replace=False)]
        drawn = {"dataset": dataset, "drawn_from": "the quick run's training split", "seed": seed}
    else:
        calib = datasets.calibration_set(dataset)
        drawn = {"dataset": dataset, "drawn_from": "datasets.calibration_set", "seed": 0}
    c = compiler.compile_model(str(out), calib=calib)
    prov = models.provenance(out, c.tflite, {**drawn, "images": int(len(calib)),
                                             "sha256": datasets.array_sha256(calib)})
    host = hostrun.build_host(c.gen.files)
    xq = reference.quantize_input(x_te, c.graph.input.scale, c.graph.input.zero_point)
    int8_acc = float(np.mean(np.argmax(host.run(xq), 1) == y_te))
    times = {**times, "int8_card_s": round(time.time() - tc, 1)}  # quantize, compile, int8 C on the test set
    if t0 is not None:
        times["total_s"] = round(time.time() - t0, 1)
    card = {
        "name": out.stem, "dataset": dataset, "architecture": arch, "seed": seed, "quick": quick,
        "params": int(model.count_params()), "param_budget": PARAM_BUDGET[dataset],
        "int8_params": c.report["params"], "macs": c.report["macs"], "weights_bytes": c.report["weights_bytes"],
        "arena_bytes": c.report["arena_bytes"], "float_test_accuracy": test_acc, "int8_test_accuracy": int8_acc,
        "test_samples": int(len(y_te)), **training, "training_time": times, "provenance": prov,
    }
    out.with_suffix(".tflite").write_bytes(c.tflite)  # the int8 model the card's figures are for
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    out.with_suffix(".md").write_text(_card_md(card))
    _plot(card, out.with_suffix(".png"))
    return card


def _card_md(c: dict[str, Any]) -> str:
    lines = [f"# Model card: {c['name']}", "",
             f"- dataset: {c['dataset']}; architecture: {c['architecture']}; seed {c['seed']}",
             f"- parameters: {c['params']:,} (Keras, budget {c['param_budget']:,}); {c['int8_params']:,} after "
             f"batch-norm folding; MACs {c['macs']:,}",
             f"- flash (weights) {c['weights_bytes']:,} B; RAM (arena) {c['arena_bytes']:,} B",
             f"- test accuracy: float {c['float_test_accuracy']:.4f}, int8 generated C {c['int8_test_accuracy']:.4f} "
             f"({c['test_samples']} images)"]
    if c.get("method", "two-stage") == "two-stage":
        lines += [f"- stage 1: {c['stage1_epochs']} epochs; unification '{c['unification']}' (validation: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in c["unification_val_accuracy"].items()) + ")",
                  "- stage 2 schedule: " + ", ".join(f"+{s['unfreeze_groups']} group(s) x {s['epochs']} ep @ "
                                                      f"{s['lr']:g}" for s in c["stage2_schedule"])]
    else:
        rec = c["recipe"]
        images = "augmented" if c["method"] == "plain+aug" else "original"
        lines.append(f"- method {c['method']}: one model, {c['epochs']} epochs on the {images} images at batch "
                     f"{rec['batch']}, learning rate {rec['lr']:g} on a cosine schedule, batch norm "
                     f"{rec.get('batch_norm', 'keras')} (keras: Keras's ops; fused: TensorFlow's fused kernel)")
    times = c["training_time"]
    lines.append(f"- training time: {times['total_s']:.0f} s (" + ", ".join(
        f"{k[:-2].replace('_', ' ')} {v:.0f} s" for k, v in times.items() if k != "total_s") + ")")
    prov = c.get("provenance")
    if prov:
        cal = prov["calibration"]
        lines.append(f"- int8 model: .tflite SHA-256 {prov['tflite_sha256'][:16]}…, quantized from the .keras "
                     f"{prov['keras_sha256'][:16]}… with {cal['images']} {cal['dataset']} calibration images "
                     f"({cal['sha256'][:16]}…)")
    return "\n".join(lines + [""])


def _plot(c: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    if "plain" in c["history"]:  # one model: its validation accuracy and training loss per epoch
        h = c["history"]["plain"]
        xs = list(range(1, len(h["loss"]) + 1))
        ax[0].plot(xs, h["val_accuracy"], label=f"{c['method']} (val)")
        ax[1].plot(xs, h["loss"], label=f"{c['method']} loss")
    else:
        _plot_two_stage(c, ax)
    for a_, yl in zip(ax, ("validation accuracy", "training loss"), strict=True):
        a_.set_xlabel("epoch")
        a_.set_ylabel(yl)
        a_.legend(fontsize=7)
        a_.grid(alpha=0.3)
    fig.suptitle(f"{c['name']} ({c['dataset']}): float {c['float_test_accuracy']:.4f}, "
                 f"int8 {c['int8_test_accuracy']:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_two_stage(c: dict[str, Any], ax: Any) -> None:
    h1 = c["history"]["stage1"]
    n1 = len(next(iter(h1.values()))) if h1 else 0
    xs = list(range(1, n1 + 1))
    for key, label in (("val_original_accuracy", "stage 1 original branch (val)"),
                       ("val_augmented_accuracy", "stage 1 augmented branch (val)")):
        k = next((kk for kk in h1 if kk.endswith(key.split("val_")[1]) and kk.startswith("val_")), None)
        if k:
            ax[0].plot(xs, h1[k], label=label)
    e = n1
    for step in c["history"]["stage2"]:
        va = step.get("val_accuracy", [])
        ax[0].plot(range(e + 1, e + 1 + len(va)), va, marker=".", label=f"stage 2 step {step['step']}")
        e += len(va)
    for k in [k for k in h1 if k.endswith("loss") and not k.startswith("val_") and k != "loss"]:
        ax[1].plot(xs, h1[k], label=f"stage 1 {k}")
