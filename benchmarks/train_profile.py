"""Seconds per training epoch under each TensorFlow setting, one fresh process per setting (oneDNN and
the thread pools are fixed when TensorFlow starts):

    .venv/bin/python benchmarks/train_profile.py [--dataset mnist] [--batch 512] [--repeat 2] [--model dual|single]
        [--bn keras,fused] [--settings all|train]

Each process trains the dataset's default architecture as the dual model of stage 1 (`--model dual`)
or as one model behind the augmentation layers (`--model single`, `train --method plain+aug`): one
warm-up epoch, then one timed epoch on the full training split with validation, as `train` runs it,
and prints its seconds. `--bn` compares Keras's batch norm with the fused kernel `train` uses
(training.fused_batch_norm).
The README's "Training time" table is this command's output on the build machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # (oneDNN, intra-op threads, inter-op threads); 0 threads = TensorFlow's default
    "dual": [("0", 0, 0), ("0", 1, 2), ("1", 0, 0), ("1", 2, 1), ("1", 1, 2)],
    "single": [("1", 0, 0), ("1", 2, 1), ("1", 1, 2), ("1", 2, 2), ("1", 1, 1)],
}
TRAIN_SETTING = {"dual": ("1", 1, 2), "single": ("1", 2, 1)}  # training.configure_threads on 2 cores


def one_epoch(dataset: str, batch: int, model: str, bn: str) -> float:
    sys.path.insert(0, str(ROOT))
    from lwcnn_mcu import datasets, training

    rec = training.recipe_for(dataset)
    split = training.Split.of(datasets.load(dataset))
    training.seed_everything(0)
    shape = tuple(split.x_tr.shape[1:])
    opt = training._cosine_adam(rec.lr, 2, len(split.x_tr), batch)
    fused = bn == "fused"
    if model == "single":
        keras = training._keras()
        net = keras.Sequential([keras.Input(shape), training.augmenter(rec.aug, 0),
                                training.build_backbone(rec.arch, shape, name="plain", fused_bn=fused)])
        net.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        xs, ys, val = split.x_tr, split.y_tr, (split.x_val, split.y_val)
    else:
        net, _o, _a = training.build_dual(lambda n: training.build_backbone(rec.arch, shape, name=n, fused_bn=fused),
                                          training.augmenter(rec.aug, 0))
        net.compile(optimizer=opt, loss=["sparse_categorical_crossentropy"] * 2,
                    metrics=[["accuracy"], ["accuracy"]])
        xs, ys = [split.x_tr, split.x_tr], [split.y_tr, split.y_tr]
        val = ([split.x_val, split.x_val], [split.y_val, split.y_val])
    net.fit(xs, ys, batch_size=batch, epochs=1, validation_data=val, verbose=0)
    t = time.time()
    net.fit(xs, ys, batch_size=batch, epochs=1, validation_data=val, verbose=0)
    return time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=2, help="processes per setting")
    ap.add_argument("--model", default="dual", choices=tuple(SETTINGS), help="stage 1's dual model, or one model")
    ap.add_argument("--bn", default="keras,fused", help="batch norm: keras (Keras's ops), fused (what train uses)")
    ap.add_argument("--settings", default="all", choices=("all", "train"),
                    help="every thread setting, or only the one train uses (oneDNN on, its pools)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # inside one process: set TensorFlow up, then time
        onednn, intra, inter, bn = json.loads(args.child)
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = onednn
        from lwcnn_mcu.util import quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        print(json.dumps(one_epoch(args.dataset, args.batch, args.model, bn)))
        return
    print(f"| batch norm | oneDNN | intra-op | inter-op | seconds per epoch ({args.model} model, {args.dataset}, "
          f"batch {args.batch}) |")
    print("| --- | --- | --- | --- | --- |")
    settings = SETTINGS[args.model] if args.settings == "all" else [TRAIN_SETTING[args.model]]
    for bn in args.bn.split(","):
        for s in settings:
            secs = []
            for _ in range(args.repeat):
                r = subprocess.run([sys.executable, __file__, "--dataset", args.dataset, "--batch", str(args.batch),
                                    "--model", args.model, "--child", json.dumps([*s, bn])], capture_output=True,
                                   text=True, check=True, env={**os.environ, "LWCNN_TRIAL_THREADS": ""})
                secs.append(float(r.stdout.strip().splitlines()[-1]))
            fmt = lambda t: str(t or "default")  # noqa: E731
            print(f"| {bn} | {'on' if s[0] == '1' else 'off'} | {fmt(s[1])} | {fmt(s[2])} | "
                  + ", ".join(f"{x:.1f}" for x in secs) + " |", flush=True)


if __name__ == "__main__":
    main()
