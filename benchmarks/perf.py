"""Performance benchmark: instructions, memory and code size, side by side in one run.

    LWCNN_DATASETS=../shared/datasets .venv/bin/python benchmarks/perf.py [--samples 5] [--quick] [--models a,b]

(LWCNN_DATASETS, or an internet connection: the shipped models are calibrated with their dataset.)

Models: the two anchor networks of the performance issue (Net A: paper-sized MNIST CNN, 453,744
MACs; Net B: depthwise-separable, 221,408 MACs; random weights, int8 via the TFLite converter),
a ResNet-8-like CIFAR network with residual adds, and the shipped models. For each: emulated
Cortex-M4 instructions per inference (QEMU mps2-an386, -icount shift=0, counted by the firmware,
median over --samples random inputs; every output checked against the host C) and per MAC, for
the DSP (SXTB16/SMLAD) kernels and the portable C kernels (-DLW_PORTABLE) of the same build, beside
the anchor figures measured for CMSIS-NN and TFLite Micro; arena_bytes beside TFLite Micro's arena
for the same .tflite (activations = its arena head, total); flash/RAM of the qemu-m4 firmware and
the code size of the kernels + model (ELF symbols); a per-layer table for Net A and Net B.

Writes benchmarks/results/perf.json and perf.md (machine, commit, date). Instructions are
instructions: never reported as cycles or milliseconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lwcnn_mcu import bench, builder, models, reference  # noqa: E402

ANCHORS = {  # instructions per inference measured the same way (issue: performance)
    "net_a": {"cmsis_nn_dsp_o3": 1_951_687, "cmsis_nn_os": 2_504_869, "tflm_reference": 6_444_497, "target": 975_000},
    "net_b": {"cmsis_nn_dsp_o3": 1_229_745, "cmsis_nn_os": 1_434_325, "tflm_reference": 4_377_178, "target": 615_000},
}


def _keras_nets() -> dict:
    import keras

    L = keras.layers

    def net_a():  # noqa: ANN202
        return keras.Sequential([
            keras.Input((28, 28, 1)), L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(24, 3, padding="same", activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dense(10)],
            name="net_a")

    def net_b():  # noqa: ANN202
        return keras.Sequential([
            keras.Input((28, 28, 1)), L.Conv2D(16, 3, strides=2, padding="same"),
            L.DepthwiseConv2D(3, padding="same", activation="relu"), L.Conv2D(32, 1, activation="relu"),
            L.DepthwiseConv2D(3, strides=2, padding="same"), L.Conv2D(32, 1), L.GlobalAveragePooling2D(),
            L.Dense(10)], name="net_b")

    def resnet8():  # noqa: ANN202
        inp = keras.Input((32, 32, 3))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
        for filters, stride in ((16, 1), (32, 2), (64, 2)):
            y = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, strides=stride, padding="same")(x)))
            y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
            s = x if stride == 1 else L.Conv2D(filters, 1, strides=stride)(x)
            x = L.ReLU()(L.Add()([s, y]))
        out = L.Dense(10)(L.Flatten()(L.AveragePooling2D(8)(x)))
        return keras.Model(inp, out, name="resnet8")

    return {"net_a": net_a, "net_b": net_b, "resnet8": resnet8}


def _tflite(model, seed: int) -> bytes:  # noqa: ANN001
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) if "variance" not in v.path
                               else rng.uniform(0.5, 2, w.shape).astype(np.float32)
                               for v, w in zip(layer.weights, ws, strict=True)])
    shape = tuple(model.inputs[0].shape[1:])
    import keras

    m1 = keras.models.clone_model(model, input_tensors=keras.Input(shape, batch_size=1))
    m1.set_weights(model.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(m1)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.normal(0, 1, (1, *shape)).astype(np.float32)] for _ in range(64))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def code_bytes(elf: Path, prefix: str) -> int:
    """Size of the kernel and model functions linked into the firmware (lw_* and PREFIX_* symbols)."""
    from elftools.elf.elffile import ELFFile

    with elf.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return sum(s["st_size"] for s in symtab.iter_symbols()
                   if s["st_info"]["type"] == "STT_FUNC" and s.name.startswith(("lw_", f"{prefix}_"))
                   and not s.name.startswith("lw_proto"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="Net A only (a smoke test)")
    ap.add_argument("--models", default=None, help="comma-separated subset: net_a,net_b,resnet8,mnist,...")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lwcnn-perf-"))
    os.chdir(work)
    entries: list[tuple[str, str]] = []
    nets = _keras_nets()
    only = set(args.models.split(",")) if args.models else None
    for name in (["net_a"] if args.quick else [n for n in nets if only is None or n in only]):
        p = work / f"{name}.tflite"
        p.write_bytes(_tflite(nets[name](), seed=1))
        entries.append((name, str(p)))
    if not args.quick:
        entries += [(f"shipped {n}", n) for n in models.SHIPPED if models.shipped_path(n).is_file()
                    and (only is None or n in only)]

    rows, layer_tables = [], {}
    from lwcnn_mcu import compiler

    for label, model in entries:
        t0 = time.time()
        ds = model if model in models.SHIPPED else None
        want_layers = label in ("net_a", "net_b")
        runs = {k: bench.run_bench(board="qemu-m4", port=None, model=model, dataset=ds, data=None, labels=None,
                                   samples=args.samples, layers=want_layers, kernels=k)
                for k in ("portable", "auto")}
        r, rp = runs["auto"], runs["portable"]
        c = compiler.compile_model(model, dataset=ds)
        try:
            tflm, tflm_error = reference.tflm_arena(c.tflite, c.graph.input.shape), None
        except reference.ReferenceFailed as exc:  # the figure is unavailable, the rest of the row stands
            tflm, tflm_error = {}, exc.message
        b = builder.build("qemu-m4", model, work / f"fw-{label.replace(' ', '_')}", dataset=ds)
        macs = max(1, r["macs"])
        row = {
            "model": label, "macs": r["macs"], "params": r["params"],
            "outputs_equal_host": {k: f"{v['agree_with_host']}/{v['samples']}" for k, v in runs.items()},
            "instructions_portable": rp["instructions"]["median"],
            "instructions_per_mac_portable": rp["instructions"]["median"] / macs,
            "instructions_dsp": r["instructions"]["median"],
            "instructions_per_mac_dsp": r["instructions"]["median"] / macs,
            "arena_bytes": r["arena_bytes"], "tflm_arena_head": tflm.get("head"), "tflm_arena_total": tflm.get("total"),
            "tflm_arena_error": tflm_error,
            "arena_ratio": r["arena_bytes"] / tflm["head"] if tflm.get("head") else None,
            "weights_bytes": r["weights_bytes"], "code_bytes": code_bytes(b.elf, c.gen.name),
            "firmware_flash": b.flash_bytes, "firmware_ram": b.ram_bytes, "seconds": round(time.time() - t0, 1),
        }
        row.update({f"anchor_{k}": v for k, v in ANCHORS.get(label, {}).items()})
        rows.append(row)
        if want_layers:
            layer_tables[label] = [{**x, "instructions_portable": y["instructions"]}
                                   for x, y in zip(r["layers"], rp["layers"], strict=True)]
        print(f"{label}: DSP {row['instructions_dsp']:,.0f} instructions ({row['instructions_per_mac_dsp']:.2f}/MAC), "
              f"portable {row['instructions_portable']:,.0f}; arena {row['arena_bytes']} vs TFLM "
              f"{row['tflm_arena_head'] if tflm_error is None else 'unavailable (' + tflm_error + ')'}", flush=True)

    ratios = [r["arena_ratio"] for r in rows if r["arena_ratio"]]
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
    res = {"rows": rows, "layers": layer_tables, "arena_ratio_geomean": geo, "samples": args.samples,
           "board": "qemu-m4 (QEMU mps2-an386, Cortex-M4, -icount shift=0)", "machine": bench.machine(),
           "commit": bench._git_commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "perf-quick" if args.quick or only else "perf"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [f"Performance on the emulated Cortex-M4 (commit {res['commit']}, {res['date']}; instructions per "
          f"inference, median of {args.samples} inputs)", "",
          "| model | MACs | DSP kernels: instructions | per MAC | portable C: instructions | per MAC | "
          "CMSIS-NN DSP -O3 | CMSIS-NN -Os | TFLM reference | target | arena B | TFLM arena (act./total) | ratio | "
          "weights B | code B | firmware flash/RAM B |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
          "---: |"]

    def num(v: object) -> str:
        return f"{v:,}" if isinstance(v, int) else "–"

    def tflm_cell(r: dict) -> str:
        if r.get("tflm_arena_error"):
            return "unavailable: TFLite Micro could not run the model"
        return f"{num(r['tflm_arena_head'])} / {num(r['tflm_arena_total'])}"

    for r in rows:
        md.append(f"| {r['model']} | {r['macs']:,} | {r['instructions_dsp']:,.0f} | "
                  f"{r['instructions_per_mac_dsp']:.2f} | {r['instructions_portable']:,.0f} | "
                  f"{r['instructions_per_mac_portable']:.2f} | "
                  f"{num(r.get('anchor_cmsis_nn_dsp_o3'))} | {num(r.get('anchor_cmsis_nn_os'))} | "
                  f"{num(r.get('anchor_tflm_reference'))} | {num(r.get('anchor_target'))} | {r['arena_bytes']:,} | "
                  f"{tflm_cell(r)} | {'–' if r['arena_ratio'] is None else format(r['arena_ratio'], '.2f')} | "
                  f"{r['weights_bytes']:,} | {r['code_bytes']:,} | {r['firmware_flash']:,} / {r['firmware_ram']:,} |")
    md += ["", f"Arena / TFLite Micro activation arena, geometric mean: {geo:.2f}" if geo else ""]
    md += [f"TFLite Micro arena of {r['model']} unavailable: {r['tflm_arena_error']}" for r in rows
           if r.get("tflm_arena_error")]
    for label, layers in layer_tables.items():
        md += ["", f"Per layer, {label} (emulated instructions; the issue limit is 0.5 per MAC):", "",
               "| # | op | MACs | DSP kernels | per MAC | portable C | per MAC |",
               "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        md += [f"| {x['layer']} | {x['op']} | {x['macs']:,} | {x['instructions']:,} | "
               f"{(x['instructions'] / x['macs']) if x['macs'] else 0:.2f} | {x['instructions_portable']:,} | "
               f"{(x['instructions_portable'] / x['macs']) if x['macs'] else 0:.2f} |" for x in layers]
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
