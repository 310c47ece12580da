"""suite.statistics: verdict rules, exact and bootstrap intervals, minimum n, against hand computations."""

import numpy as np
import pytest
from scipy.stats import beta

from suite.statistics import (
    EXACT_LENS,
    Label,
    Verdict,
    above,
    at_least,
    cluster_bootstrap_ci,
    holm,
    holm_adjusted,
    median_ci,
    min_n_for_share,
    share_ci,
    within,
)


def bootstrap_ci(values, statistic=np.median, resamples=2000, seed=0):
    """The plain percentile bootstrap: every value its own cluster."""
    return cluster_bootstrap_ci(values, list(range(len(values))), statistic, resamples=resamples, seed=seed)


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
    [
        ((0.6, 0.9), Label.HOLDS),
        ((0.5, 0.9), Label.INCONCLUSIVE),
        ((0.2, 0.5), Label.REFUTED),
        ((0.3, 0.6), Label.INCONCLUSIVE),
    ],
)
def test_above_a_majority(ci, expected):
    assert above(ci, 0.5) == expected


@pytest.mark.parametrize(
    "ci, expected", [((1.0, 1.2), Label.HOLDS), ((0.2, 0.9), Label.REFUTED), ((0.9, 1.1), Label.INCONCLUSIVE)]
)
def test_at_least(ci, expected):
    assert at_least(ci, 1.0) == expected


@pytest.mark.parametrize(
    "ci, expected",
    [
        ((0.8, 0.85), Label.HOLDS),
        ((0.95, 1.0), Label.REFUTED),
        ((0.5, 0.7), Label.REFUTED),
        ((0.72, 0.89), Label.INCONCLUSIVE),
    ],
)
def test_within_a_band(ci, expected):
    assert within(ci, (0.75, 0.90)) == expected


def test_the_exact_interval_of_a_share_is_clopper_pearson():
    from scipy.stats import binomtest

    for k, n in [(0, 5), (5, 5), (14, 27), (27, 27), (3, 40)]:
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert share_ci(k, n) == pytest.approx((expected.low, expected.high), abs=1e-9)
    # 5 of 5 is no proof of a majority: [.48, 1], not the percentile bootstrap's "1 to 1".
    assert share_ci(5, 5)[0] == pytest.approx(0.478, abs=1e-3)


def test_the_exact_interval_covers_where_the_percentile_bootstrap_does_not():
    rng = np.random.default_rng(3)
    n, p, trials = 5, 0.9, 400
    covered_exact = covered_boot = 0
    for seed in range(trials):
        sample = (rng.random(n) < p).astype(float)
        lo, hi = share_ci(sample.sum(), n)
        covered_exact += lo <= p <= hi
        lo, hi = bootstrap_ci(sample, np.mean, resamples=200, seed=seed)
        covered_boot += lo <= p <= hi
    assert covered_exact / trials >= 0.95
    assert covered_boot / trials < 0.7  # the field notes' ~40%: why shares no longer use it


def test_the_minimum_n_is_where_the_power_is_reached():
    from scipy.stats import binom

    n = min_n_for_share(0.5, 0.7)
    k = next(k for k in range(n + 1) if share_ci(k, n)[0] > 0.5)
    assert binom.sf(k - 1, n, 0.7) >= 0.8
    k_less = next(k for k in range(n) if share_ci(k, n - 1)[0] > 0.5)
    assert binom.sf(k_less - 1, n - 1, 0.7) < 0.8 or n - 1 < 1
    assert 40 <= n <= 60  # the field notes: about 47 facts tell .7 from .5 with 80% power


def test_the_cluster_bootstrap_resamples_facts_not_prompts():
    # Two prompts per fact with identical values: resampling prompts would treat 20 values as 20
    # independent ones; resampling facts sees 10. The facts' interval is the wider, and equals the
    # interval of the 10 distinct values resampled alone.
    per_fact = np.linspace(0, 1, 10)
    values, clusters = np.repeat(per_fact, 2), np.repeat(np.arange(10), 2)
    by_fact = cluster_bootstrap_ci(values, clusters, np.mean, seed=1)
    by_prompt = bootstrap_ci(values, np.mean, seed=1)
    assert by_fact[1] - by_fact[0] > 1.3 * (by_prompt[1] - by_prompt[0])


def coverage(draw, truth: float, n: int, resolution: float, trials: int = 10_000, seed: int = 7) -> float:
    """The share of `trials` samples of n whose median interval covers `truth`."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        lo, hi = median_ci(draw(rng, n), 0.95, resolution)
        hits += lo <= truth <= hi
    return hits / trials


MARGIN = 0.01
"""Coverage may fall below the nominal 95% by at most this (10,000 draws: a standard error of 0.002)."""


@pytest.mark.parametrize("n", [10, 30, 49])
def test_the_median_interval_keeps_its_coverage_on_tied_depths(n):
    """Depths in steps of 1/18 (Gemma 3's blocks), most of them tied on two blocks: the order-statistic interval
    covers the median block depth at least 95% of the time, ties and all."""
    blocks = np.arange(1, 19) / 18
    weights = np.zeros(18)
    weights[[13, 14, 15, 16, 17]] = [0.1, 0.35, 0.3, 0.15, 0.1]  # cumulative 0.45 at 15/18: the median is 16/18
    truth = blocks[15]

    def draw(rng, size):
        return rng.choice(blocks, size=size, p=weights)

    assert coverage(draw, truth, n, resolution=1 / 18) >= 0.95 - MARGIN
    assert coverage(draw, truth, n, resolution=0.0) >= 0.95 - MARGIN  # exact even without the widening


@pytest.mark.parametrize("n", [30, 49])
def test_the_widened_median_interval_covers_a_depth_measured_to_the_nearest_block(n):
    """A continuous depth (Beta(8, 2), median 0.820) measured to the nearest of 18 blocks: the exact interval of
    the measured depths, widened by half a block, covers the continuous median; the percentile bootstrap of the
    measured depths does not (measured: 90% at n=30, 87% at n=49, over 300 samples)."""
    truth = beta.median(8, 2)

    def draw(rng, size):
        return np.round(rng.beta(8, 2, size) * 18) / 18

    assert coverage(draw, truth, n, resolution=1 / 18) >= 0.95 - MARGIN
    rng = np.random.default_rng(7)
    boot = [bootstrap_ci(draw(rng, n), resamples=200, seed=i) for i in range(300)]
    assert np.mean([lo <= truth <= hi for lo, hi in boot]) < 0.95 - MARGIN


def test_the_median_interval_by_hand():
    # n = 10: P(Bin(10, 1/2) <= 1) = 11/1024 = 0.0107 <= 0.025 < P(<= 2) = 0.0547, so the 2nd and 9th values.
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert median_ci(values) == (0.2, 0.9)
    assert median_ci(values, resolution=0.1) == pytest.approx((0.15, 0.95))
    assert median_ci([0.8] * 5) == (-np.inf, np.inf)  # no rank at n = 5: nothing is known at 95%
    assert median_ci([0.889] * 49, resolution=1 / 18) == pytest.approx((0.889 - 1 / 36, 0.889 + 1 / 36))


def test_holm_by_hand():
    # m = 4 at 0.05: sorted 0.005 <= 0.05/4 (kept), 0.01 <= 0.05/3 (kept), 0.03 > 0.05/2 (stop: it and 0.04 go).
    assert holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    assert holm([0.01, 0.04, 0.03, 0.005], alpha=0.1) == [True, True, True, True]  # 0.03 <= 0.05, 0.04 <= 0.1


def verdict(word: str, p: float | None, models=("m",), lens="exact", control=False, confidence=0.95) -> Verdict:
    return Verdict(
        claim="c",
        models=models,
        prompt_set="s",
        verdict=word,
        statistic="x",
        value=0.0,
        ci=(0, 0),
        rule="r",
        n=30,
        p=p,
        lens=lens,
        control=control,
        confidence=confidence,
    )


def test_holm_adjusts_each_model_and_lens_as_one_family():
    family = [
        verdict(Label.HOLDS, 0.01),
        verdict(Label.REFUTED, 0.04),
        verdict(Label.HOLDS, 0.03),
        verdict(Label.REFUTED, 0.005),
        verdict(Label.INCONCLUSIVE, 0.2),
        verdict(Label.TOO_FEW, 1.0),
        verdict(Label.NO_DATA, None),
        verdict(Label.HOLDS, 0.04, models=("other",)),
        verdict(Label.HOLDS, 0.04, lens="tuned"),
        verdict(Label.HOLDS, 0.001, control=True),
    ]
    adjusted = [v.holm for v in holm_adjusted(family)]
    # The first five (p 0.01, 0.04, 0.03, 0.005, 0.2) are one family of m = 5: 0.005 <= 0.01 and 0.01 <= 0.0125
    # survive, 0.03 > 0.0167 stops the rest. Too few and no data keep their word; another model or lens is
    # a family of its own (one verdict: 0.04 <= 0.05 survives); a control is no claim and is not adjusted.
    assert adjusted == [
        Label.HOLDS,
        Label.INCONCLUSIVE,
        Label.INCONCLUSIVE,
        Label.REFUTED,
        Label.INCONCLUSIVE,
        Label.TOO_FEW,
        Label.NO_DATA,
        Label.HOLDS,
        Label.HOLDS,
        None,
    ]
    assert "Holm: inconclusive" in holm_adjusted(family)[1].cell


def test_the_default_lens_is_the_logit_lens_the_instrument_names():
    from lens.lenses.lenses import EXACT  # the suite writes the name out, so that reading results imports no torch

    assert EXACT_LENS == EXACT.name


def test_a_label_is_its_word_and_says_whether_it_decided():
    assert [label.value for label in Label] == ["holds", "refuted", "inconclusive", "too few", "no data"]
    assert Label("too few") is Label.TOO_FEW and f"{Label.NO_DATA}" == "no data"
    assert [label for label in Label if label.decided] == [Label.HOLDS, Label.REFUTED]
