"""suite.verdicts and the decision rule: every verdict decided by its interval, `too few` only where no
outcome could decide, `no data` only at n = 0; what a cell could detect; sensitivity; controls."""

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from suite.statistics import Evidence, Label, decidable, detectable_share, family_error
from suite.verdicts import (
    Resampling,
    Rule,
    Scope,
    median_verdict,
    share_verdict,
    with_control,
    with_sensitivity,
)

SCOPE = Scope(claim="c", models=("m",), prompt_set="s")
FAST = Resampling(resamples=400, seed=0)


def shares(k: int, n: int):
    """n facts, one prompt each, k of them showing the pattern."""
    rows = [Evidence(f"f{i}", {"flag": i < k}) for i in range(n)]
    return share_verdict(rows, flag="flag", threshold=0.5, statistic="share", scope=SCOPE, resampling=FAST)


@pytest.mark.parametrize("n", [5, 12, 30])
def test_the_decision_rule_at_5_12_and_30_facts(n):
    reached = {k: shares(k, n).verdict for k in range(n + 1)}
    if n == 5:
        # No outcome of 5 facts gives an exact 95% interval that excludes 0.5 (5/5: 0.478 to 1).
        assert set(reached.values()) == {Label.TOO_FEW}
        assert binomtest(5, 5).proportion_ci(method="exact").low < 0.5
    else:
        assert set(reached.values()) == {Label.HOLDS, Label.REFUTED, Label.INCONCLUSIVE}
        # Each decided exactly where scipy's exact interval (an independent computation) lies beyond 0.5.
        for k, verdict in reached.items():
            ci = binomtest(k, n).proportion_ci(method="exact")
            assert verdict == (Label.HOLDS if ci.low > 0.5 else Label.REFUTED if ci.high <= 0.5 else Label.INCONCLUSIVE)


def test_no_data_only_without_data_and_a_decided_interval_is_never_withheld():
    assert shares(0, 0).verdict == Label.NO_DATA
    # 12 of 12 at n=12 is far below the 49 facts power asked for before: the interval decides anyway.
    assert shares(12, 12).verdict == Label.HOLDS and shares(12, 12).ci[0] > 0.5


@pytest.mark.parametrize("n", [5, 12, 30])
def test_a_median_is_decidable_where_a_share_of_half_the_facts_is(n):
    rows = [Evidence(f"f{i}", {"depth": 0.8}) for i in range(n)]
    verdict = median_verdict(
        rows, key="depth", rule=Rule("within", (0.75, 0.9)), kind="depth", statistic="d", scope=SCOPE, resampling=FAST
    )
    assert verdict.verdict == (Label.TOO_FEW if n == 5 else Label.HOLDS)
    assert decidable(n, 0.95) == (n != 5)


def test_what_a_cell_could_detect_matches_a_brute_force_power_search():
    for n in (12, 30, 65):
        k = next(k for k in range(n + 1) if binomtest(k, n).proportion_ci(method="exact").low > 0.5)
        grid = np.linspace(0.5, 1, 5001)
        brute = grid[np.argmax(binom.sf(k - 1, n, grid) >= 0.8)]
        assert detectable_share(0.5, n) == pytest.approx(brute, abs=2e-4)
    assert detectable_share(0.5, 5) is None


def test_the_family_error_by_hand():
    # A decision is directional: a verdict decided at 95% errs at most 2.5%, at 98.3% at most 0.83%.
    expected, any_wrong = family_error([0.95] * 20)
    assert expected == pytest.approx(0.5) and any_wrong == pytest.approx(1 - 0.975**20)
    expected, any_wrong = family_error([0.95, 1 - 0.05 / 3, 1 - 0.05 / 3])
    assert expected == pytest.approx(0.025 + 2 * 0.05 / 6)
    assert any_wrong == pytest.approx(1 - 0.975 * (1 - 0.05 / 6) ** 2)


def test_the_p_value_of_a_decision_by_hand():
    # 10 of 10 against a majority: the exact interval's lower end (alpha/2) ** (1/10) exceeds 0.5 exactly when
    # alpha > 2 * 0.5 ** 10, the two-sided binomial p-value of 10 of 10.
    assert shares(10, 10).p == pytest.approx(2 * 0.5**10, rel=1e-4)
    assert shares(10, 10).p == pytest.approx(binomtest(10, 10, 0.5).pvalue, rel=1e-4)
    # 6 of 12 sits on the threshold: no confidence decides.
    assert shares(6, 12).p == 1.0


def test_sensitivity_says_where_a_verdict_flips():
    def evaluate(t):
        return shares(11, 12) if t["majority"] == 0.5 else shares(6, 12)

    verdict = with_sensitivity(evaluate, {"majority": 0.5, "confidence": 0.95}, {"majority": [0.5, 0.6]})
    assert [row.value for row in verdict.sensitivity] == [0.6]  # the value in force is not repeated
    assert verdict.verdict == Label.HOLDS and verdict.sensitivity[0].verdict == Label.INCONCLUSIVE and verdict.sensitive
    steady = with_sensitivity(lambda t: shares(12, 12), {"majority": 0.5}, {"majority": [0.6, 0.7]})
    assert not steady.sensitive and len(steady.sensitivity) == 2


def test_a_control_that_holds_too_is_a_caveat_and_one_that_does_not_is_not():
    claim = shares(12, 12)
    speaks = with_control(claim, shares(12, 12))
    quiet = with_control(claim, shares(0, 12))
    assert any("control holds too" in caveat for caveat in speaks.caveats) and speaks.cell.endswith("‡")
    assert not quiet.caveats and quiet.beside[-1].value == 0.0


def test_caveats_of_shared_first_tokens_travel_to_the_verdict():
    rows = [Evidence(f"f{i}", {"flag": True}, "f0: ' K' also starts Kopenhagen" if i == 0 else None) for i in range(12)]
    verdict = share_verdict(rows, flag="flag", threshold=0.5, statistic="s", scope=SCOPE, resampling=FAST)
    assert verdict.verdict == Label.HOLDS and "Kopenhagen" in verdict.caveats[0] and verdict.n == 12


def test_the_effective_sample_size_is_the_facts():
    rows = [Evidence(f"f{i // 2}", {"flag": True}) for i in range(24)]  # two prompts per fact
    verdict = share_verdict(rows, flag="flag", threshold=0.5, statistic="s", scope=SCOPE, resampling=FAST)
    assert verdict.n == 12 and verdict.ci[0] == pytest.approx(binomtest(12, 12).proportion_ci(method="exact").low)
    assert math.isclose(verdict.value, 1.0)
