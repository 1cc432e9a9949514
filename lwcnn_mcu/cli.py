"""The ``lwcnn-mcu`` command line (contract: docs/design.md).

Exit codes: 0 success, 1 a comparison or benchmark found a mismatch, 2 bad input or usage, or a
benchmark the serial link stopped (one message on stderr; ``--debug`` shows the traceback), 3 an
internal error: a bug, never a transport condition, 4 a reference (TensorFlow Lite Micro) could not run
the model (``verify`` still prints its report, with ``tflm_error``). With ``--json`` stdout carries exactly one
JSON object and everything else goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lwcnn_mcu import __version__
from lwcnn_mcu.errors import LwcnnError, MismatchError, ReferenceFailed
from lwcnn_mcu.training import ARCHS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train lightweight CNNs, compile them to bit-exact int8 C, and run them on Cortex-M boards.")
err = Console(stderr=True)

ModelArg = Annotated[str, typer.Argument(
    help="a .keras, int8 .tflite or .onnx (NCHW) file, or a shipped model name (lwcnn-mcu models)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout, everything else on stderr")]


def _stdout() -> Console:
    """Standard output: the terminal's width, or 160 columns when it goes to a file or a log (rich's default
    of 80 there cuts the tables' columns); COLUMNS, when set, wins."""
    return Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=160)


def _out(as_json: bool) -> Console:
    return err if as_json else _stdout()


def _emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)


KernelSetOpt = Annotated[str, typer.Option(
    "--kernels", help="lw: our kernels; cmsis-nn: CMSIS-NN's s8 kernels for the ops it has (LWCNN_CMSIS_NN names "
                      "its sources to build with), ours for the rest (the report's \"fallback\")")]


def _options(kernels: str) -> Any:
    from lwcnn_mcu import backend

    if kernels not in backend.KERNEL_SETS:
        raise LwcnnError(f"unknown --kernels '{kernels}'; choose {' or '.join(backend.KERNEL_SETS)}")
    return backend.Options(kernels=kernels)


@app.command("compile")
def compile_cmd(model: ModelArg,
                out: Annotated[Path | None, typer.Option("-o", "--out",
                                                         help="output folder (default: ./<model>_c)")] = None,
                dataset: Annotated[str | None, typer.Option(
                    help="calibrate a .keras model with this dataset's training images")] = None,
                calib: Annotated[str | None, typer.Option(
                    help="calibration inputs X.npy, float32 (N,H,W,C); (N,C,H,W) for .onnx")] = None,
                name: Annotated[str | None, typer.Option(
                    help="C prefix of every generated file, function and macro (NAME_model.h, NAME_invoke, "
                         "NAME_ARENA_BYTES); default: the model's name as a C identifier")] = None,
                kernels: KernelSetOpt = "lw",
                as_json: JsonOpt = False) -> None:
    """Quantize (for .keras), plan memory and emit C into a folder, with report.json and model.tflite."""
    from lwcnn_mcu import compiler, util

    if dataset and calib:
        raise LwcnnError("give either --dataset or --calib, not both")
    console = _out(as_json)
    options = _options(kernels)
    target = out or Path(f"{Path(model).stem}_c")
    util.check_writable_dir(target)
    with console.status("compiling...", spinner="dots"):
        c = compiler.compile_model(model, dataset=dataset, calib=calib, name=name, options=options)
        util.write_dir_atomically(target, c.files())
    r = dict(c.report, out_dir=str(target))
    for w in r["warnings"]:  # e.g. a layer TFLite Micro aborts on
        err.print(f"lwcnn-mcu: warning: {w}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        _emit_json(r)
        return
    t = Table(title=f"{c.graph.name}: {len(c.graph.ops)} layers -> {target}/", show_edge=False)
    for col in ("#", "layer", "op", "output", "params", "MACs", "arena at"):
        t.add_column(col, justify="right" if col in ("#", "params", "MACs", "arena at") else "left",
                     no_wrap=col != "layer")
    names = [row["name"] for row in r["layers"]]  # short Keras names (passes.name_layers)
    for i, (row, name) in enumerate(zip(r["layers"], names, strict=True)):
        off = row["arena_offset"]
        shape = row["output_shape"][1:] if row["output_shape"][:1] == [1] else row["output_shape"]  # batch 1
        t.add_row(str(i), name, row["op"].replace("_2D", ""), "x".join(map(str, shape)), f"{row['params']:,}",
                  f"{row['macs']:,}", str(off) if off is not None else f"({row['output_in']})")
    console.print(t)
    console.print(f"params {r['params']:,} | MACs {r['macs']:,} | weights {r['weights_bytes']:,} B (flash) | "
                  f"arena {r['arena_bytes']:,} B (RAM) | files: {', '.join(sorted(c.files()))}")
    if kernels == "cmsis-nn":
        console.print(f"kernels: CMSIS-NN ({', '.join(f for f in r['kernel_functions'] if f.startswith('arm_'))}); "
                      f"ours for {', '.join(r['fallback']) or 'nothing'}; build with its sources "
                      "(LWCNN_CMSIS_NN) and include dir")


@app.command()
def verify(model: ModelArg,
           dataset: Annotated[str | None, typer.Option(help="test on this dataset's test images (and labels)")] = None,
           data: Annotated[str | None, typer.Option(
               help="test inputs X.npy, float32 (N,H,W,C); (N,C,H,W) for .onnx")] = None,
           labels: Annotated[str | None, typer.Option(help="labels Y.npy for --data")] = None,
           calib: Annotated[str | None, typer.Option(
               help="calibration inputs for a .keras or .onnx model (NCHW for .onnx)")] = None,
           samples: Annotated[int, typer.Option(help="how many inputs to compare")] = 1000,
           kernels: KernelSetOpt = "lw",
           as_json: JsonOpt = False) -> None:
    """Build the generated C on the host and compare it with TFLite Micro, LiteRT and Keras."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lwcnn_mcu import verify as v

    if dataset and data:
        raise LwcnnError("give either --dataset or --data, not both")
    options = _options(kernels)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as prog:
        task = prog.add_task("compiling", total=None)
        r = v.run_verify(model, dataset=dataset, data=data, labels=labels, calib=calib, samples=samples,
                         progress=lambda s: prog.update(task, description=s), options=options)
    ok = v.is_pass(r)
    if as_json:
        _emit_json(r)
    else:
        console = _stdout()
        t = Table(title=f"verify {r['model']} on {r['samples']} inputs ({r['data']})")
        t.add_column("check")
        t.add_column("result", justify="right")
        n = r["samples"]
        if r["tflm_error"] is None:
            t.add_row("C == TFLite Micro (every byte)",
                      f"{r['c_vs_tflm_bitexact']}/{n}  max |diff| {r['c_vs_tflm_max_abs_diff']}")
        else:
            t.add_row("C == TFLite Micro (every byte)", "[red]not compared: TFLite Micro could not run the model[/red]")
        t.add_row("C == LiteRT reference kernels", f"{r['c_vs_litert_bitexact']}/{n}" if r["litert_error"] is None
                  else "[yellow]not compared: LiteRT could not run the model[/yellow]")
        agree, float_model = r["c_vs_keras_argmax_agree"], "Keras"
        if r["c_vs_onnx_argmax_agree"] is not None:  # an .onnx model: its float reference is onnxruntime
            agree, float_model = r["c_vs_onnx_argmax_agree"], "ONNX (onnxruntime)"
        t.add_row(f"C argmax == {float_model} float argmax", "-" if agree is None else f"{agree}/{n}")
        for key in ("c_accuracy", "tflm_accuracy", "onnx_accuracy" if r["onnx"] else "keras_accuracy"):
            t.add_row(key.replace("_", " "), _fmt(r[key]))
        t.add_row("params / MACs", f"{r['params']:,} / {r['macs']:,}")
        t.add_row("weights / arena bytes", f"{r['weights_bytes']:,} / {r['arena_bytes']:,}")
        console.print(t)
        if ok:
            console.print("[green]PASS[/green]: the generated C equals TFLite Micro on every output byte")
        elif r["tflm_error"] is None:
            d = r["first_divergence"]
            where = ""
            if d and "layer" in d:
                where = f"; first divergence at layer {d['layer']} '{d['name']}' ({d['op']})"
            elif d:
                where = f"; the layer-by-layer trace failed: {d['error']}"
            err.print(f"[red]FAIL[/red]: {n - r['c_vs_tflm_bitexact']} of {n} outputs differ from TFLite Micro"
                      f"{escape(where)}", soft_wrap=True)
    if r["litert_error"] is not None:  # a second opinion: reported, the exit code stays the contract's
        err.print(f"lwcnn-mcu: warning: {r['litert_error']}", markup=False, highlight=False, soft_wrap=True)
    if r["tflm_error"] is not None:
        raise ReferenceFailed.reported("TensorFlow Lite Micro", r["tflm_error"])
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
    t.add_column("name", no_wrap=True, min_width=13)  # typed back as MODEL: never truncated
    for col in ("params", "MACs", "float acc", "int8 acc"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("installed", no_wrap=True)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    for r in rows:
        name = r["name"] if r["dataset"] == r["name"] else f"{r['name']} ({r['dataset']})"
        t.add_row(name, "-" if r["params"] is None else f"{r['params']:,}",
                  "-" if r["macs"] is None else f"{r['macs']:,}", pct(r["float_accuracy"]), pct(r["int8_accuracy"]),
                  "yes" if r["installed"] else "no")
    _stdout().print(t)


@app.command()
def train(dataset: Annotated[str, typer.Option(help="mnist, fashion_mnist or cifar10")],
          out: Annotated[Path | None, typer.Option(help="output .keras path (default: ./<dataset>.keras)")] = None,
          seed: Annotated[int, typer.Option(help="random seed")] = 0,
          quick: Annotated[bool, typer.Option(help="seconds-long run on a data subset (for tests)")] = False,
          unify: Annotated[str, typer.Option(
              help="how stage 1's two branches become one: best (highest validation accuracy), original, "
                   "augmented, average, mix0.25, mix0.75, swa, average-raw")] = "best",
          epochs: Annotated[int | None, typer.Option(
              help="stage-1 epochs (two-stage) or all epochs (plain methods); default per recipe")] = None,
          schedule: Annotated[str | None, typer.Option(
              help="stage-2 schedule 'groups:epochs:lr,...' (default per dataset)")] = None,
          arch: Annotated[str | None, typer.Option(
              help=f"architecture: {', '.join(ARCHS)}, or written out as c16k5-p-d24-p-flat "
                   "(default per dataset)")] = None,
          recipe: Annotated[str, typer.Option(
              help="default (per dataset, the multi-seed ablation's best), shipped (the shipped model's), "
                   "fast (two stages at batch 512, the ablation's) or paper (two stages at full length)")] = "default",
          sync_every: Annotated[int | None, typer.Option(
              help="stage 1: set both branches to their mean every N epochs (0: independent branches, the "
                   "paper's method; default per recipe)")] = None,
          method: Annotated[str | None, typer.Option(
              help="two-stage (the paper's: dual model, then progressive unfreezing), plain+aug or plain (one "
                   "model, with or without the augmentation, at the same compute); default per recipe: what "
                   "the multi-seed ablation found best")] = None,
          batch_norm: Annotated[str, typer.Option(
              help="fused (TensorFlow's fused kernel while training, faster) or keras (Keras's own ops: the "
                   "same arithmetic, for comparison)")] = "fused",
          as_json: JsonOpt = False) -> None:
    """Train a model: the paper's two stages (dual-input-output model, then progressive unfreezing), or
    one model at the same compute (--method)."""
    from lwcnn_mcu import training

    card = training.train(dataset, out=out, seed=seed, quick=quick, unify=unify, epochs=epochs,
                          schedule=schedule, arch=arch, recipe=recipe, console=_out(as_json), sync_every=sync_every,
                          method=method, batch_norm=batch_norm)
    if as_json:
        _emit_json(card)


BoardOpt = Annotated[str, typer.Option("--board", help="a board from `lwcnn-mcu boards`")]
KernelsOpt = Annotated[str, typer.Option(help="auto (or lw): our SIMD kernels (SXTB16/SMLAD) on cores with the DSP "
                                              "extension, else portable C; portable: our portable C kernels "
                                              "everywhere; cmsis-nn: CMSIS-NN's s8 kernels (its DSP path on a DSP "
                                              "core; LWCNN_CMSIS_NN names its sources) for the ops it has, ours "
                                              "for the rest")]


@app.command()
def boards(as_json: JsonOpt = False) -> None:
    """List the supported boards."""
    from lwcnn_mcu import boards as b

    rows = [{"name": x.name, "aliases": [a for a, t in b.ALIASES.items() if t == x.name], "mcu": x.mcu,
             "core": x.core, "clock_hz": x.clock_hz, "reset_clock_hz": x.reset_clock_hz,
             "clock_setup": x.clock.summary() if x.clock else None, "counter": x.counter,
             "emulator_counter_hz": x.emulator_counter_hz, "flash_bytes": x.flash_bytes, "ram_bytes": x.ram_bytes,
             "uart": x.uart_name, "emulator": x.qemu_machine, "runs_here": x.runs_here,
             "openocd_target": x.openocd_target, "note": x.note}
            for x in b.BOARDS.values()]
    if as_json:
        _emit_json({"boards": rows, "default": b.DEFAULT_BOARD})
        return
    t = Table(title=f"boards (default: {b.DEFAULT_BOARD})", show_edge=False)
    t.add_column("name", no_wrap=True)  # typed back as --board: never truncated
    for col in ("core", "clock", "flash", "RAM"):
        t.add_column(col, no_wrap=True, justify="left" if col == "core" else "right")
    t.add_column("runs here on", no_wrap=True)
    for r in rows:
        name = r["name"] + "".join(f"\n(alias {a})" for a in r["aliases"])
        t.add_row(name, r["core"].replace("cortex-", "Cortex-").replace("-m", "-M"),
                  f"{r['clock_hz'] / 1e6:g} MHz", f"{r['flash_bytes'] // 1024} KB", f"{r['ram_bytes'] // 1024} KB",
                  f"QEMU {r['emulator']}" if r["runs_here"] else "- (build only)")
    console = _stdout()
    console.print(t)
    for r in rows:
        console.print(f"  {r['name']} ({r['mcu']}): {r['note']}; host link {r['uart']}")
        if r["clock_setup"]:
            qemu = "; on QEMU (no RCC model) it runs at the reset clock, counting instructions"
            console.print(f"    clock: {r['clock_setup']}" + (qemu if r["counter"] == "icount" else ""))
    console.print("  clock settings and their reference-manual sources: docs/boards.md")


@app.command()
def build(board: BoardOpt = "qemu-m4",
          model: Annotated[list[str] | None, typer.Option(
              "--model", help="MODEL (default: the shipped mnist); repeat for a firmware with several models "
                              "(the first runs at boot; bench --model selects one)")] = None,
          out: Annotated[Path | None, typer.Option("-o", "--out",
                                                   help="project folder (default build/<board>)")] = None,
          dataset: Annotated[str | None, typer.Option(help="calibration/test dataset for a .keras model")] = None,
          calib: Annotated[str | None, typer.Option(
              help="calibration inputs X.npy for a .keras or .onnx model (NCHW for .onnx)")] = None,
          builder: Annotated[str, typer.Option(
              help="auto (PlatformIO when its ststm32 platform is installed, else make), make (system "
                   "arm-none-eabi-gcc) or pio")] = "auto",
          kernels: KernelsOpt = "auto",
          arena: Annotated[str | None, typer.Option(
              help="place the models' arena in the board's extra RAM (ccm: qemu-stm32f4, psram: qemu-m4)")] = None,
          as_json: JsonOpt = False) -> None:
    """Build the firmware (ELF and BIN) for a board and report flash and RAM against its limits."""
    from lwcnn_mcu import builder as fw

    console = _out(as_json)
    with console.status(f"building firmware for {board}...", spinner="dots"):
        b = fw.build(board, model or ["mnist"], out, dataset=dataset, calib=calib, builder=builder, kernels=kernels,
                     arena=arena)
    r = b.report()
    if as_json:
        _emit_json(r)
        return
    t = Table(title=f"{r['board']} ({r['mcu']}): {r['elf']}")
    for col in ("memory", "used", "limit", "use"):
        t.add_column(col, justify="right")
    for mem in ("flash", "ram"):
        used, limit = r[f"{mem}_bytes"], r[f"{mem}_limit"]
        t.add_row(mem if mem == "flash" else "RAM", f"{used:,} B", f"{limit:,} B", f"{100 * used / limit:.1f}%")
    console.print(t)
    for m in r["models"]:
        console.print(f"model {m['name']}: weights {m['weights_bytes']:,} B, arena {m['arena_bytes']:,} B")
    console.print(f"project in {b.project}/ (platformio.ini for `pio run`, build.sh for the system toolchain)")


@app.command()
def selftest(board: BoardOpt = "qemu-m4",
             model: Annotated[str, typer.Option("--model", help="MODEL (default: the shipped mnist)")] = "mnist",
             dataset: Annotated[str | None, typer.Option(help="dataset of the built-in test images")] = None,
             as_json: JsonOpt = False) -> None:
    """Build for an emulated board, boot it, and compare its answers on test images with the host C."""
    from lwcnn_mcu import boards as bd
    from lwcnn_mcu import builder as fw
    from lwcnn_mcu import datasets, emulator, hostrun

    console = _out(as_json)
    bo = bd.get(board)
    with console.status(f"building and booting {bo.name} on QEMU {bo.qemu_machine}...", spinner="dots"):
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=f"lwcnn-selftest-{bo.name}-"))
        try:
            b = fw.build(board, model, tmp / "fw", dataset=dataset)
            st = emulator.run_selftest(bo, b.elf)
            host = hostrun.build_host(b.compiled.gen.files).run(b.test_inputs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    same = [bool(np.array_equal(a, h)) for a, h in zip(st.outputs, host, strict=True)]
    ds = dataset or (model if model in datasets.CLASS_NAMES else None)
    names = datasets.CLASS_NAMES.get(ds or "", [])
    r = {"board": bo.name, "banner": st.banner, "samples": len(same), "agree_with_host": sum(same),
         "instructions": st.instructions, "outputs": [bytes(o.view(np.uint8)).hex() for o in st.outputs]}
    if as_json:
        _emit_json(r)
    else:
        console.print(st.banner)
        t = Table(title=f"{bo.name}: on-target vs host-built C")
        for col in ("image", "target class", "host class", "bytes equal", "instructions"):
            t.add_column(col, justify="right")
        for i, (o, h, s, n) in enumerate(zip(st.outputs, host, same, st.instructions, strict=True)):
            cls = lambda v: f"{int(np.argmax(v))}" + (  # noqa: E731
                f" {names[int(np.argmax(v))]}" if names and names[int(np.argmax(v))] != str(int(np.argmax(v))) else "")
            t.add_row(str(i), cls(o), cls(h), "yes" if s else "[red]NO[/red]", f"{n:,}")
        console.print(t)
    if not all(same):
        raise MismatchError()


@app.command()
def flash(board: BoardOpt = "qemu-m4",
          port: Annotated[str | None, typer.Option(help="serial port of a real board")] = None,
          out: Annotated[Path | None, typer.Option("-o", "--out",
                                                   help="project folder (default build/<board>)")] = None,
          tcp_port: Annotated[int, typer.Option(help="local TCP port for an emulated board's UART")] = 4555,
          emulate: Annotated[bool, typer.Option(
              "--emulate", help="run a real board's image on QEMU (nucleo: netduinoplus2)")] = False) -> None:
    """Upload the built firmware to the board, or start the emulated board with its UART on a TCP port."""
    from lwcnn_mcu import boards as bd
    from lwcnn_mcu import flashing

    flashing.flash(bd.get(board), out or Path("build") / bd.get(board).name, port=port, tcp_port=tcp_port,
                   console=err, emulate=emulate)


@app.command()
def bench(board: Annotated[str | None, typer.Option("--board", help="an emulated board to start, or the board "
                                                    "behind --port")] = None,
          port: Annotated[str | None, typer.Option(
              help="serial port of a flashed board (/dev/ttyACM0, socket://...)")] = None,
          model: Annotated[str, typer.Option("--model", help="MODEL (default: the shipped mnist)")] = "mnist",
          dataset: Annotated[str | None, typer.Option(help="test images and labels from this dataset")] = None,
          data: Annotated[str | None, typer.Option(
              help="test inputs X.npy, float32 (N,H,W,C); (N,C,H,W) for .onnx")] = None,
          labels: Annotated[str | None, typer.Option(help="labels Y.npy for --data")] = None,
          calib: Annotated[str | None, typer.Option(
              help="calibration inputs X.npy for a .keras or .onnx model (NCHW for .onnx)")] = None,
          samples: Annotated[int, typer.Option(help="how many inputs to run on the device")] = 100,
          layers: Annotated[bool, typer.Option("--layers", help="also time every layer on the device")] = False,
          cycles: Annotated[bool, typer.Option(
              "--cycles", help="emulated board: also estimated Cortex-M4 cycles (docs/cycles.md)")] = False,
          plot: Annotated[Path | None, typer.Option(help="write a PNG: latency histogram, trace, layers")] = None,
          save: Annotated[bool, typer.Option(help="save the result as JSON in the results folder")] = True,
          results: Annotated[Path | None, typer.Option(
              help="results folder (default: $LWCNN_RESULTS, else ./lwcnn-results)")] = None,
          kernels: KernelsOpt = "auto",
          timeout: Annotated[float | None, typer.Option(
              help="seconds to wait for each reply before a retry (default 5 on a port, 30 on an emulated "
                   "board, whose QEMU a loaded host may stall)")] = None,
          as_json: JsonOpt = False) -> None:
    """Latency and on-target accuracy over the serial port, every output checked against the host C.

    A run the link stops (too many resets in a row, no valid reply after the retries) still reports
    what it measured, then exits 2 (1 when a recorded output differs from the host C)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lwcnn_mcu import bench as b

    if dataset and data:
        raise LwcnnError("give either --dataset or --data, not both")
    if samples < 1:
        raise LwcnnError(f"--samples must be at least 1 (got {samples})")
    if timeout is not None and not timeout > 0:
        raise LwcnnError(f"--timeout must be positive (got {timeout})")
    stopped: LwcnnError | None = None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as prog:
        task = prog.add_task("building and connecting", total=samples)
        try:
            r = b.run_bench(board=board, port=port, model=model, dataset=dataset, data=data, labels=labels,
                            calib=calib, samples=samples, layers=layers, kernels=kernels, device_timeout=timeout,
                            cycles=cycles,
                            progress=lambda i, n: prog.update(task, completed=i,
                                                              description="inferences on the device"))
        except b.BenchStopped as exc:
            r, stopped = exc.report, exc
    if save:
        r["saved_to"] = str(b.save_result(r, results or b.results_dir()))
    if plot and r["samples"]:
        b.plot(r, plot)
    out = {k: v for k, v in r.items() if k != "per_inference"}
    if as_json:
        _emit_json(out)
    else:
        _print_bench(r)
    for w in r.get("warnings", []):  # e.g. the device is not at its rated clock
        err.print(f"lwcnn-mcu: warning: {w}", markup=False, highlight=False, soft_wrap=True)
    if stopped is not None:
        if r["agree_with_host"] != r["samples"]:
            err.print(f"lwcnn-mcu: error: {stopped.message}", markup=False, highlight=False, soft_wrap=True)
            raise MismatchError()
        raise stopped
    b.check(r)


def _print_bench(r: dict[str, Any]) -> None:
    console = _stdout()
    unit = r.get("unit") or ("instructions" if r["emulated"] else "cycles")
    t = Table(title=f"bench {Path(r['model']).name} on {r['board']} ({r['samples']} inputs, {r['data']})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("outputs equal to host C", f"{r['agree_with_host']}/{r['samples']}")
    t.add_row("on-target accuracy", _fmt(r["accuracy"]))
    t.add_row("host C accuracy", _fmt(r["host_accuracy"]))
    for k in ("min", "median", "p99", "max"):
        if r[unit] is None:  # a run stopped before its first output
            break
        ms = f"  ({r['latency_ms'][k]:.2f} ms)" if r.get("latency_ms") else ""
        t.add_row(f"{unit} {k}", f"{r[unit][k]:,.0f}{ms}")
    if unit == "instructions" and r["instructions_per_mac"] is not None:
        t.add_row("instructions per MAC", f"{r['instructions_per_mac']:.2f}")
    if r.get("est_cycles") is not None:
        t.add_row("estimated Cortex-M4 cycles (estimate)",
                  f"{r['est_cycles']:,} ({r['est_cycles_per_mac']:.2f} per MAC; zero-wait-state, docs/cycles.md)")
    if r["host_round_trip_ms"]:
        t.add_row("host round trip median", f"{r['host_round_trip_ms']['median']:.1f} ms")
    tr = r["transport"]
    t.add_row("transport errors / retries", f"{r['transport_errors']} / {tr['retries']} (crc {tr['crc_errors']}, "
              f"timeouts {tr['timeouts']}, device errors {tr['device_errors']}, resets {tr['device_resets']}, "
              f"lost inputs {tr['input_lost']})")
    if r.get("stopped"):
        t.add_row("[red]stopped[/red]", f"{r['samples']} of {r['samples_requested']} inputs done")
    console.print(t)
    if r.get("layers"):
        lt = Table(title="where the time goes", show_edge=False)
        est = any(x.get("est_cycles") is not None for x in r["layers"])
        cols = ("#", "layer", "op", "MACs", unit) + (("est. cycles",) if est else ()) + ("share", "")
        for col in cols:
            lt.add_column(col, justify="right" if col in ("#", "MACs", unit, "est. cycles", "share") else "left",
                          no_wrap=col not in ("layer", ""))
        total = sum(x[unit] for x in r["layers"]) or 1
        names = [x["name"] for x in r["layers"]]
        for x, name in zip(r["layers"], names, strict=True):
            share = x[unit] / total
            cells = [str(x["layer"]), name, x["op"].replace("_2D", ""), f"{x['macs']:,}", f"{x[unit]:,}"]
            if est:
                cells.append(f"{x['est_cycles']:,}" if x.get("est_cycles") is not None else "")
            lt.add_row(*cells, f"{100 * share:.1f}%", "█" * int(round(12 * share)))
        console.print(lt)
    if unit == "instructions":
        console.print("[dim]emulated board: counts are QEMU instructions (-icount shift=0), not cycles or time[/dim]")
    if r.get("saved_to"):
        console.print(f"[dim]saved {r['saved_to']}[/dim]")


@app.command()
def search(dataset: Annotated[str | None, typer.Option(help="mnist, fashion_mnist or cifar10")] = None,
           board: Annotated[str, typer.Option("--board", help="the board every model must fit")] = "qemu-m4",
           max_params: Annotated[int | None, typer.Option(help="Keras parameters at most")] = None,
           max_arena: Annotated[int | None, typer.Option(help="arena bytes (RAM) at most")] = None,
           max_flash: Annotated[int | None, typer.Option(help="firmware flash bytes on the board at most")] = None,
           max_instructions: Annotated[int | None, typer.Option(
               help="instructions per inference on the emulated Cortex-M4 at most")] = None,
           trials: Annotated[int | None, typer.Option(help="trials to add to the study")] = None,
           epochs: Annotated[int, typer.Option(help="stage-1 epochs per trial")] = 2,
           train_images: Annotated[int, typer.Option(
               help="a trial trains on the first N training images (0: all)")] = 20000,
           quick: Annotated[bool, typer.Option(help="data subset, small models, one epoch (for tests)")] = False,
           study: Annotated[str | None, typer.Option(help="study name (default: DATASET-BOARD)")] = None,
           storage: Annotated[str | None, typer.Option(
               help="Optuna storage: sqlite:///F.db (default OUT/search.db), postgresql://..., F.log, dask")] = None,
           scheduler: Annotated[str | None, typer.Option(help="an existing Dask scheduler, tcp://HOST:8786")] = None,
           workers: Annotated[int | None, typer.Option(help="local Dask workers (default: one per core)")] = None,
           out: Annotated[Path, typer.Option("-o", "--out", help="folder for the storage, models and plot")] = Path(
               "search"),
           show: Annotated[str | None, typer.Option("--show", help="report a study without running trials")] = None,
           as_json: JsonOpt = False) -> None:
    """Hardware-aware model search (Optuna on Dask): accuracy against instructions and arena, within budgets."""
    from lwcnn_mcu import search as s

    r = s.cli(dataset=dataset, board=board, budgets=s.Budgets(max_params, max_arena, max_flash, max_instructions),
              trials=trials, epochs=epochs, quick=quick, train_images=train_images, study=study, storage=storage,
              scheduler=scheduler, workers=workers, out_dir=out, show_study=show, as_json=as_json,
              console=err if as_json else _stdout())
    if as_json:
        _emit_json({k: v for k, v in r.items() if k != "all_feasible"})


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
    except ReferenceFailed as exc:  # a reference crashed or refused the model: not our bug, not bad input
        if debug:
            raise
        err.print(f"lwcnn-mcu: error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # an internal error: say so, keep the traceback behind --debug
        if debug:
            raise
        err.print(f"lwcnn-mcu: internal error: {type(exc).__name__}: {str(exc)[:500]} (rerun with --debug for the "
                  "traceback, and please report it)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(3)
