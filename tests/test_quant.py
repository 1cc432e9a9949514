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
