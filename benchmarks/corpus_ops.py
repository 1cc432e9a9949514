"""Op inventory of the "models from elsewhere" corpus (tests/corpus.py), each model exported three ways.

    PYTHONPATH=. .venv/bin/python benchmarks/corpus_ops.py [--models a,b] [--exports int8_io,...] [--calib 32]

For each model and export (int8_io: lwcnn-mcu's own quantization, batch 1, int8 edges; converter_default:
the TFLite guide's recipe, batch -1, float32 edges with QUANTIZE/DEQUANTIZE; mlperf_int8: the MLPerf Tiny
scripts', batch -1, TFLITE_BUILTINS_INT8, int8 edges): the TFLite builtin ops with counts, the I/O dtypes,
the input's shape_signature, params (Keras count_params, and the constants of the MAC ops in the .tflite)
and MACs (counted from the .tflite: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV), whether
``lwcnn-mcu compile`` accepts the .tflite today (and the exact error if not), whether the .keras model
passes ``keras_model.check_model`` (the .keras path), and whether TFLite Micro runs the .tflite at all.

Writes benchmarks/results/corpus-ops.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lwcnn_mcu import compiler, reference  # noqa: E402
from lwcnn_mcu.errors import LwcnnError  # noqa: E402
from lwcnn_mcu.frontend import keras_model  # noqa: E402
from tests import corpus  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "corpus-ops.json"


def _error(exc: BaseException) -> str:
    if isinstance(exc, LwcnnError):
        return str(exc)
    return f"internal {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}"


def compile_check(buf: bytes, path: Path) -> tuple[bool, str | None, int | None]:
    """The .tflite through ``compiler.compile_model`` as ``lwcnn-mcu compile X.tflite`` runs it."""
    path.write_bytes(buf)
    try:
        c = compiler.compile_model(str(path))
    except Exception as exc:  # noqa: BLE001 - the inventory records every refusal, internal errors included
        return False, _error(exc).replace(f"{path.parent}/", ""), None  # the file's name, not the temp folder
    return True, None, int(c.report["macs"])


def tflm_check(buf: bytes, info: corpus.TfliteInfo) -> str | None:
    """None when TFLite Micro runs one (zero) input through the model, else its error."""
    dtype = {"int8": np.int8, "uint8": np.uint8, "float32": np.float32}.get(info.input_dtype, np.float32)
    try:
        interp = reference._tflm(buf)
        interp.set_input(np.zeros(info.input_shape, dtype), 0)
        interp.invoke()
        interp.get_output(0)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    return None


def inventory(name: str, exports: list[str], n_calib: int, tmp: Path) -> list[dict[str, Any]]:
    model = corpus.CORPUS[name]()
    calib = corpus.calibration(name, n_calib, seed=0, shape=tuple(int(d) for d in model.inputs[0].shape[1:]))
    try:
        keras_model.check_model(model, name)
        keras_ok, keras_err = True, None
    except LwcnnError as exc:
        keras_ok, keras_err = False, str(exc)
    rows = []
    for export in exports:
        row: dict[str, Any] = {"model": name, "family": corpus.FAMILY[name], "export": export,
                               "keras_params": int(model.count_params()), "keras_check_ok": keras_ok,
                               "keras_check_error": keras_err}
        t0 = time.time()
        try:
            buf = corpus.EXPORTERS[export](model, calib)
        except Exception as exc:  # noqa: BLE001
            row.update(export_error=_error(exc), compile_ok=False)
            rows.append(row)
            continue
        info = corpus.analyze(buf)
        ok, err, macs = compile_check(buf, tmp / f"{name}_{export}.tflite")
        row.update({
            "tflite_bytes": len(buf), "export_s": round(time.time() - t0, 1),
            "ops": info.ops, "input_dtype": info.input_dtype, "output_dtype": info.output_dtype,
            "input_shape_signature": info.input_signature, "output_shape": info.output_shape,
            "params": info.params, "macs": info.macs,
            "compile_ok": ok, "compile_error": err, "compile_macs": macs,
            "tflm_error": tflm_check(buf, info),
        })
        rows.append(row)
        print(f"{name:24s} {export:18s} ok={ok} {err or ''}"[:400], file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| model | export | I/O | input signature | params | MACs | ops | compiles today |",
           "| --- | --- | --- | --- | ---: | ---: | --- | --- |"]
    for r in rows:
        if "ops" not in r:
            out.append(f"| {r['model']} | {r['export']} | | | | | | export failed: {r['export_error']} |")
            continue
        ops = ", ".join(f"{k} {v}" for k, v in r["ops"].items())
        verdict = "yes" if r["compile_ok"] else f"no: {r['compile_error']}"
        if r["tflm_error"]:
            verdict += f" (TFLM: {r['tflm_error']})"
        out.append(f"| {r['model']} | {r['export']} | {r['input_dtype']}/{r['output_dtype']} | "
                   f"{r['input_shape_signature']} | {r['params']:,} | {r['macs']:,} | {ops} | {verdict} |")
    return "\n".join(out)


def missing_ops(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each op not in the frontend's HANDLERS -> the models (and exports) that use it."""
    from lwcnn_mcu.frontend import tflite

    need: dict[str, list[str]] = {}
    for r in rows:
        for op in r.get("ops", {}):
            if op not in tflite.HANDLERS:
                need.setdefault(op, []).append(f"{r['model']}/{r['export']}")
    return dict(sorted(need.items(), key=lambda kv: -len(kv[1])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(corpus.CORPUS))
    ap.add_argument("--exports", default=",".join(corpus.EXPORTS))
    ap.add_argument("--calib", type=int, default=32, help="calibration inputs per export")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    names, exports = args.models.split(","), args.exports.split(",")
    for n in names:
        if n not in corpus.CORPUS:
            ap.error(f"unknown model {n}; known: {', '.join(corpus.CORPUS)}")
    for e in exports:
        if e not in corpus.EXPORTERS:
            ap.error(f"unknown export {e}; known: {', '.join(corpus.EXPORTS)}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for n in names:
            try:
                rows += inventory(n, exports, args.calib, Path(d))
            except Exception:  # noqa: BLE001 - one broken builder must not hide the rest of the inventory
                rows.append({"model": n, "family": corpus.FAMILY[n], "export": "*",
                             "export_error": traceback.format_exc().strip().splitlines()[-1], "compile_ok": False})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
              "machine": platform.machine(), "calibration_inputs": args.calib,
              "accepted": sum(bool(r.get("compile_ok")) for r in rows), "cases": len(rows),
              "missing_ops": missing_ops(rows), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"\n{result['accepted']} of {result['cases']} exports compile today. Ops not in the frontend:")
    for op, users in result["missing_ops"].items():
        print(f"- {op}: {len(users)} exports ({', '.join(sorted({u.split('/')[0] for u in users}))})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
