"""The "models from elsewhere" corpus (tests/corpus.py) on the compiler and the emulated Cortex-M4, in one run.

    .venv/bin/python benchmarks/corpus_table.py [--models a,b] [--export int8_io] [--board qemu-m4]

Per model (random weights, quantized with random calibration data): params and MACs (the compiler's report),
weights in flash, the arena beside TFLite Micro's for the same .tflite (its total and its activations, "head"),
whether the host C equals TFLite Micro on random inputs, and on the emulated board the instructions of one
inference (QEMU icount, exact) and the estimated Cortex-M4 cycles (`bench --cycles`, docs/cycles.md: an
estimate, zero-wait-state memory). Writes benchmarks/results/corpus.json and corpus.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUT = ROOT / "benchmarks" / "results"


def measure(name: str, export: str, board: str, tmp: Path) -> dict[str, Any]:
    from lwcnn_mcu import bench, compiler, hostrun, reference, verify
    from lwcnn_mcu.errors import LwcnnError
    from tests import corpus

    model = corpus.CORPUS[name]()
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    path = tmp / f"{name}_{export}.tflite"
    path.write_bytes(corpus.EXPORTERS[export](model, corpus.calibration(name, 16, seed=0, shape=shape)))
    c = compiler.compile_model(str(path))
    x = verify.model_inputs(c.graph, verify.TestData(None, None, "random"), 4)
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    got = hostrun.build_host(c.gen.files, io=True).run(x)
    row: dict[str, Any] = {
        "model": name, "family": corpus.FAMILY[name], "export": export, "io": list(c.graph.io_dtypes),
        "params": c.report["params"], "macs": c.report["macs"], "weights_bytes": c.report["weights_bytes"],
        "arena_bytes": c.report["arena_bytes"], "layers": len(c.graph.ops),
        "c_equals_tflm": bool(np.array_equal(got.view(np.uint8), expect.view(np.uint8))),
    }
    try:
        tflm = reference.tflm_arena(c.tflite, c.graph.input.shape)
        row["tflm_arena_total"], row["tflm_arena_head"] = tflm.get("total"), tflm.get("head")
    except reference.ReferenceFailed as exc:
        row["tflm_arena_error"] = exc.message
    cwd = os.getcwd()
    os.chdir(tmp)
    row.update(board=board, agree_with_host=None, instructions=None, instructions_per_mac=None, est_cycles=None,
               est_cycles_per_mac=None)
    try:
        r = bench.run_bench(board=board, port=None, model=str(path), dataset=None, data=None, labels=None,
                            samples=1, layers=False, device_timeout=120.0, cycles=True)
    except LwcnnError as exc:  # e.g. more flash than the board has: the row says so, the run goes on
        row["board_error"] = exc.message
        return row
    finally:
        os.chdir(cwd)
    row.update(agree_with_host=r["agree_with_host"] == r["samples"], instructions=r["instructions"]["median"],
               instructions_per_mac=r["instructions_per_mac"], est_cycles=r.get("est_cycles"),
               est_cycles_per_mac=r.get("est_cycles_per_mac"))
    return row


def _board_cell(r: dict[str, Any]) -> str:
    if r.get("board_error"):
        return "does not fit: " + r["board_error"].split(": ", 1)[-1].split(";")[0]
    return "yes" if r["agree_with_host"] else "NO"


def markdown(rows: list[dict[str, Any]]) -> str:
    def num(v: Any) -> str:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return "n/a" if v is None else (f"{v:,.2f}" if isinstance(v, float) else f"{v:,}")

    lines = ["| model | family | params | MACs | arena B | TFLite Micro arena B (total / activations) | "
             "C == TFLM | board == host | instructions | per MAC | est. cycles | est. cycles per MAC |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        tflm = f"{num(r.get('tflm_arena_total'))} / {num(r.get('tflm_arena_head'))}"
        lines.append(f"| {r['model']} | {r['family']} | {num(r['params'])} | {num(r['macs'])} | "
                     f"{num(r['arena_bytes'])} | {tflm} | {'yes' if r['c_equals_tflm'] else 'NO'} | "
                     f"{_board_cell(r)} | {num(r['instructions'])} | "
                     f"{num(r['instructions_per_mac'])} | {num(r['est_cycles'])} | {num(r['est_cycles_per_mac'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from lwcnn_mcu.util import quiet_tensorflow

    quiet_tensorflow()
    from rich.progress import Progress

    from tests import corpus

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(corpus.CORPUS))
    ap.add_argument("--export", default="int8_io", choices=corpus.EXPORTS)
    ap.add_argument("--board", default="qemu-m4")
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n]
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d, Progress() as bar:
        task = bar.add_task("corpus on the board", total=len(names))
        for name in names:
            rows.append(measure(name, args.export, args.board, Path(d)))
            bar.advance(task)
    out = {"rows": rows, "export": args.export, "board": args.board, "seconds": round(time.time() - t0),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "note": "instructions: QEMU icount (exact); est_cycles: an estimate (docs/cycles.md)"}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "corpus.json").write_text(json.dumps(out, indent=1) + "\n")
    (OUT / "corpus.md").write_text(markdown(rows))
    print(markdown(rows))
    print(f"wrote {OUT / 'corpus.json'} and corpus.md")


if __name__ == "__main__":
    main()
