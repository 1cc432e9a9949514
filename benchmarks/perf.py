"""Performance side by side in one run: our kernels (DSP and portable C) against CMSIS-NN on the same models.

    LWCNN_DATASETS=../shared/datasets LWCNN_CMSIS_NN=../shared/third_party/CMSIS-NN-99f736a6.tar.gz \
        .venv/bin/python benchmarks/perf.py [--samples 3] [--models a,b] [--quick]

Suite: the MLPerf Tiny reference architectures rebuilt in Keras from their public definitions (tests/corpus.py,
random weights: ResNet-8, DS-CNN, MobileNetV1 0.25 for visual wake words, the FC autoencoder), Net A and Net B
(a paper-sized MNIST CNN and a depthwise-separable one) and the shipped models. Each is built three ways for the
emulated Cortex-M4 (QEMU mps2-an386, -icount shift=0): our DSP kernels (SXTB16/SMLAD), our portable C kernels,
and CMSIS-NN's s8 kernels (`--kernels cmsis-nn`, its DSP path; ops it lacks run on ours and are listed). Every
board output is checked against the host C of its build, and every host C against TFLite Micro on the same
inputs. Per model: instructions per inference (exact, median over --samples inputs) and per MAC, ours / CMSIS-NN,
estimated Cortex-M4 cycles (`bench --cycles`: an estimate, docs/cycles.md) and per MAC beside the published MLPerf
Tiny results on a Cortex-M4, flash (weights + code), and the arena beside CMSIS-NN's and TFLite Micro's for the
same .tflite; per layer, instructions and estimated cycles of both. Then the issue's targets (TARGETS: ours /
CMSIS-NN, estimated cycles per MAC against the published figure, the arena against TFLite Micro's, and the
geometric means), each met or its gap per model, and for every unmet one the layers that make most of the excess
(op, shape, the kernel path the backend chose, share). Writes benchmarks/results/perf.json and perf.md (machine,
commit, date) after every model, so a stopped run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lwcnn_mcu import bench, builder, models, reference  # noqa: E402

#: Published MLPerf Tiny v1.x results on a Cortex-M4 (NUCLEO-L4R5ZI at 120 MHz, closed division), as cycles per MAC
#: (latency x 120 MHz / the reference model's MACs), the best per benchmark, quoted by the performance issue. Not
#: measured here: printed beside our *estimated* cycles per MAC, and the issue's target is 0.8x of them.
PUBLISHED_M4_CYCLES_PER_MAC = {
    "mlperf_ic_resnet8": (1.58, "X-CUBE-AI 9.0"), "mlperf_kws_dscnn": (1.95, "X-CUBE-AI 9.0"),
    "mlperf_vww_mobilenet": (1.42, "X-CUBE-AI 9.0"), "mlperf_ad_autoencoder": (1.84, "Plumerai"),
}
KERNELS = ("auto", "portable", "cmsis-nn")  # ours with DSP instructions, ours in portable C, CMSIS-NN


@dataclass(frozen=True)
class Target:
    """A target of the performance issue (#16): a row's figure ``field`` at most ``factor`` (times the row's
    ``reference`` figure when one is named), on every suite model that has the figures (scope "model") or as the
    geometric mean over them ("geomean"). An unmet per-model target is split over the layers: each layer's
    ``layer_field`` minus factor x its ``layer_base`` (the same sum the model's figure is made of), so the layers
    that make the excess can be named; a target without a per-layer split (the arena) says why from the plan."""

    name: str  # its key in perf.json
    what: str  # the figure, as the tables call it
    field: str
    factor: float
    scope: str = "model"
    reference: str | None = None
    reference_what: str = ""
    layer_field: str | None = None  # per layer: ours
    layer_base: str | None = None  # per layer: what factor multiplies ("macs", or the same figure of CMSIS-NN)

    @property
    def title(self) -> str:
        bound = f"{self.factor:g}x {self.reference_what}" if self.reference else f"{self.factor:g}"
        return f"{self.what}{', geometric mean' if self.scope == 'geomean' else ''} ≤ {bound}"


#: The targets, the one place they are stated (issue #16, item 4 and 5); perf.md's Targets section and perf.json's
#: "targets" come from here.
TARGETS = (
    Target("instructions_vs_cmsis_nn", "ours / CMSIS-NN instructions", "ratio_vs_cmsis_nn", 0.6,
           layer_field="instructions_dsp", layer_base="instructions_cmsis_nn"),
    Target("est_cycles_per_mac", "est. cycles/MAC", "est_cycles_per_mac_dsp", 0.8,
           reference="published_m4_cycles_per_mac", reference_what="published M4", layer_field="est_cycles_dsp",
           layer_base="macs"),
    Target("arena_vs_tflm", "arena / TFLM activation arena", "arena_ratio", 1.0),
    Target("instructions_vs_cmsis_nn_geomean", "ours / CMSIS-NN instructions", "ratio_vs_cmsis_nn", 0.5, "geomean"),
    Target("arena_vs_tflm_geomean", "arena / TFLM activation arena", "arena_ratio", 0.5, "geomean"),
)
TARGET = {t.name: t for t in TARGETS}
#: per unmet target, at most this many layers (or models, for a geometric mean) named as the reason
TOP_REASONS = 3


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


def _suite(work: Path, only: set[str] | None, quick: bool) -> list[tuple[str, str, str | None]]:
    """(label, model file or shipped name, dataset) of every suite model, its .tflite written under work."""
    from tests import corpus

    out: list[tuple[str, str, str | None]] = []
    names = ["mlperf_kws_dscnn"] if quick else ["mlperf_ic_resnet8", "mlperf_kws_dscnn", "mlperf_vww_mobilenet",
                                                 "mlperf_ad_autoencoder"]
    for name in names:
        if only is None or name in only:
            m = corpus.CORPUS[name]()
            shape = tuple(int(d) for d in m.inputs[0].shape[1:])
            p = work / f"{name}.tflite"
            p.write_bytes(corpus.int8_io(m, corpus.calibration(name, 32, seed=0, shape=shape)))
            out.append((name, str(p), None))
    nets = _keras_nets()
    for name in ([] if quick else ["net_a", "net_b"]):
        if only is None or name in only:
            p = work / f"{name}.tflite"
            p.write_bytes(_tflite(nets[name](), seed=1))
            out.append((name, str(p), None))
    out += [(f"shipped {n}", n, n) for n in ([] if quick else models.SHIPPED)
            if models.shipped_path(n).is_file() and (only is None or n in only)]
    return out


def measure(label: str, model: str, ds: str | None, samples: int, work: Path) -> tuple[dict, list]:
    from lwcnn_mcu import backend, compiler, hostrun

    t0 = time.time()
    runs = {k: bench.run_bench(board="qemu-m4", port=None, model=model, dataset=ds, data=None, labels=None,
                               samples=samples, layers=True, kernels=k, cycles=k != "portable")
            for k in KERNELS}
    c = compiler.compile_model(model, dataset=ds)
    cm = compiler.compile_model(model, dataset=ds, options=backend.Options(kernels="cmsis-nn"))
    # every build's host C against TFLite Micro on the inputs the board ran (bench: random int8, seed 0)
    x = np.random.default_rng(0).integers(-128, 128, (samples, c.graph.input.size)).astype(np.int8)
    equal = {}
    try:
        expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
        for k, files in (("lw", c.gen.files), ("cmsis-nn", cm.gen.files)):
            equal[k] = bool(np.array_equal(hostrun.build_host(files).run(x), expect))
        tflm, tflm_error = reference.tflm_arena(c.tflite, c.graph.input.shape), None
    except reference.ReferenceFailed as exc:  # the figures are unavailable, the rest of the row stands
        tflm, tflm_error = {}, exc.message
    b = builder.build("qemu-m4", model, work / f"fw-{label.replace(' ', '_')}", dataset=ds)
    macs = max(1, c.report["macs"])
    r, rp, rc = runs["auto"], runs["portable"], runs["cmsis-nn"]
    pub = PUBLISHED_M4_CYCLES_PER_MAC.get(label)
    row = {
        "model": label, "macs": c.report["macs"], "params": c.report["params"],
        "outputs_equal_host": {k: v["agree_with_host"] == v["samples"] for k, v in runs.items()},
        "host_c_equals_tflm": equal or None, "tflm_error": tflm_error,
        "instructions_dsp": r["instructions"]["median"], "instructions_portable": rp["instructions"]["median"],
        "instructions_cmsis_nn": rc["instructions"]["median"],
        "instructions_per_mac_dsp": r["instructions"]["median"] / macs,
        "instructions_per_mac_cmsis_nn": rc["instructions"]["median"] / macs,
        "ratio_vs_cmsis_nn": r["instructions"]["median"] / rc["instructions"]["median"],
        "est_cycles_dsp": r.get("est_cycles"), "est_cycles_cmsis_nn": rc.get("est_cycles"),
        "est_cycles_per_mac_dsp": r.get("est_cycles_per_mac"),
        "est_cycles_per_mac_cmsis_nn": rc.get("est_cycles_per_mac"),
        "published_m4_cycles_per_mac": pub[0] if pub else None, "published_by": pub[1] if pub else None,
        "target_est_cycles_per_mac": target_limit(TARGET["est_cycles_per_mac"],
                                                  {"published_m4_cycles_per_mac": pub[0]}) if pub else None,
        "cmsis_nn_fallback": cm.report.get("fallback"),
        "arena_bytes": c.report["arena_bytes"], "arena_bytes_cmsis_nn": cm.report["arena_bytes"],
        "arena_lower_bound": c.plan.lower_bound, "arena_peak_layer": c.plan.peak_op,
        "arena_gap_reason": c.plan.gap_reason,
        "tflm_arena_head": tflm.get("head"), "tflm_arena_total": tflm.get("total"),
        "arena_ratio": c.report["arena_bytes"] / tflm["head"] if tflm.get("head") else None,
        "weights_bytes": c.report["weights_bytes"], "code_bytes": code_bytes(b.elf, c.gen.name),
        "firmware_flash": b.flash_bytes, "firmware_ram": b.ram_bytes, "seconds": round(time.time() - t0, 1),
    }
    # CMSIS-NN's layers beside ours (its build keeps a pooling after a convolution as a layer of its own)
    groups = group_layers([x["op"] for x in r["layers"]], [x["op"] for x in rc["layers"]])

    def theirs(k: int, key: str) -> int | None:
        if groups is None:
            return None
        vals = [rc["layers"][i].get(key) for i in groups[k]]
        return None if any(v is None for v in vals) else sum(vals)

    layers = [{"layer": x["layer"], "op": x["op"], "shape": layer_shape(kern.kind, kern.params),
               "kernel": backend.kernel_path(kern), "macs": x["macs"], "instructions_dsp": x["instructions"],
               "est_cycles_dsp": x.get("est_cycles"), "instructions_cmsis_nn": theirs(k, "instructions"),
               "est_cycles_cmsis_nn": theirs(k, "est_cycles"), "instructions_portable": y["instructions"]}
              for k, (x, y, kern) in enumerate(zip(r["layers"], rp["layers"], c.kernels, strict=True))]
    return row, layers


def _geo(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def group_layers(ours: list[str], theirs: list[str]) -> list[list[int]] | None:
    """For each of our layers (their ops), the CMSIS-NN build's layers it stands for: ours fuses a convolution
    with the pooling after it (CONV_2D+MAX_POOL_2D, passes.fuse_pooling), CMSIS-NN runs the two; None when the
    two builds' op sequences do not line up that way."""
    groups, j = [], 0
    for op in ours:
        parts = op.split("+")
        if theirs[j:j + len(parts)] != parts:
            return None
        groups.append(list(range(j, j + len(parts))))
        j += len(parts)
    return groups if j == len(theirs) else None


def layer_shape(kind: str, p: dict[str, int]) -> str:
    """The shape facts that explain a layer's cost, from its kernel's params: kernel size, channels in and out,
    stride, output size (and the fused pooling), or the inputs and outputs of a dense layer."""
    if {"k_h", "in_c", "out_c", "out_h", "out_w"} <= p.keys():
        stride = f" stride {p['stride_h']}" + (f"x{p['stride_w']}" if p["stride_w"] != p["stride_h"] else "") \
            if p.get("stride_h", 1) != 1 or p.get("stride_w", 1) != 1 else ""
        per_channel = kind.split("/")[-1] not in ("conv", "convpool")  # depthwise, pooling: channel by channel
        ch = f" x{p['in_c']}" if per_channel and p["out_c"] == p["in_c"] else f" {p['in_c']}->{p['out_c']}"
        pool = f" + {p['pool_h']}x{p['pool_w']} {'avg' if p['pool_avg'] else 'max'} pool" if "pool_h" in p else ""
        return f"{p['k_h']}x{p['k_w']}{ch}{stride} at {p['out_h']}x{p['out_w']}{pool}"
    if {"in_n", "out_n"} <= p.keys():
        return f"{p['in_n']}->{p['out_n']}"
    if {"n0", "n1", "n2", "n3"} <= p.keys():
        return f"{p['n0'] * p['n1'] * p['n2'] * p['n3']:,} elements"
    return ""


def target_limit(t: Target, row: dict) -> float | None:
    """A per-model target's limit for this row (None: the row lacks the reference figure)."""
    if t.reference is None:
        return t.factor
    ref = row.get(t.reference)
    return None if ref is None else t.factor * ref


def _fmt_pair(value: float, limit: float) -> tuple[str, str]:
    """value and limit with enough decimals to tell them apart (2, up to 4)."""
    d = 2
    while d < 4 and value != limit and f"{value:.{d}f}" == f"{limit:.{d}f}":
        d += 1
    return f"{value:.{d}f}", f"{limit:.{d}f}"


def gap_text(value: float, limit: float) -> str:
    """'0.77 > 0.60: 28% over (22% less meets it)': how far above the limit, as a share of the limit, and the
    share of the value that would have to go."""
    v, lim = _fmt_pair(value, limit)
    over, cut = value / limit - 1, 1 - limit / value

    def pct(x: float) -> str:
        return f"{x:.0%}" if x >= 0.01 else f"{x:.1%}"

    return f"{v} > {lim}: {pct(over)} over ({pct(cut)} less meets it)"


def check(t: Target, value: float | None, limit: float | None) -> dict | None:
    """{name, title, limit, value, met, gap}; None when the figure or the limit is unavailable."""
    if value is None or limit is None:
        return None
    met = value <= limit
    return {"name": t.name, "title": t.title, "what": t.what, "limit": limit, "value": value, "met": met,
            "gap": None if met else gap_text(value, limit)}


def layer_label(x: dict) -> str:
    """'#0 CONV_2D 3x3 3->16 at 32x32 [2x2 tile, gathered patch (3 input channels, not 4k)]'."""
    shape = f" {x['shape']}" if x.get("shape") else ""
    kernel = f" [{x['kernel']}]" if x.get("kernel") else ""
    return f"#{x['layer']} {x['op']}{shape}{kernel}"


def _layer_excess(t: Target, row: dict, layers: list[dict], limit: float) -> tuple[list[tuple[dict, float]], str]:
    """(layer, excess) of every layer, and what its part of the target is measured in ("macs" or t.layer_base).

    A layer's excess is its ``layer_field`` minus limit x its ``layer_base`` (its own CMSIS-NN figure, or its MACs):
    what it spends above its part of the target. Where CMSIS-NN's per-layer figure is missing, its part is the
    model's target rate spread over MACs (limit x CMSIS-NN's total / the model's MACs, per MAC)."""
    if t.layer_field is None or t.layer_base is None or not layers \
            or any(x.get(t.layer_field) is None for x in layers):
        return [], ""
    base_key, scale = t.layer_base, 1.0
    if base_key != "macs" and any(x.get(base_key) is None for x in layers):
        scale = row[base_key] / max(1, row["macs"])  # the model's figure per MAC: the target's rate
        base_key = "macs"
    return [(x, x[t.layer_field] - limit * scale * x[base_key]) for x in layers], base_key


def excess_layers(t: Target, row: dict, layers: list[dict], limit: float) -> list[dict]:
    """The layers that make most of an unmet per-model target's excess (at most TOP_REASONS, largest first; the
    excess as _layer_excess). share: the layer's excess over the sum of all layers' positive excess."""
    excess, base_key = _layer_excess(t, row, layers, limit)
    total = sum(e for _, e in excess if e > 0)
    if total <= 0:
        return []
    top = sorted((xe for xe in excess if xe[1] > 0), key=lambda xe: -xe[1])[:TOP_REASONS]
    out = []
    for x, e in top:
        r = {"layer": x["layer"], "op": x["op"], "shape": x.get("shape"), "kernel": x.get("kernel"),
             "value": x[t.layer_field], "excess": e, "share": e / total, "against": base_key}
        if base_key == "macs":
            r["per_mac"] = x[t.layer_field] / x["macs"] if x["macs"] else None
        else:
            r["ratio"] = x[t.layer_field] / x[base_key] if x[base_key] else None
        out.append(r)
    return out


def excess_by_kernel(t: Target, row: dict, layers: list[dict], limit: float) -> list[dict]:
    """The positive excess of all layers summed per (op, kernel path), largest first (at most TOP_REASONS):
    where a model of many alike layers spends its excess. layers: how many layers of the group are above."""
    excess, _ = _layer_excess(t, row, layers, limit)
    total = sum(e for _, e in excess if e > 0)
    groups: dict[tuple[str, str], list[float]] = {}
    for x, e in excess:
        if e > 0:
            groups.setdefault((x["op"], x.get("kernel") or ""), []).append(e)
    top = sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:TOP_REASONS]
    return [{"op": op, "kernel": kernel or None, "layers": len(es), "excess": sum(es), "share": sum(es) / total}
            for (op, kernel), es in top]


def reason_text(t: Target, reasons: list[dict], kernels: list[dict] | None = None) -> str:
    """The layers of excess_layers as one line, then (when some group has more than one layer) the excess per
    kernel path of excess_by_kernel."""
    unit = "est. cycles" if t.layer_field and "cycles" in t.layer_field else "instructions"
    parts = []
    for r in reasons:
        if r.get("ratio") is not None:
            own = f"{r['ratio']:.2f}x CMSIS-NN's"
        elif r.get("per_mac") is not None:
            own = f"{r['per_mac']:.2f}/MAC"
        else:
            own = "no MACs"
        parts.append(f"{layer_label(r)}: +{r['excess']:,.0f} {unit} ({own}; {r['share']:.0%})")
    text = "; ".join(parts)
    if reasons and reasons[0]["against"] == "macs" and t.layer_base != "macs":
        text = "(no CMSIS-NN per-layer figures: each layer against the target's rate per MAC) " + text
    if kernels and any(k["layers"] > 1 for k in kernels):
        text += ". By kernel: " + ", ".join(
            f"{k['op']}{' [' + k['kernel'] + ']' if k['kernel'] else ''} x{k['layers']} {k['share']:.0%}"
            for k in kernels)
    return text


def arena_reason(row: dict, layers: list[dict]) -> str | None:
    """Why the arena is above TFLite Micro's: the planner's lower bound (the most bytes alive at once) and the
    layer where it is reached, and, when the plan is above the bound, the planner's own reason."""
    lb, tflm = row.get("arena_lower_bound"), row.get("tflm_arena_head")
    if lb is None or tflm is None:
        return None
    peak = row.get("arena_peak_layer")
    at = ""
    if peak is not None and 0 <= peak < len(layers):
        at = f" at {layer_label(layers[peak])}"
    text = (f"lower bound {lb:,} B (the most bytes alive at once{at}) {'>' if lb > tflm else '≤'} "
            f"TFLite Micro's {tflm:,} B")
    if row["arena_bytes"] > lb:
        text += f"; plan {row['arena_bytes']:,} B above the bound: {row.get('arena_gap_reason') or 'no reason given'}"
    return text


def model_targets(row: dict, layers: list[dict]) -> list[dict]:
    """Every per-model target that applies to this row, met or with its gap and, when unmet, its reason."""
    out = []
    for t in TARGETS:
        if t.scope != "model":
            continue
        limit = target_limit(t, row)
        c = check(t, row.get(t.field), limit)
        if c is None:
            continue
        if not c["met"]:
            assert limit is not None
            if t.layer_field is not None:
                c["layers"] = excess_layers(t, row, layers, limit)
                c["kernels"] = excess_by_kernel(t, row, layers, limit)
                c["reason"] = reason_text(t, c["layers"], c["kernels"]) or None
            else:
                c["reason"] = arena_reason(row, layers)
        out.append(c)
    return out


def geomean_targets(rows: list[dict]) -> list[dict]:
    """The geometric-mean targets over the rows that have the figure; when unmet, the models furthest above
    the limit (``models``: label, value) as the reason."""
    out = []
    for t in TARGETS:
        if t.scope != "geomean":
            continue
        vals = [(r["model"], r[t.field]) for r in rows if r.get(t.field)]
        c = check(t, _geo([v for _, v in vals]), t.factor)
        if c is None:
            continue
        c["models_counted"] = len(vals)
        if not c["met"]:
            above = sorted((mv for mv in vals if mv[1] > t.factor), key=lambda mv: -mv[1])[:TOP_REASONS]
            c["models"] = [{"model": m, "value": v} for m, v in above]
            c["reason"] = "furthest above: " + ", ".join(f"{m} {v:.2f}" for m, v in above) if above else None
        out.append(c)
    return out


def unequal(row: dict) -> list[str]:
    """What of a row's bit-exactness failed: a board output against its build's host C (each build), a host C
    against TFLite Micro (ours, CMSIS-NN's), or the TFLite Micro run itself. Empty: all equal."""
    out = [f"{k} board != host C" for k, ok in (row.get("outputs_equal_host") or {}).items() if not ok]
    tflm = row.get("host_c_equals_tflm")
    if not tflm:
        out.append(f"no TFLite Micro run ({row.get('tflm_error') or 'not compared'})")
    else:
        out += [f"{k} host C != TFLite Micro" for k, ok in tflm.items() if not ok]
    return out


def targets_md(rows: list[dict], geo: list[dict]) -> list[str]:
    """perf.md's Targets section: per model each target met (✓ and the value) or its gap, the geometric means,
    then per unmet target the reason."""
    per_model = [t for t in TARGETS if t.scope == "model"]
    md = ["", "## Targets", "",
          "Issue #16's targets per model: ✓ met (the value), or the gap (value > limit, how far over, how much less "
          "would meet it); – where a figure is missing (no published M4 result, no TFLite Micro arena). Outputs: "
          "every board output (three builds) equal to its host C, and both host C builds to TFLite Micro.", "",
          "| model | outputs = TFLite Micro | " + " | ".join(t.title for t in per_model) + " |",
          "| --- | --- |" + " --- |" * len(per_model)]
    for r in rows:
        got = {c["name"]: c for c in r.get("targets", [])}
        cells = []
        for t in per_model:
            c = got.get(t.name)
            cells.append("–" if c is None else f"✓ {_fmt_pair(c['value'], c['limit'])[0]}" if c["met"] else c["gap"])
        md.append(f"| {r['model']} | {'; '.join(unequal(r)) or '✓'} | " + " | ".join(cells) + " |")
    md += ["", "| geometric mean over the models | value | target | met or gap |", "| --- | ---: | ---: | --- |"]
    for c in geo:
        md.append(f"| {c['what']} ({c['models_counted']} models) | {c['value']:.2f} | "
                  f"≤ {c['limit']:g} | {'✓' if c['met'] else c['gap']} |")
    reasons = [(r["model"], c) for r in rows for c in r.get("targets", []) if not c["met"]]
    if reasons or any(not c["met"] for c in geo):
        md += ["", "Where the excess goes: per unmet target, the layers furthest above their part of it (est. cycles "
               "above limit x MACs; instructions above limit x CMSIS-NN's for the same layer), each with its own "
               "rate and its share of the layers' excess; [kernel path] as the backend chose it.", ""]
        md += [f"- {m}, {c['title']} ({c['gap'].split(':')[0]}): {c.get('reason') or 'no per-layer figures'}"
               for m, c in reasons]
        md += [f"- {c['title']} ({c['gap'].split(':')[0]}): {c.get('reason') or '–'}" for c in geo if not c["met"]]
    return md


def write(rows: list[dict], layer_tables: dict, samples: int, out: Path, stem: str) -> None:
    geo_ratio = _geo([r["ratio_vs_cmsis_nn"] for r in rows])
    geo_arena = _geo([r["arena_ratio"] for r in rows if r["arena_ratio"]])
    for r in rows:
        r["targets"] = model_targets(r, layer_tables[r["model"]])
    geo = geomean_targets(rows)
    res = {"rows": rows, "layers": layer_tables, "ratio_vs_cmsis_nn_geomean": geo_ratio,
           "arena_ratio_geomean": geo_arena, "targets_geomean": geo,
           "targets": [{"name": t.name, "title": t.title, "scope": t.scope, "field": t.field, "factor": t.factor,
                        "reference": t.reference} for t in TARGETS],
           "samples": samples,
           "board": "qemu-m4 (QEMU mps2-an386, Cortex-M4, -icount shift=0)", "machine": bench.machine(),
           "cycle_model": "estimated Cortex-M4 cycles: executed instructions priced with the Cortex-M4 TRM, "
                          "zero-wait-state memory (docs/cycles.md)",
           "commit": bench._git_commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")

    def num(v: object, fmt: str = ",") -> str:
        return "–" if v is None else format(v, fmt if not isinstance(v, float) or fmt != "," else ",.0f")

    md = [f"Emulated Cortex-M4 (QEMU mps2-an386), commit {res['commit']}, {res['date']}: instructions per inference "
          f"(median of {samples} inputs; exact) and estimated cycles (an estimate: docs/cycles.md), our kernels and "
          "CMSIS-NN's on the same models in one run; "
          + ("every output equal to the host C, every host C to TFLite Micro." if not any(unequal(r) for r in rows)
             else "outputs NOT all equal: see the Targets section's first column."),
          "",
          "| model | MACs | ours DSP | per MAC | ours portable | CMSIS-NN | per MAC | ours / CMSIS-NN | "
          "est. cycles/MAC ours | CMSIS-NN | published M4 | target | arena B | CMSIS-NN arena | TFLM arena "
          "(act./total) | weights B | code B |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: | ---: |"]
    for r in rows:
        md.append(f"| {r['model']} | {r['macs']:,} | {num(r['instructions_dsp'])} | "
                  f"{r['instructions_per_mac_dsp']:.2f} | {num(r['instructions_portable'])} | "
                  f"{num(r['instructions_cmsis_nn'])} | {r['instructions_per_mac_cmsis_nn']:.2f} | "
                  f"{r['ratio_vs_cmsis_nn']:.2f} | {num(r['est_cycles_per_mac_dsp'], '.2f')} | "
                  f"{num(r['est_cycles_per_mac_cmsis_nn'], '.2f')} | {num(r['published_m4_cycles_per_mac'], '.2f')} | "
                  f"{num(r['target_est_cycles_per_mac'], '.2f')} | {r['arena_bytes']:,} | "
                  f"{r['arena_bytes_cmsis_nn']:,} | {num(r['tflm_arena_head'])} / {num(r['tflm_arena_total'])} | "
                  f"{r['weights_bytes']:,} | {r['code_bytes']:,} |")
    md += ["", "Published M4: the best published MLPerf Tiny result on a Cortex-M4 (NUCLEO-L4R5ZI, 120 MHz) as cycles "
           f"per MAC (not measured here); target: {TARGET['est_cycles_per_mac'].factor:g}x of it."]
    md += [f"CMSIS-NN build of {r['model']}: ops on our kernels: {', '.join(r['cmsis_nn_fallback'])}" for r in rows
           if r.get("cmsis_nn_fallback")]
    md += targets_md(rows, geo)

    def ratio(a: int | None, b: int | None) -> str:
        return f"{a / b:.2f}" if a is not None and b else "–"

    for label, layers in layer_tables.items():
        md += ["", f"Per layer, {label} (CMSIS-NN: its layers for the same ops, a fused pooling's included):", "",
               "| # | op | shape | kernel | MACs | ours DSP: instructions | per MAC | CMSIS-NN | ours / CMSIS-NN | "
               "est. cycles | per MAC | ours portable |",
               "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        md += [f"| {x['layer']} | {x['op']} | {x.get('shape') or ''} | {x.get('kernel') or ''} | {x['macs']:,} | "
               f"{x['instructions_dsp']:,} | {ratio(x['instructions_dsp'], x['macs'])} | "
               f"{num(x.get('instructions_cmsis_nn'))} | {ratio(x['instructions_dsp'], x.get('instructions_cmsis_nn'))}"
               f" | {num(x['est_cycles_dsp'])} | {ratio(x['est_cycles_dsp'], x['macs'])} | "
               f"{x['instructions_portable']:,} |" for x in layers]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")


def main() -> None:
    from lwcnn_mcu.util import quiet_tensorflow

    quiet_tensorflow()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="DS-CNN only (a smoke test)")
    ap.add_argument("--models", default=None, help="comma-separated subset: mlperf_kws_dscnn,net_a,mnist,...")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    from lwcnn_mcu import cmsis_nn

    cmsis_nn.locate()  # CMSIS-NN's sources first: a clear error before anything long runs
    work = Path(tempfile.mkdtemp(prefix="lwcnn-perf-"))
    os.chdir(work)
    only = set(args.models.split(",")) if args.models else None
    stem = "perf-quick" if args.quick or only else "perf"
    rows, layer_tables = [], {}
    for label, model, ds in _suite(work, only, args.quick):
        row, layers = measure(label, model, ds, args.samples, work)
        rows.append(row)
        layer_tables[label] = layers
        print(f"{label}: ours {row['instructions_dsp']:,.0f} instructions ({row['instructions_per_mac_dsp']:.2f}/MAC), "
              f"CMSIS-NN {row['instructions_cmsis_nn']:,.0f} ({row['ratio_vs_cmsis_nn']:.2f}x); est. cycles/MAC "
              f"{row['est_cycles_per_mac_dsp']}; arena {row['arena_bytes']:,} vs TFLM {row['tflm_arena_head']}",
              flush=True)
        write(rows, layer_tables, args.samples, args.out, stem)
        print(f"{label}: targets: " + "; ".join(f"{c['title']}: {'✓' if c['met'] else c['gap']}"
                                                 for c in row["targets"]), flush=True)
    print((args.out / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
