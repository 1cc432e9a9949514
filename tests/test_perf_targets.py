"""The targets summary of benchmarks/perf.py (issue #16): met or the gap per model, and for an unmet target the
layers that make most of the excess. Synthetic rows, no emulator, no compiler."""

from __future__ import annotations

import pytest

from benchmarks import perf
from lwcnn_mcu import backend

T = perf.TARGET


def layer(k: int, op: str, macs: int, ours: int, cmsis: int | None = None, cycles: int | None = None,
          shape: str = "", kernel: str = "") -> dict:
    return {"layer": k, "op": op, "shape": shape, "kernel": kernel, "macs": macs, "instructions_dsp": ours,
            "instructions_cmsis_nn": cmsis, "est_cycles_dsp": cycles, "est_cycles_cmsis_nn": None,
            "instructions_portable": 2 * ours}


def row(model: str = "m", **kw: object) -> dict:
    r = {"model": model, "macs": 1000, "instructions_dsp": 2000, "instructions_cmsis_nn": 2500,
         "ratio_vs_cmsis_nn": 0.8, "est_cycles_per_mac_dsp": 2.0, "published_m4_cycles_per_mac": None,
         "arena_ratio": 0.5, "arena_bytes": 500, "tflm_arena_head": 1000, "arena_lower_bound": 500,
         "arena_peak_layer": 0, "arena_gap_reason": None,
         "outputs_equal_host": {"auto": True, "portable": True, "cmsis-nn": True},
         "host_c_equals_tflm": {"lw": True, "cmsis-nn": True}, "tflm_error": None}
    r.update(kw)
    return r


def by_name(checks: list[dict]) -> dict:
    return {c["name"]: c for c in checks}


def test_the_issues_targets_in_one_table():
    assert (T["instructions_vs_cmsis_nn"].factor, T["instructions_vs_cmsis_nn_geomean"].factor) == (0.6, 0.5)
    assert (T["arena_vs_tflm"].factor, T["arena_vs_tflm_geomean"].factor) == (1.0, 0.5)
    # the issue's cycles-per-MAC targets: 0.8x the published M4 figures
    limits = {m: round(perf.target_limit(T["est_cycles_per_mac"], {"published_m4_cycles_per_mac": v}), 2)
              for m, (v, _) in perf.PUBLISHED_M4_CYCLES_PER_MAC.items()}
    assert limits == {"mlperf_ic_resnet8": 1.26, "mlperf_kws_dscnn": 1.56, "mlperf_vww_mobilenet": 1.14,
                      "mlperf_ad_autoencoder": 1.47}


def test_gap_text():
    assert perf.gap_text(0.77, 0.6) == "0.77 > 0.60: 28% over (22% less meets it)"
    assert perf.gap_text(2.18, 1.264) == "2.18 > 1.26: 72% over (42% less meets it)"
    # equal at two decimals: more digits, and a fraction of a percent
    assert perf.gap_text(0.6012, 0.6) == "0.601 > 0.600: 0.2% over (0.2% less meets it)"


def test_met_unmet_and_not_applicable():
    t = T["instructions_vs_cmsis_nn"]
    assert perf.check(t, 0.6, 0.6)["met"] is True
    assert perf.check(t, 0.6, 0.6)["gap"] is None
    c = perf.check(t, 0.61, 0.6)
    assert c["met"] is False and c["gap"].startswith("0.61 > 0.60")
    assert perf.check(t, None, 0.6) is None
    # no published figure: the cycles target does not apply to the model (not "met")
    names = by_name(perf.model_targets(row(), []))
    assert "est_cycles_per_mac" not in names
    assert set(names) == {"instructions_vs_cmsis_nn", "arena_vs_tflm"}
    assert names["arena_vs_tflm"]["met"] is True
    # no TFLite Micro arena: nor does the arena target
    assert "arena_vs_tflm" not in by_name(perf.model_targets(row(arena_ratio=None), []))


def test_instruction_excess_against_cmsis_per_layer():
    # layer 0 has the most instructions but is well under 0.6x CMSIS-NN's; 1 and 2 are over theirs
    layers = [layer(0, "CONV_2D", 600, 1000, cmsis=2000, shape="3x3 8->16 at 8x8", kernel="pw16, windows in place"),
              layer(1, "DEPTHWISE_CONV_2D", 300, 600, cmsis=500, shape="3x3 x16 at 8x8", kernel="dw_rows"),
              layer(2, "FULLY_CONNECTED", 100, 400, cmsis=0 + 300, shape="64->10", kernel="fc4")]
    r = row(instructions_dsp=2000, instructions_cmsis_nn=2800, ratio_vs_cmsis_nn=2000 / 2800)
    c = by_name(perf.model_targets(r, layers))["instructions_vs_cmsis_nn"]
    assert c["met"] is False
    assert [x["layer"] for x in c["layers"]] == [1, 2]
    assert c["layers"][0]["excess"] == pytest.approx(600 - 0.6 * 500)
    assert c["layers"][1]["excess"] == pytest.approx(400 - 0.6 * 300)
    assert c["layers"][0]["share"] == pytest.approx(300 / 520)
    assert c["layers"][0]["ratio"] == pytest.approx(1.2)
    assert "#1 DEPTHWISE_CONV_2D 3x3 x16 at 8x8 [dw_rows]: +300 instructions (1.20x CMSIS-NN's; 58%)" in c["reason"]
    assert "#0" not in c["reason"]


def test_instruction_excess_without_cmsis_layers_uses_the_target_rate():
    # no CMSIS-NN per-layer figures: each layer against 0.6 x CMSIS-NN's total per MAC (0.6 * 2500 / 1000 = 1.5)
    layers = [layer(0, "CONV_2D", 900, 1200), layer(1, "ADD", 0, 500), layer(2, "CONV_2D", 100, 300)]
    c = by_name(perf.model_targets(row(), layers))["instructions_vs_cmsis_nn"]
    excess = {x["layer"]: x["excess"] for x in c["layers"]}
    assert excess == pytest.approx({1: 500.0, 2: 150.0})  # layer 0: 1200 - 1350 < 0, not named
    assert c["layers"][0]["against"] == "macs"
    assert c["reason"].startswith("(no CMSIS-NN per-layer figures: each layer against the target's rate per MAC) ")
    assert "no MACs" in c["reason"]


def test_cycles_excess_per_layer_and_at_most_three():
    # layer 2 spends the most cycles, but on three times the MACs: it is nearly on target
    mc = ((1000, 1500), (1000, 3000), (3000, 3700), (1000, 2600), (1000, 1100))
    layers = [layer(k, "CONV_2D", m, 1500, cycles=c) for k, (m, c) in enumerate(mc)]
    r = row(macs=7000, est_cycles_per_mac_dsp=11900 / 7000, published_m4_cycles_per_mac=1.5)
    c = by_name(perf.model_targets(r, layers))["est_cycles_per_mac"]
    assert c["limit"] == pytest.approx(1.2)
    assert c["met"] is False
    # excess: est. cycles - 1.2 x MACs = 300, 1800, 100, 1400, -100
    assert [x["layer"] for x in c["layers"]] == [1, 3, 0]
    assert [x["share"] for x in c["layers"]] == pytest.approx([1800 / 3600, 1400 / 3600, 300 / 3600])
    assert c["layers"][0]["per_mac"] == pytest.approx(3.0)
    assert "+1,800 est. cycles (3.00/MAC; 50%)" in c["reason"]
    # met: no reason
    met = by_name(perf.model_targets(row(est_cycles_per_mac_dsp=1.1, published_m4_cycles_per_mac=1.5), layers))
    assert met["est_cycles_per_mac"]["met"] is True and "reason" not in met["est_cycles_per_mac"]


def test_excess_by_kernel_path():
    # three dw_rows layers, each less than the pointwise one, together more
    layers = [layer(0, "CONV_2D", 100, 10, cycles=400, kernel="pw16, windows in place"),
              *[layer(k, "DEPTHWISE_CONV_2D", 100, 10, cycles=300, kernel="dw_rows") for k in (1, 2, 3)],
              layer(4, "CONV_2D", 100, 10, cycles=50, kernel="pw16, windows in place")]
    c = by_name(perf.model_targets(row(macs=500, est_cycles_per_mac_dsp=1350 / 500, published_m4_cycles_per_mac=1.25),
                                   layers))["est_cycles_per_mac"]
    assert c["layers"][0]["layer"] == 0  # 400 - 100 = 300 above; each dw_rows layer 200
    assert [(k["op"], k["kernel"], k["layers"]) for k in c["kernels"]] == [
        ("DEPTHWISE_CONV_2D", "dw_rows", 3), ("CONV_2D", "pw16, windows in place", 1)]
    assert c["kernels"][0]["share"] == pytest.approx(600 / 900)
    assert c["reason"].endswith(". By kernel: DEPTHWISE_CONV_2D [dw_rows] x3 67%, "
                                "CONV_2D [pw16, windows in place] x1 33%")


def test_met_on_the_limit_shows_two_decimals():
    md = perf.targets_md([row(arena_ratio=1.0, targets=perf.model_targets(row(arena_ratio=1.0), []))], [])
    assert "| ✓ 1.00 |" in "\n".join(md)


def test_cycles_without_per_layer_estimate_states_no_layers():
    layers = [layer(0, "CONV_2D", 1000, 1500, cycles=None)]
    c = by_name(perf.model_targets(row(published_m4_cycles_per_mac=1.0), layers))["est_cycles_per_mac"]
    assert c["met"] is False and c["layers"] == [] and c["reason"] is None


def test_arena_reason_names_the_peak_layer_and_the_plan_gap():
    layers = [layer(0, "CONV_2D", 10, 10, shape="1x1 16->32 at 8x8"), layer(1, "ADD", 0, 10)]
    r = row(arena_ratio=1.5, arena_bytes=1500, tflm_arena_head=1000, arena_lower_bound=1200, arena_peak_layer=0,
            arena_gap_reason="'x' at the top")
    c = by_name(perf.model_targets(r, layers))["arena_vs_tflm"]
    assert c["met"] is False and c["gap"].startswith("1.50 > 1.00: 50% over")
    assert c["reason"] == ("lower bound 1,200 B (the most bytes alive at once at #0 CONV_2D 1x1 16->32 at 8x8) > "
                           "TFLite Micro's 1,000 B; plan 1,500 B above the bound: 'x' at the top")


def test_geomean_targets_name_the_models_furthest_above():
    rows = [row("a", ratio_vs_cmsis_nn=0.8, arena_ratio=0.25), row("b", ratio_vs_cmsis_nn=0.4, arena_ratio=0.25),
            row("c", ratio_vs_cmsis_nn=0.9, arena_ratio=None)]
    g = by_name(perf.geomean_targets(rows))
    ins = g["instructions_vs_cmsis_nn_geomean"]
    assert ins["value"] == pytest.approx((0.8 * 0.4 * 0.9) ** (1 / 3))
    assert ins["met"] is False and ins["models_counted"] == 3
    assert [m["model"] for m in ins["models"]] == ["c", "a"]  # b is under 0.5
    assert ins["reason"] == "furthest above: c 0.90, a 0.80"
    arena = g["arena_vs_tflm_geomean"]
    assert arena["met"] is True and arena["models_counted"] == 2 and arena["value"] == pytest.approx(0.25)


def test_targets_section():
    layers = [layer(0, "CONV_2D", 1000, 1900, cmsis=2000, cycles=2500, shape="3x3 3->16 at 32x32",
                    kernel="2x2 tile, gathered patch (3 input channels, not 4k)")]
    rows = [row("x", instructions_dsp=1900, instructions_cmsis_nn=2000, ratio_vs_cmsis_nn=0.95,
                est_cycles_per_mac_dsp=2.5, published_m4_cycles_per_mac=2.0),
            row("y", ratio_vs_cmsis_nn=0.4, arena_ratio=None, host_c_equals_tflm=None, tflm_error="it aborted",
                outputs_equal_host={"auto": True, "portable": False, "cmsis-nn": True})]
    tables = {"x": layers, "y": []}
    for r in rows:
        r["targets"] = perf.model_targets(r, tables[r["model"]])
    md = "\n".join(perf.targets_md(rows, perf.geomean_targets(rows)))
    assert ("| model | outputs = TFLite Micro | ours / CMSIS-NN instructions ≤ 0.6 | "
            "est. cycles/MAC ≤ 0.8x published M4 | arena / TFLM activation arena ≤ 1 |") in md
    assert ("| x | ✓ | 0.95 > 0.60: 58% over (37% less meets it) | 2.50 > 1.60: 56% over (36% less meets it) | "
            "✓ 0.50 |") in md
    assert "| y | portable board != host C; no TFLite Micro run (it aborted) | ✓ 0.40 | – | – |" in md
    assert "- x, est. cycles/MAC ≤ 0.8x published M4 (2.50 > 1.60): #0 CONV_2D 3x3 3->16 at 32x32 " \
           "[2x2 tile, gathered patch (3 input channels, not 4k)]: +900 est. cycles (2.50/MAC; 100%)" in md
    assert "| ours / CMSIS-NN instructions (2 models) | 0.62 | ≤ 0.5 | 0.62 > 0.50: 23% over" in md


def test_unequal():
    assert perf.unequal(row()) == []
    assert perf.unequal(row(host_c_equals_tflm={"lw": True, "cmsis-nn": False})) == ["cmsis-nn host C != TFLite Micro"]


def test_group_layers():
    ours = ["CONV_2D+MAX_POOL_2D", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    theirs = ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert perf.group_layers(ours, theirs) == [[0, 1], [2], [3], [4]]
    assert perf.group_layers(ours, theirs[:-1]) is None
    assert perf.group_layers(ours, theirs + ["SOFTMAX"]) is None
    assert perf.group_layers(["CONV_2D"], ["DEPTHWISE_CONV_2D"]) is None


def _window(**kw: int) -> dict[str, int]:
    p = {"in_h": 32, "in_w": 32, "in_c": 3, "out_h": 32, "out_w": 32, "out_c": 16, "k_h": 3, "k_w": 3,
         "stride_h": 1, "stride_w": 1, "pad_top": 1, "pad_left": 1, "dil_h": 1, "dil_w": 1, "in_place": 0,
         "pw16": 0, "patch_len": 12, "depth_mult": 1, "dw16": 0, "dw_rows": 0}
    p.update(kw)
    return p


def test_layer_shape():
    assert perf.layer_shape("conv", _window()) == "3x3 3->16 at 32x32"
    assert perf.layer_shape("dwconv", _window(in_c=64, out_c=64, stride_h=2, stride_w=2, out_h=16, out_w=16)) \
        == "3x3 x64 stride 2 at 16x16"
    assert perf.layer_shape("convpool", _window(pool_h=2, pool_w=2, pool_avg=0)) == "3x3 3->16 at 32x32 + 2x2 max pool"
    assert perf.layer_shape("conv", _window(in_c=16)) == "3x3 16->16 at 32x32"
    assert perf.layer_shape("avgpool", _window(in_c=64, out_c=64, k_h=8, k_w=8, out_h=1, out_w=1)) == "8x8 x64 at 1x1"
    assert perf.layer_shape("fc", {"in_n": 640, "out_n": 128}) == "640->128"
    assert perf.layer_shape("add", {"n0": 1, "n1": 1, "n2": 1, "n3": 4096}) == "4,096 elements"
    assert perf.layer_shape("softmax", {"rows": 1, "depth": 10}) == ""


@pytest.mark.parametrize("kind,params,path", [
    ("conv", _window(), "2x2 tile, gathered patch (3 input channels, not 4k)"),
    ("conv", _window(in_c=16, in_place=1, pw16=0), "2x2 tile, windows in place"),
    ("conv", _window(in_c=16, k_h=1, k_w=1, pad_top=0, pad_left=0, in_place=1, pw16=1, patch_len=16),
     "pw16, windows in place"),
    ("conv", _window(in_c=1, pw16=1, patch_len=12), "pw16, gathered patch (1 input channel, not 4k)"),
    ("conv", _window(in_c=8, dil_w=2), "2x2 tile, gathered patch (dilated columns)"),
    ("convpool", _window(in_c=8, in_place=1, patch_len=24),
     "2x2 tile, gathered patches (one per pooling-window pixel)"),
    ("convpool", _window(in_c=8, k_h=1, k_w=1, pad_top=0, pad_left=0, in_place=1, patch_len=8),
     "2x2 tile, windows in place"),
    ("dwconv", _window(in_c=64, out_c=64, dw16=1, dw_rows=1), "dw_rows"),
    ("dwconv", _window(in_c=64, out_c=64, dw16=1, dil_h=2), "dw16 (dilated)"),
    ("dwconv", _window(in_c=8, out_c=16, depth_mult=2), "per channel (depth multiplier 2)"),
    ("dwconv", _window(in_c=6, out_c=6), "per channel (6 channels, not 4k)"),
    ("fc", {"in_n": 640, "out_n": 128, "fc4": 1}, "fc4"),
    ("fc", {"in_n": 10, "out_n": 128, "fc4": 0}, "one row at a time (10 inputs, not 4k)"),
    ("fc", {"in_n": 64, "out_n": 2, "fc4": 0}, "one row at a time (2 outputs)"),
    ("add", {"add_lut": 1}, "input tables"),
    ("softmax", {}, "softmax"),
])
def test_kernel_path(kind: str, params: dict, path: str):
    assert backend.kernel_path(backend.Kernel(kind, params)) == path


def test_kernel_path_of_a_cmsis_nn_call():
    assert backend.kernel_path(backend.Kernel("cmsis/dwconv", {})) == "arm_depthwise_conv_wrapper_s8"
