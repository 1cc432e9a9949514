"""Differential fuzz campaign: random Keras models over every supported layer, each quantized, compiled and its
C (portable and SIMD builds) compared with TFLite Micro byte for byte on random inputs (tests/fuzzgen.py).

    .venv/bin/python benchmarks/fuzz.py --models 1000 [--seed 0] [--workers 2] [--out benchmarks/results/fuzz.json]

Models are drawn by hypothesis in rounds of ``--round`` models (round r uses seed ``--seed`` + r); each round runs
in a fresh worker process and appends one line per model to ``<out stem>.runs.jsonl`` as it finishes, so a stopped
campaign continues where it was when started again with the same options. The summary JSON counts the results
(match, mismatch, refused, error), the models per I/O type and per TFLite op, and lists every failure with the spec
that rebuilds it (``fuzzgen.build(spec)``). A mismatch or an error is a bug to turn into an op-table row.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_round(args: tuple[int, int, int, str]) -> int:
    """One round of ``n`` models drawn with hypothesis seed ``seed``, appended to ``runs``."""
    rnd, seed, n, runs = args
    from lwcnn_mcu.util import quiet_tensorflow

    quiet_tensorflow()
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from tests import fuzzgen

    done = 0

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(fuzzgen.graphs())
    def one(spec: dict[str, Any]) -> None:
        nonlocal done
        r = fuzzgen.check(spec)
        r["round"] = rnd
        with open(runs, "a") as f:
            f.write(json.dumps(r) + "\n")
        done += 1

    one()
    return done


def _load(runs: Path) -> list[dict[str, Any]]:
    if not runs.is_file():
        return []
    out = []
    for line in runs.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: that model runs again
            continue
    return out


def summarize(rows: list[dict[str, Any]], seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    results = collections.Counter(r["result"] for r in rows)
    by_io = collections.Counter(r["spec"]["io"] for r in rows)
    ops = collections.Counter(op for r in rows for op in set(r.get("ops") or []))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "models": len(rows),
        "results": dict(results),
        "mismatches": results.get("mismatch", 0),
        "errors": results.get("error", 0),
        "by_io": dict(by_io),
        "models_per_op": dict(sorted(ops.items())),
        "compared": "portable and SIMD host builds of the C vs TFLite Micro, every output byte",
        "seed": args.seed,
        "round_size": args.round,
        "seconds_this_run": round(seconds),
        "failures": [r for r in rows if r["result"] in ("mismatch", "error")],
        "refusals": collections.Counter(r.get("error", "")[:160].split(": ", 1)[-1] for r in rows
                                        if r["result"] == "refused").most_common(20),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "commit": commit.stdout.strip() or None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--round", type=int, default=20, help="models per round (one worker process each)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.json")
    args = ap.parse_args()
    runs = args.out.with_suffix(".runs.jsonl")
    runs.parent.mkdir(parents=True, exist_ok=True)
    have = collections.Counter(r["round"] for r in _load(runs))
    n_rounds = -(-args.models // args.round)
    todo = [(r, args.seed + r, args.round, str(runs)) for r in range(n_rounds) if have[r] < args.round]
    for r in {t[0] for t in todo} & set(have):  # a round cut short runs again from its start
        rows = [row for row in _load(runs) if row["round"] != r]
        runs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    from rich.progress import Progress

    t0 = time.time()
    with Progress() as bar, mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        task = bar.add_task("fuzzing", total=n_rounds * args.round, completed=(n_rounds - len(todo)) * args.round)
        for done in pool.imap_unordered(run_round, todo):
            bar.advance(task, done)
    rows = [r for r in _load(runs) if r["round"] < n_rounds]
    summary = summarize(rows, time.time() - t0, args)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: summary[k] for k in ("models", "results", "by_io")}))
    print(f"wrote {args.out}")
    sys.exit(1 if summary["mismatches"] or summary["errors"] else 0)


if __name__ == "__main__":
    main()
