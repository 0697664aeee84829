"""Continual-learning metrics on hand-computed matrices."""

import math

import pytest

from curlora_bench.core import metrics

A = [
    [0.80, None, None],
    [0.70, 0.90, None],
    [0.60, 0.85, 0.75],
]


def test_average_accuracy():
    assert math.isclose(metrics.average_accuracy(A), (0.60 + 0.85 + 0.75) / 3)
    assert math.isclose(metrics.average_accuracy(A, 1), 0.80)


def test_backward_transfer():
    # ((0.60-0.80) + (0.85-0.90)) / 2
    assert math.isclose(metrics.backward_transfer(A), -0.125)
    assert metrics.backward_transfer([[0.5]]) is None


def test_forgetting():
    # task0: max(0.80, 0.70) - 0.60 = 0.20; task1: 0.90 - 0.85 = 0.05 -> 0.125
    assert math.isclose(metrics.forgetting(A), 0.125)
    improving = [[0.5, None], [0.7, 0.9]]
    assert math.isclose(metrics.forgetting(improving), -0.2)


def test_perplexity_drift():
    assert metrics.perplexity_drift(20.0, 30.0) == 1.5


def test_mean_std_and_t_interval():
    m, s = metrics.mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and math.isclose(s, 1.0)
    lo, hi = metrics.t_interval([1.0, 2.0, 3.0])
    # t_{0.975, 2} = 4.302653; half-width = 4.302653 * 1 / sqrt(3)
    assert math.isclose(hi - 2.0, 4.302653 / math.sqrt(3), rel_tol=1e-5)
    assert math.isclose(lo + hi, 4.0)
    assert metrics.t_interval([1.0]) is None


@pytest.mark.parametrize("bad", [[[0.5, None], [0.4, 0.6]]])
def test_two_stage(bad):
    assert math.isclose(metrics.backward_transfer(bad), -0.1)
