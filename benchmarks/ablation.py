"""Ablation of the two-stage method: what each stage and each unification strategy contributes, at equal
training compute, over several seeds, on Dask (the engine the model search uses).

    .venv/bin/python benchmarks/ablation.py --dataset mnist [--recipe fast] [--seeds 3] [--seed 0] \\
        [--workers N | --scheduler tcp://HOST:8786]

The recipe (`training.RECIPES` or `FAST_RECIPES`) fixes the architecture, the batch, the learning rate,
stage 1's E1 epochs and stage 2's schedule (E2 epochs in all). Stage 1 trains two models at once, so it
costs 2 x E1 model-epochs; the whole two-stage method costs C = 2 x E1 + E2. Variants:
  plain                       one model, original images, C epochs (equal compute)
  plain+aug                   one model, augmented images, C epochs (equal compute)
  stage 1 (S)                 the dual model's two branches unified with strategy S (training.STRATEGIES:
                              original, augmented, average, mix0.25, mix0.75, swa, average-raw), 2 x E1
  stage 1 (best)              the strategy with the best validation accuracy (what `train` keeps)
  stages 1 + 2                stage 1 (best), then stage 2's progressive unfreezing: C
  stage 1 synced (best)       stage 1 with both branches set to their mean after every epoch
                              (`train --sync-every 1`), unified with the best strategy: 2 x E1
  stages 1 + 2, synced        that, then stage 2: C
One seed's stage-1 variants and "stages 1 + 2" come from one task (one stage-1 run, every unification
scored on it), so they are paired with each other as well as with plain.

Every (task, seed) pair is one Dask task (a LocalCluster of one single-threaded worker per core by
default); seeds are `--seed`, `--seed`+1, ... Each finished task is appended to `<stem>.runs.jsonl` at
once, so a stopped run continues where it was when started again with the same options. Per variant:
the mean and sample standard deviation of the float test accuracy over the seeds, and against `plain`,
on the same seeds, a paired test: the mean difference, Student's paired t with its two-sided p-value,
and the exact sign-flip (permutation) p-value, which with n seeds cannot go below 2/2^n.

Writes benchmarks/results/ablation-<dataset>-<arch>-<recipe>[-s<seeds>].json and .md (machine, commit,
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

TASKS = ("plain", "plain+aug", "two-stage", "two-stage synced")
VARIANTS = ("plain", "plain+aug", *(f"stage 1 ({s})" for s in training.STRATEGIES), "stage 1 (best)",
            "stages 1 + 2", "stage 1 synced (best)", "stages 1 + 2, synced")


def recipe_of(dataset: str, name: str, quick: bool) -> training.Recipe:
    rec = training.recipe_for(dataset, name)
    if quick:  # a smoke test: the tiny architecture, two epochs, two one-epoch stage-2 steps
        from dataclasses import replace

        rec = replace(rec, arch="tiny", stage1_epochs=2, batch=64,
                      schedule=tuple((g, 1, lr) for g, _e, lr in rec.schedule[:2]))
    return rec


def run_task(dataset: str, recipe_name: str, task: str, seed: int, quick: bool) -> list[dict[str, Any]]:
    """One task with one seed (a Dask task): one row for plain/plain+aug, every stage-1 row and
    stages 1 + 2 for two-stage."""
    from lwcnn_mcu import search

    search._limit_threads()
    rec = recipe_of(dataset, recipe_name, quick)
    split = training.Split.of(datasets.load(dataset), quick)
    shape = tuple(split.x_tr.shape[1:])
    c = training.compute_epochs(rec)

    def backbone_fn(name: str) -> Any:
        return training.build_backbone(rec.arch, shape, name=name)

    def row(variant: str, model: Any, seconds: float, epochs: str, note: str = "") -> dict[str, Any]:
        return {"variant": variant, "seed": seed, "test_accuracy": training.evaluate(model, split.x_te, split.y_te),
                "val_accuracy": training.evaluate(model, split.x_val, split.y_val), "epochs": epochs,
                "seconds": round(seconds, 1), "note": note, "architecture": rec.arch,
                "params": int(backbone_fn("p").count_params())}

    training.seed_everything(seed)
    t0 = time.time()
    if task in ("plain", "plain+aug"):
        model, _h = training.train_plain(split, backbone_fn, rec, c, rec.batch, seed, 0, task == "plain+aug")
        return [row(task, model, time.time() - t0, f"{c}")]
    synced = task == "two-stage synced"
    if synced:
        from dataclasses import replace

        rec = replace(rec, sync_every=1)
    br = training.stage1(split, backbone_fn, rec, rec.stage1_epochs, rec.batch, seed, 0)
    t1 = time.time()
    model, chosen, _val = training.select_unified(br, "best", backbone_fn, split)
    rows = [] if synced else [
        row(f"stage 1 ({s})", training.unify_branches(br, s, backbone_fn, training.bn_images(split)), t1 - t0,
            f"2 x {rec.stage1_epochs}") for s in training.STRATEGIES]
    rows.append(row("stage 1 synced (best)" if synced else "stage 1 (best)", model, t1 - t0,
                    f"2 x {rec.stage1_epochs}", f"unified: {chosen}"))
    _h, kept, _v = training.stage2(model, split, rec.schedule, rec.batch, 0, lambda *_a, **_k: None,
                                   training.augmenter(rec.aug, seed + 10) if rec.stage2_augment else None)
    e2 = sum(e for _g, e, _lr in rec.schedule)
    rows.append(row("stages 1 + 2, synced" if synced else "stages 1 + 2", model, time.time() - t0,
                    f"2 x {rec.stage1_epochs} + {e2}", f"unified: {chosen}; stage 2 kept step {kept}"))
    for r in rows:
        r["task"] = task
    return rows


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


def _notes(rs: list[dict[str, Any]]) -> str:
    """Notes with how many seeds each: 'unified: average (2 seeds); unified: swa (1 seed)'."""
    counts: dict[str, int] = {}
    for r in rs:
        for part in filter(None, r["note"].split("; ")):
            counts[part] = counts.get(part, 0) + 1
    if len(rs) == 1:
        return "; ".join(counts)
    return "; ".join(f"{k} ({v} seed{'s' if v > 1 else ''})" for k, v in counts.items())


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
               "epochs": rs[0]["epochs"], "note": _notes(rs)}
        common = [r["seed"] for r in rs if r["seed"] in base]
        if v != "plain" and common:
            row["vs_plain"] = paired([r["test_accuracy"] for r in rs if r["seed"] in base], [base[s] for s in common])
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    seeds = result["seeds"]
    n = ", quick: tiny architecture on 512 images" if result.get("quick") else ""
    md = [f"Ablation on {result['dataset']} ({result['architecture']}, {result['params']:,} params, recipe "
          f"'{result['recipe']}': batch {result['batch']}, stage 1 {result['stage1_epochs']} epochs, stage 2 "
          f"{result['stage2_epochs']} epochs, compute {result['compute_epochs']} model-epochs{n}; "
          f"{len(seeds)} seed(s) {seeds}; commit {result['commit']}, {result['date']})",
          "", "| variant | model-epochs | test accuracy (mean ± sd) | per seed | validation (mean) | vs plain: "
              "mean diff, paired t p, sign-flip p | time per run (s) | note |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        sd = f" ± {100 * r['test_accuracy_sd']:.2f}" if r["test_accuracy_sd"] is not None else ""
        vp = r.get("vs_plain")
        cmp = "-" if vp is None else (f"{100 * vp['mean_diff']:+.2f} pts, "
                                      + ("-" if vp["p_t"] is None else f"p={vp['p_t']:.2f}")
                                      + f", p={vp['p_sign_flip']:.2f}")
        md.append(f"| {r['variant']} | {r['epochs']} | {100 * r['test_accuracy']:.2f}%{sd} | "
                  + " / ".join(f"{100 * a:.2f}" for a in r["test_accuracies"])
                  + f" | {100 * r['val_accuracy']:.2f}% | {cmp} | {r['seconds']:.0f} | {r['note']} |")
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist", choices=datasets.DATASETS)
    ap.add_argument("--recipe", default="default", choices=training.RECIPE_NAMES,
                    help="the training recipe every variant uses (default: the dataset's shipped recipe)")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=1, help="how many seeds per variant")
    ap.add_argument("--quick", action="store_true", help="tiny subset and architecture (a smoke test)")
    ap.add_argument("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
    ap.add_argument("--scheduler", default=None, help="an existing Dask scheduler, tcp://HOST:8786")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--report", action="store_true",
                    help="run nothing: write the table of the seeds whose every task has finished")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    try:
        rec = recipe_of(args.dataset, args.recipe, args.quick)
    except training.LwcnnError as e:
        ap.error(str(e))

    from lwcnn_mcu import search

    seeds = list(range(args.seed, args.seed + args.seeds))
    stem = f"ablation-{args.dataset}-{rec.arch}-{args.recipe}" + ("-quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"{stem}.runs.jsonl"
    key = {"dataset": args.dataset, "arch": rec.arch, "recipe": args.recipe, "stage1_epochs": rec.stage1_epochs,
           "batch": rec.batch, "lr": rec.lr, "schedule": [list(x) for x in rec.schedule], "aug": list(rec.aug)}
    runs: list[dict[str, Any]] = []
    if log.is_file():  # continue a stopped run: keep what finished with the same settings
        for line in log.read_text().splitlines():
            r = json.loads(line)
            if r.get("key") == key and r["seed"] in seeds:
                runs.append(r)
    done = {(r["task"], r["seed"]) for r in runs}
    if args.report:  # only complete seeds, so every variant has the same seeds
        complete = {s for s in seeds if all((t, s) in done for t in TASKS)}
        runs = [r for r in runs if r["seed"] in complete]
        if not runs:
            ap.error(f"no seed has finished all its tasks yet in {log}")
        done = {(r["task"], r["seed"]) for r in runs}
        seeds = sorted(complete)
    todo = [] if args.report else [(t, s) for s in seeds for t in TASKS if (t, s) not in done]
    # the long two-stage tasks first, so two workers finish together
    todo.sort(key=lambda ts: (ts[1], not ts[0].startswith("two-stage")))
    print(f"{len(done)} task(s) already done, {len(todo)} to go", flush=True)
    if todo:
        from distributed import as_completed

        cl = search.start_cluster(args.scheduler, None if args.scheduler else (args.workers or min(
            len(todo), search.os.cpu_count() or 1)))
        try:
            futs = [cl.client.submit(run_task, args.dataset, args.recipe, t, s, args.quick, pure=False)
                    for t, s in todo]
            for f in as_completed(futs):
                rows = f.result()
                task = rows[0]["task"] if "task" in rows[0] else rows[0]["variant"]
                with log.open("a") as fh:
                    for r in rows:
                        r.update(key=key, task=task)
                        runs.append(r)
                        fh.write(json.dumps(r) + "\n")
                print(f"{task} seed {rows[0]['seed']}: " + ", ".join(
                    f"{r['variant']} {r['test_accuracy']:.4f}" for r in rows) + f" ({rows[-1]['seconds']:.0f} s)",
                    flush=True)
        finally:
            cl.close()
    rows = [r for r in runs if r["variant"] in VARIANTS]
    result = {"dataset": args.dataset, "architecture": rec.arch, "params": runs[0]["params"], "recipe": args.recipe,
              "batch": rec.batch, "lr": rec.lr, "stage1_epochs": rec.stage1_epochs,
              "stage2_epochs": sum(e for _g, e, _lr in rec.schedule), "compute_epochs": training.compute_epochs(rec),
              "seed": args.seed, "seeds": sorted({r["seed"] for r in rows}), "quick": args.quick,
              "rows": summarize(rows), "runs": sorted(rows, key=lambda r: (r["seed"], r["variant"])),
              "machine": bench.machine(), "commit": bench._git_commit(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
