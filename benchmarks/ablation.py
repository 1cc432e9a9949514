"""Ablation of the two-stage method: what each stage contributes, on one architecture and one budget of
epochs, over several seeds, on Dask (the engine the model search uses).

    .venv/bin/python benchmarks/ablation.py --dataset mnist [--arch lw14k] --epochs 12 [--stage2-epochs 4] \\
        [--seeds 3] [--seed 0] [--workers N | --scheduler tcp://HOST:8786]

Variants, each with `epochs` epochs of training in total:
  plain            one model, original images
  plain+aug        one model, augmented images (the same augmentation as stage 1)
  stage 1 only     dual-input-output model for `epochs`, then unified ('best' strategy)
  stages 1 + 2     dual model for `epochs - stage2_epochs`, then progressive unfreezing

Every (variant, seed) pair is one Dask task (a LocalCluster of one single-threaded worker per core by
default); seeds are `--seed`, `--seed`+1, ... Each finished run is appended to `<stem>.runs.jsonl` at
once, so a stopped run continues where it was when started again with the same options. Per variant:
the mean and sample standard deviation of the float test accuracy over the seeds, and against `plain`,
on the same seeds, a paired test: the mean difference, Student's paired t with its two-sided p-value,
and the exact sign-flip (permutation) p-value, which with n seeds cannot go below 2/2^n.

Writes benchmarks/results/ablation-<dataset>-<arch>[-s<seeds>x<epochs>].json and .md (machine, commit,
date included). Float test accuracy is what the table compares; the int8 C accuracy of the winner is in
the model card of a full `lwcnn-mcu train` run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lwcnn_mcu import bench, datasets, training  # noqa: E402

VARIANTS = ("plain", "plain+aug", "stage 1 only", "stages 1 + 2")


def run_variant(dataset: str, arch: str | None, variant: str, seed: int, epochs: int, stage2_epochs: int,
                quick: bool, train_images: int | None = None) -> dict[str, Any]:
    """One variant with one seed (a Dask task)."""
    from lwcnn_mcu import search

    search._limit_threads()
    recipe = training.RECIPES[dataset]
    split = training.Split.of(datasets.load(dataset), quick, train_images)
    arch = "tiny" if quick else (arch or recipe.arch)
    batch = 64 if quick else recipe.batch
    shape = tuple(split.x_tr.shape[1:])
    e, e2 = epochs, min(stage2_epochs, epochs - 1)
    verbose = 0

    def backbone_fn(name: str) -> Any:
        return training.build_backbone(arch, shape, name=name)

    training.seed_everything(seed)
    t0 = time.time()
    note = ""
    if variant in ("plain", "plain+aug"):
        model = training.train_plain(split, backbone_fn, recipe, e, batch, seed, verbose, variant == "plain+aug")
    elif variant == "stage 1 only":
        orig, augb, _ = training.stage1(split, backbone_fn, recipe, e, batch, seed, verbose)
        model, chosen, _ = training.select_unified(orig, augb, "best", backbone_fn, split)
        note = f"unified: {chosen}"
    else:
        # stage 2 gets e2 epochs spread over its unfreezing steps (at least one epoch each)
        n_groups = len(training.layer_groups(backbone_fn("probe")))
        steps = max(1, min(e2, n_groups))
        lrs = [2e-4, 1e-4, 6e-5, 4e-5, 2e-5, 1e-5]
        sched = tuple((1, e2 // steps + (1 if i < e2 % steps else 0), lrs[min(i, len(lrs) - 1)])
                      for i in range(steps))
        orig, augb, _ = training.stage1(split, backbone_fn, recipe, e - e2, batch, seed, verbose)
        model, chosen, _ = training.select_unified(orig, augb, "best", backbone_fn, split)
        _, kept, _ = training.stage2(model, split, sched, batch, verbose, lambda *_a, **_k: None,
                                     training.augmenter(recipe.aug, seed + 10) if recipe.stage2_augment else None)
        note = f"{e - e2} + {e2} epochs; unified: {chosen}; stage 2 kept step {kept}"
    return {"variant": variant, "seed": seed, "test_accuracy": training.evaluate(model, split.x_te, split.y_te),
            "val_accuracy": training.evaluate(model, split.x_val, split.y_val), "epochs": e,
            "seconds": round(time.time() - t0, 1), "note": note, "architecture": arch,
            "params": int(backbone_fn("p").count_params())}


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value of Student's t with integer df (Abramowitz & Stegun 26.7.3-4: a finite series)."""
    if not math.isfinite(t):
        return 0.0
    th = math.atan(abs(t) / math.sqrt(df))
    c2, s = math.cos(th) ** 2, math.sin(th)
    if df % 2 == 1:
        term, acc = math.cos(th), 0.0
        if df > 1:
            acc = term
            for k in range(1, (df - 3) // 2 + 1):
                term *= c2 * (2 * k) / (2 * k + 1)
                acc += term
        a = 2 / math.pi * (th + s * acc)
    else:
        term, acc = 1.0, 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * k - 1) / (2 * k)
            acc += term
        a = s * acc
    return max(0.0, min(1.0, 1.0 - a))


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Paired comparison of a against b (same seeds): mean difference, t, p (t) and exact sign-flip p."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    out: dict[str, Any] = {"n": n, "mean_diff": mean, "t": None, "p_t": None}
    if n >= 2:
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        if sd > 0:
            t = mean / (sd / math.sqrt(n))
            out.update(t=t, p_t=t_two_sided_p(t, n - 1))
        elif mean != 0:
            out.update(t=math.copysign(math.inf, mean), p_t=0.0)
    # exact two-sided sign-flip test: how many of the 2^n sign patterns give |mean| at least as large
    obs = abs(mean) - 1e-12
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) / n >= obs
               for signs in itertools.product((1, -1), repeat=n))
    out["p_sign_flip"] = hits / 2 ** n
    return out


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    base = {r["seed"]: r["test_accuracy"] for r in runs if r["variant"] == "plain"}
    for v in VARIANTS:
        rs = sorted((r for r in runs if r["variant"] == v), key=lambda r: r["seed"])
        if not rs:
            continue
        acc = [r["test_accuracy"] for r in rs]
        n = len(acc)
        mean = sum(acc) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in acc) / (n - 1)) if n > 1 else None
        val = [r["val_accuracy"] for r in rs]
        row = {"variant": v, "seeds": [r["seed"] for r in rs], "test_accuracy": mean, "test_accuracy_sd": sd,
               "test_accuracies": acc, "val_accuracy": sum(val) / n, "seconds": sum(r["seconds"] for r in rs) / n,
               "epochs": rs[0]["epochs"], "note": "; ".join(sorted({r["note"] for r in rs if r["note"]}))}
        common = [r["seed"] for r in rs if r["seed"] in base]
        if v != "plain" and common:
            row["vs_plain"] = paired([r["test_accuracy"] for r in rs if r["seed"] in base], [base[s] for s in common])
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    seeds = result["seeds"]
    n = f", first {result['train_images']:,} training images" if result.get("train_images") else ""
    md = [f"Ablation on {result['dataset']} ({result['architecture']}, {result['params']:,} params, "
          f"{result['epochs']} epochs each{n}, {len(seeds)} seed(s) {seeds}; commit {result['commit']}, "
          f"{result['date']})",
          "", "| variant | test accuracy (mean ± sd) | per seed | validation (mean) | vs plain: mean diff, "
              "paired t p, sign-flip p | time per run (s) | note |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        sd = f" ± {100 * r['test_accuracy_sd']:.2f}" if r["test_accuracy_sd"] is not None else ""
        vp = r.get("vs_plain")
        cmp = "-" if vp is None else (f"{100 * vp['mean_diff']:+.2f} pts, "
                                      + ("-" if vp["p_t"] is None else f"p={vp['p_t']:.2f}")
                                      + f", p={vp['p_sign_flip']:.2f}")
        md.append(f"| {r['variant']} | {100 * r['test_accuracy']:.2f}%{sd} | "
                  + " / ".join(f"{100 * a:.2f}" for a in r["test_accuracies"])
                  + f" | {100 * r['val_accuracy']:.2f}% | {cmp} | {r['seconds']:.0f} | {r['note']} |")
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist", choices=datasets.DATASETS)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--stage2-epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=1, help="how many seeds per variant")
    ap.add_argument("--arch", default=None, help="architecture (default: the dataset's recipe)")
    ap.add_argument("--train-images", type=int, default=None,
                    help="train on the first N training images (default: all; validation and test unchanged)")
    ap.add_argument("--quick", action="store_true", help="tiny subset and architecture (a smoke test)")
    ap.add_argument("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
    ap.add_argument("--scheduler", default=None, help="an existing Dask scheduler, tcp://HOST:8786")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.seeds < 1 or args.epochs < 2:
        ap.error("--seeds must be at least 1 and --epochs at least 2")

    from lwcnn_mcu import search

    arch = "tiny" if args.quick else (args.arch or training.RECIPES[args.dataset].arch)
    seeds = list(range(args.seed, args.seed + args.seeds))
    stem = f"ablation-{args.dataset}-{arch}" + (f"-s{args.seeds}x{args.epochs}" if args.seeds > 1 else "") \
        + (f"-n{args.train_images}" if args.train_images else "") + ("-quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"{stem}.runs.jsonl"
    key = {"dataset": args.dataset, "arch": arch, "epochs": args.epochs, "stage2_epochs": args.stage2_epochs,
           "train_images": args.train_images}
    runs = []
    if log.is_file():  # continue a stopped run: keep what finished with the same settings
        for line in log.read_text().splitlines():
            r = json.loads(line)
            if all(r.get("key", {}).get(k) == v for k, v in key.items()) and r["seed"] in seeds:
                runs.append(r)
    todo = [(v, s) for s in seeds for v in VARIANTS if not any(r["variant"] == v and r["seed"] == s for r in runs)]
    print(f"{len(runs)} run(s) already done, {len(todo)} to go", flush=True)
    if todo:
        from distributed import as_completed

        cl = search.start_cluster(args.scheduler, None if args.scheduler else (args.workers or min(
            len(todo), search.os.cpu_count() or 1)))
        try:
            futs = [cl.client.submit(run_variant, args.dataset, args.arch, v, s, args.epochs, args.stage2_epochs,
                                     args.quick, args.train_images, pure=False) for v, s in todo]
            for f in as_completed(futs):
                r = f.result()
                r["key"] = key
                runs.append(r)
                with log.open("a") as fh:
                    fh.write(json.dumps(r) + "\n")
                print(f"{r['variant']} seed {r['seed']}: test {r['test_accuracy']:.4f} ({r['seconds']:.0f} s)",
                      flush=True)
        finally:
            cl.close()
    result = {"dataset": args.dataset, "architecture": arch, "params": runs[0]["params"], "epochs": args.epochs,
              "stage2_epochs": min(args.stage2_epochs, args.epochs - 1), "seed": args.seed, "seeds": seeds,
              "train_images": args.train_images,
              "quick": args.quick, "rows": summarize(runs), "runs": sorted(runs, key=lambda r: (r["seed"],
                                                                                            r["variant"])),
              "machine": bench.machine(), "commit": bench._git_commit(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
