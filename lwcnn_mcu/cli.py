"""The ``lwcnn-mcu`` command line (contract: shared/DESIGN.md).

Exit codes: 0 success, 1 a comparison or benchmark found a mismatch, 2 bad input or usage (one
message on stderr; ``--debug`` shows the traceback). With ``--json`` stdout carries exactly one
JSON object and everything else goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lwcnn_mcu import __version__
from lwcnn_mcu.errors import LwcnnError, MismatchError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train lightweight CNNs, compile them to bit-exact int8 C, and run them on Cortex-M boards.")
err = Console(stderr=True)

ModelArg = Annotated[str, typer.Argument(
    help="a .keras or int8 .tflite file, or a shipped model name (lwcnn-mcu models)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout, everything else on stderr")]


def _out(as_json: bool) -> Console:
    return err if as_json else Console()


def _emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)


@app.command("compile")
def compile_cmd(model: ModelArg,
                out: Annotated[Path | None, typer.Option("-o", "--out",
                                                         help="output folder (default: ./<model>_c)")] = None,
                dataset: Annotated[str | None, typer.Option(
                    help="calibrate a .keras model with this dataset's training images")] = None,
                calib: Annotated[str | None, typer.Option(help="calibration inputs X.npy, float32 (N,H,W,C)")] = None,
                as_json: JsonOpt = False) -> None:
    """Quantize (for .keras), plan memory and emit C into a folder, with report.json and model.tflite."""
    from lwcnn_mcu import compiler, util

    if dataset and calib:
        raise LwcnnError("give either --dataset or --calib, not both")
    console = _out(as_json)
    target = out or Path(f"{Path(model).stem}_c")
    util.check_writable_dir(target)
    with console.status("compiling...", spinner="dots"):
        c = compiler.compile_model(model, dataset=dataset, calib=calib)
        util.write_dir_atomically(target, c.files())
    r = dict(c.report, out_dir=str(target))
    if as_json:
        _emit_json(r)
        return
    t = Table(title=f"{c.graph.name}: {len(c.graph.ops)} layers -> {target}/")
    for col in ("#", "layer", "op", "output shape", "params", "MACs", "arena offset"):
        t.add_column(col, justify="right" if col in ("#", "params", "MACs", "arena offset") else "left")
    for i, row in enumerate(r["layers"]):
        off = row["arena_offset"]
        t.add_row(str(i), row["name"][:40], row["op"], "x".join(map(str, row["output_shape"])), str(row["params"]),
                  f"{row['macs']:,}", str(off) if off is not None else f"({row['output_in']})")
    console.print(t)
    console.print(f"params {r['params']:,} | MACs {r['macs']:,} | weights {r['weights_bytes']:,} B (flash) | "
                  f"arena {r['arena_bytes']:,} B (RAM) | files: {', '.join(sorted(c.files()))}")


@app.command()
def verify(model: ModelArg,
           dataset: Annotated[str | None, typer.Option(help="test on this dataset's test images (and labels)")] = None,
           data: Annotated[str | None, typer.Option(help="test inputs X.npy, float32 (N,H,W,C)")] = None,
           labels: Annotated[str | None, typer.Option(help="labels Y.npy for --data")] = None,
           calib: Annotated[str | None, typer.Option(help="calibration inputs for a .keras model")] = None,
           samples: Annotated[int, typer.Option(help="how many inputs to compare")] = 1000,
           as_json: JsonOpt = False) -> None:
    """Build the generated C on the host and compare it with TFLite Micro, LiteRT and Keras."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lwcnn_mcu import verify as v

    if dataset and data:
        raise LwcnnError("give either --dataset or --data, not both")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as prog:
        task = prog.add_task("compiling", total=None)
        r = v.run_verify(model, dataset=dataset, data=data, labels=labels, calib=calib, samples=samples,
                         progress=lambda s: prog.update(task, description=s))
    ok = v.is_pass(r)
    if as_json:
        _emit_json(r)
    else:
        console = Console()
        t = Table(title=f"verify {r['model']} on {r['samples']} inputs ({r['data']})")
        t.add_column("check")
        t.add_column("result", justify="right")
        n = r["samples"]
        t.add_row("C == TFLite Micro (every byte)",
                  f"{r['c_vs_tflm_bitexact']}/{n}  max |diff| {r['c_vs_tflm_max_abs_diff']}")
        t.add_row("C == LiteRT reference kernels", f"{r['c_vs_litert_bitexact']}/{n}")
        agree = r["c_vs_keras_argmax_agree"]
        t.add_row("C argmax == Keras float argmax", "-" if agree is None else f"{agree}/{n}")
        for key in ("c_accuracy", "tflm_accuracy", "keras_accuracy"):
            t.add_row(key.replace("_", " "), _fmt(r[key]))
        t.add_row("params / MACs", f"{r['params']:,} / {r['macs']:,}")
        t.add_row("weights / arena bytes", f"{r['weights_bytes']:,} / {r['arena_bytes']:,}")
        console.print(t)
        if ok:
            console.print("[green]PASS[/green]: the generated C equals TFLite Micro on every output byte")
        else:
            d = r["first_divergence"]
            where = f"; first divergence at layer {d['layer']} '{d['name']}' ({d['op']})" if d else ""
            err.print(f"[red]FAIL[/red]: {n - r['c_vs_tflm_bitexact']} of {n} outputs differ from TFLite Micro{where}")
    if not ok:
        raise MismatchError()


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the models shipped in the package."""
    from lwcnn_mcu import models as m

    rows = []
    for name in m.SHIPPED:
        card = m.card(name)
        rows.append({"name": name, "installed": m.shipped_path(name).is_file(), "dataset": card.get("dataset", name),
                     "params": card.get("params"), "macs": card.get("macs"),
                     "float_accuracy": card.get("float_test_accuracy"),
                     "int8_accuracy": card.get("int8_test_accuracy")})
    if as_json:
        _emit_json({"models": rows})
        return
    t = Table(title="shipped models")
    for col in ("name", "installed", "dataset", "params", "MACs", "float acc", "int8 acc"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], "yes" if r["installed"] else "no", r["dataset"], _fmt(r["params"]), _fmt(r["macs"]),
                  _fmt(r["float_accuracy"]), _fmt(r["int8_accuracy"]))
    Console().print(t)


@app.command()
def train(dataset: Annotated[str, typer.Option(help="mnist, fashion_mnist or cifar10")],
          out: Annotated[Path | None, typer.Option(help="output .keras path (default: ./<dataset>.keras)")] = None,
          seed: Annotated[int, typer.Option(help="random seed")] = 0,
          quick: Annotated[bool, typer.Option(help="seconds-long run on a data subset (for tests)")] = False,
          unify: Annotated[str, typer.Option(
              help="how stage 1's two branches become one: average|augmented|original|best")] = "best",
          epochs: Annotated[int | None, typer.Option(help="stage-1 epochs (default per dataset)")] = None,
          schedule: Annotated[str | None, typer.Option(
              help="stage-2 schedule 'groups:epochs:lr,...' (default per dataset)")] = None,
          as_json: JsonOpt = False) -> None:
    """Two-stage training: dual-input-output model, then progressive unfreezing."""
    from lwcnn_mcu import training

    card = training.train(dataset, out=out, seed=seed, quick=quick, unify=unify, epochs=epochs,
                          schedule=schedule, console=_out(as_json))
    if as_json:
        _emit_json(card)


@app.command()
def version() -> None:
    """Print the version."""
    print(f"lwcnn-mcu {__version__}")


def main() -> None:
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except LwcnnError as exc:
        if debug:
            raise
        err.print(f"lwcnn-mcu: error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except MismatchError:
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # an internal error: say so, keep the traceback behind --debug
        if debug:
            raise
        err.print(f"lwcnn-mcu: internal error: {type(exc).__name__}: {str(exc)[:500]} (rerun with --debug for the "
                  "traceback, and please report it)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(3)
