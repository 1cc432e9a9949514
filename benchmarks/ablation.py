"""Ablation of the two-stage method: what each stage contributes, on one architecture and one
budget of epochs.

    .venv/bin/python benchmarks/ablation.py --dataset mnist [--arch lw14k] --epochs 12 [--stage2-epochs 4] [--seed 0]

Variants, each with `epochs` epochs of training in total:
  plain            one model, original images
  plain+aug        one model, augmented images (the same augmentation as stage 1)
  stage 1 only     dual-input-output model for `epochs`, then unified ('best' strategy)
  stages 1 + 2     dual model for `epochs - stage2_epochs`, then progressive unfreezing

Writes benchmarks/results/ablation-<dataset>-<arch>.json and .md (machine, commit, date included).
Float test accuracy is what the table compares; the int8 C accuracy of the winner is in the
model card of a full `lwcnn-mcu train` run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lwcnn_mcu import bench, datasets, training  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist", choices=datasets.DATASETS)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--stage2-epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", default=None, help="architecture (default: the dataset's recipe)")
    ap.add_argument("--quick", action="store_true", help="tiny subset and architecture (a smoke test)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    recipe = training.RECIPES[args.dataset]
    split = training.Split.of(datasets.load(args.dataset), args.quick)
    arch = "tiny" if args.quick else (args.arch or recipe.arch)
    batch = 64 if args.quick else recipe.batch
    shape = tuple(split.x_tr.shape[1:])
    e, e2 = args.epochs, min(args.stage2_epochs, args.epochs - 1)
    verbose = 0 if args.quick else 2

    def backbone_fn(name: str):  # noqa: ANN202
        return training.build_backbone(arch, shape, name=name)

    # stage 2 gets e2 epochs spread over its unfreezing steps (at least one epoch each)
    n_groups = len(training.layer_groups(backbone_fn("probe")))
    steps = max(1, min(e2, n_groups))
    lrs = [2e-4, 1e-4, 6e-5, 4e-5, 2e-5, 1e-5]
    sched = tuple((1, e2 // steps + (1 if i < e2 % steps else 0), lrs[min(i, len(lrs) - 1)]) for i in range(steps))
    rows = []

    def record(name: str, model, t0: float, note: str = "") -> None:  # noqa: ANN001
        rows.append({"variant": name, "test_accuracy": training.evaluate(model, split.x_te, split.y_te),
                     "val_accuracy": training.evaluate(model, split.x_val, split.y_val),
                     "epochs": e, "seconds": round(time.time() - t0, 1), "note": note})
        print(f"{name}: test {rows[-1]['test_accuracy']:.4f}", flush=True)

    for name, augment in (("plain", False), ("plain+aug", True)):
        training.seed_everything(args.seed)
        t0 = time.time()
        record(name, training.train_plain(split, backbone_fn, recipe, e, batch, args.seed, verbose, augment), t0)

    training.seed_everything(args.seed)
    t0 = time.time()
    orig, augb, _ = training.stage1(split, backbone_fn, recipe, e, batch, args.seed, verbose)
    model, chosen, cand = training.select_unified(orig, augb, "best", backbone_fn, split)
    record("stage 1 only", model, t0, f"unified: {chosen}")

    training.seed_everything(args.seed)
    t0 = time.time()
    orig, augb, _ = training.stage1(split, backbone_fn, recipe, e - e2, batch, args.seed, verbose)
    model, chosen, cand = training.select_unified(orig, augb, "best", backbone_fn, split)
    _, kept, _ = training.stage2(model, split, sched, batch, verbose, print,
                                 training.augmenter(recipe.aug, args.seed + 10) if recipe.stage2_augment else None)
    record("stages 1 + 2", model, t0, f"{e - e2} + {e2} epochs; unified: {chosen}; stage 2 kept step {kept}")

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"dataset": args.dataset, "architecture": arch, "params": backbone_fn("p").count_params(),
              "epochs": e, "stage2_epochs": e2, "seed": args.seed, "quick": args.quick, "rows": rows,
              "machine": bench.machine(), "commit": bench._git_commit(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    stem = f"ablation-{args.dataset}-{arch}" + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"Ablation on {args.dataset} ({arch}, {result['params']:,} params, {e} epochs each, seed {args.seed}; "
          f"commit {result['commit']}, {result['date']})", "",
          "| variant | test accuracy | validation accuracy | time (s) | note |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {r['variant']} | {r['test_accuracy']:.4f} | {r['val_accuracy']:.4f} | {r['seconds']:.0f} | {r['note']} |"
           for r in rows]
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
