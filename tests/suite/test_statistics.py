"""suite.statistics: verdict rules and the bootstrap interval, against hand computations."""

import numpy as np
import pytest

from suite.statistics import HOLDS, INCONCLUSIVE, REFUTED, above, at_least, bootstrap_ci, within


def test_a_constant_sample_has_a_point_interval():
    assert bootstrap_ci([0.4] * 10) == (0.4, 0.4)


def test_the_interval_covers_the_sampling_spread_of_a_mean():
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 2.0, size=400)
    lo, hi = bootstrap_ci(values, np.mean)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size)  # the normal-theory interval
    assert lo == pytest.approx(values.mean() - half_width, abs=0.05)
    assert hi == pytest.approx(values.mean() + half_width, abs=0.05)


def test_the_same_seed_gives_the_same_interval():
    values = [0, 1, 1, 0, 1, 1, 1]
    assert bootstrap_ci(values, np.mean) == bootstrap_ci(values, np.mean)


@pytest.mark.parametrize(
    "ci, expected",
    [((0.6, 0.9), HOLDS), ((0.5, 0.9), INCONCLUSIVE), ((0.2, 0.5), REFUTED), ((0.3, 0.6), INCONCLUSIVE)],
)
def test_above_a_majority(ci, expected):
    assert above(ci, 0.5) == expected


@pytest.mark.parametrize("ci, expected", [((1.0, 1.2), HOLDS), ((0.2, 0.9), REFUTED), ((0.9, 1.1), INCONCLUSIVE)])
def test_at_least(ci, expected):
    assert at_least(ci, 1.0) == expected


@pytest.mark.parametrize(
    "ci, expected",
    [((0.8, 0.85), HOLDS), ((0.95, 1.0), REFUTED), ((0.5, 0.7), REFUTED), ((0.72, 0.89), INCONCLUSIVE)],
)
def test_within_a_band(ci, expected):
    assert within(ci, (0.75, 0.90)) == expected
