"""The fixed-point constants, against values TFLite's QuantizeMultiplier is known to give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lwcnn_mcu import quant


@pytest.mark.parametrize("real,expect", [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.25, (1 << 30, -1)),
    (2.0 ** -40, (0, 0)),  # shifts below -31 flush to zero
    (0.9999999999, (1 << 30, 1)),  # rounds up to 2^31 -> halved, shift + 1
])
def test_quantize_multiplier_edges(real, expect):  # noqa: ANN001
    assert quant.quantize_multiplier(real) == expect


def test_quantize_multiplier_reconstructs():
    rng = np.random.default_rng(0)
    for real in rng.uniform(1e-6, 4.0, 500):
        m, s = quant.quantize_multiplier(float(real))
        assert (1 << 30) <= m < (1 << 31)
        assert math.isclose(m * 2.0 ** (s - 31), real, rel_tol=2 ** -30)


def test_round_half_away():
    assert [quant.round_half_away(v) for v in (0.5, 1.5, -0.5, -1.5, 2.4999)] == [1, 2, -1, -2, 2]


def test_activation_ranges():
    assert quant.activation_range("NONE", 0.1, 3) == (-128, 127)
    assert quant.activation_range("RELU", 0.1, -128) == (-128, 127)
    assert quant.activation_range("RELU6", 6.0 / 255, -128) == (-128, 127)
    assert quant.activation_range("RELU6", 0.05, -10) == (-10, 110)


def test_softmax_params_match_tflite_formula():
    mult, shift, diff_min = quant.softmax_params(1.0, 0.1)
    real = 0.1 * (1 << 26)
    assert math.isclose(mult * 2.0 ** (shift - 31), real, rel_tol=1e-8)
    assert diff_min == -math.floor(31 * (1 << 26) / (1 << shift))


def test_mean_params_fold_count():
    mult, shift = quant.mean_params(0.02, 0.01, 49)
    assert math.isclose(mult * 2.0 ** (shift - 31), 2.0 / 49, rel_tol=1e-6)


def _srdhm_tflite(a: int, b: int) -> int:
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    q = abs(v) // (1 << 31)  # C division truncates toward zero
    return q if v >= 0 else -q


def test_srdhm_without_division_equals_tflite():
    """lw_srdhm_pos computes floor((a*m + 2^30) / 2^31); it must equal TFLite's nudge-and-truncate
    for every a and positive m (the runtime relies on it on every requantization)."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(-(2**31), 2**31, 200_000), np.arange(-5000, 5000),
                        [-(2**31), 2**31 - 1, -(2**30), 2**30, -(2**30) - 1]])
    m = np.concatenate([rng.integers(1, 2**31, len(a) - 5), [1 << 30, (1 << 31) - 1, 1, 2, 3]])
    for x, y in zip(a.tolist(), m.tolist(), strict=True):
        assert (x * y + (1 << 30)) >> 31 == _srdhm_tflite(x, y), (x, y)


REQUANT_PROBE = r"""
#include <stdio.h>
#include "lw_common.h"
int main(void)
{
    long long x, m, s;
    unsigned long bad = 0, n = 0;
    while (scanf("%lld %lld %lld", &x, &m, &s) == 3) {
        const int32_t fast = lw_requant((int32_t)x, (int32_t)m, (int32_t)s, 1);
        const int32_t ref = lw_mbqm((int32_t)x, (int32_t)m, (int32_t)s);
        bad += fast != ref;
        ++n;
    }
    printf("%lu %lu\n", n, bad);
    return 0;
}
"""


@pytest.mark.parametrize("simd", [False, True])
def test_fast_requant_equals_tflite_where_compiler_allows_it(tmp_path, simd):  # noqa: ANN001
    """lw_requant's fast path (SMMULR and an add-and-shift rounding) must equal lw_mbqm for every
    |x| < 2^30 and shift in [-31, -1], the domain the compiler's rq_fast flag guarantees."""
    import subprocess

    from lwcnn_mcu import codegen, hostrun

    (tmp_path / "lw_common.h").write_text((codegen.templates_dir() / "runtime" / "lw_common.h").read_text())
    (tmp_path / "lw_params.h").write_text("")
    (tmp_path / "probe.c").write_text(REQUANT_PROBE)
    exe = tmp_path / "probe"
    flags = [*hostrun.STRICT, "-O2", *(["-DLW_SIMD_EMULATE"] if simd else [])]
    subprocess.run([hostrun.compiler(), *flags, "-I", str(tmp_path), str(tmp_path / "probe.c"), "-o", str(exe)],
                   check=True)
    rng = np.random.default_rng(1)
    n = 100_000
    x = np.concatenate([rng.integers(-(2**30) + 1, 2**30, n), rng.integers(-70_000, 70_000, n),
                        [2**30 - 1, -(2**30) + 1, 0, 1, -1]])
    m = np.concatenate([rng.integers(2**30, 2**31, len(x) - 2), [2**30, 2**31 - 1]])
    s = rng.integers(-31, 0, len(x))
    lines = "\n".join(f"{a} {b} {c}" for a, b, c in zip(x.tolist(), m.tolist(), s.tolist(), strict=True))
    out = subprocess.run([str(exe)], input=lines, capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(x)), "0"]
