"""The findings' fixtures: which prompt sets each claim runs on (claims.toml), the model's evidence
(computed lazily on the suite session), and `judge`, which checks a verdict against the record."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from findings.data import CHAT, EXPECTED, SETS, THRESHOLDS, forms_of, lenses_of, prompt_sets_of
from findings.evidence import judged, with_fidelity
from findings.model_findings import ModelFindings, ndif_plan, readings_depend
from findings.work import work_plan
from lens.lenses.lenses import EXACT
from suite import recorded
from suite.keys import SESSION
from suite.results import EDGE, LEFT_OUT
from suite.session import ModelArtefacts
from suite.statistics import Verdict
from suite.verdicts import difference_verdict, with_control


@pytest.hookimpl(trylast=True)  # after the suite's plugin made the session
def pytest_configure(config: pytest.Config) -> None:
    """Tell the session what the claims will send a model on NDIF, before it sends anything, what they will compute
    on a model here, before it loads (the estimate's cost model), what their readings depend on besides the model
    (they are kept on disk under it), and the prompt sets' order (the report's)."""
    session = config.stash[SESSION]
    session.remote_plan = lambda name, model, tests: ndif_plan(session.spec(name).chat, model, tests)
    session.work_plan = lambda name, plan, tests: work_plan(session.spec(name), plan, tests)
    session.readings_depend = readings_depend
    session.prompt_sets = tuple(SETS)


@pytest.hookimpl(trylast=True)  # after the models: ids read model-set
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a claim over the prompt sets it runs on, declared once in claims.toml, and a logit-lens
    claim also over the other lenses it is read through (on the sets `[lenses]` names): ids "capitals-tuned"."""
    marker = metafunc.definition.get_closest_marker("claim")
    if marker is None or "prompt_set" not in metafunc.fixturenames:
        return
    claim = marker.args[0]
    if "lens" not in metafunc.fixturenames or lenses_of(claim) == [EXACT.name]:
        metafunc.parametrize("prompt_set", prompt_sets_of(claim))
        return
    asked = metafunc.config.stash[SESSION].lenses
    cases = [
        (prompt_set, lens)
        for prompt_set in prompt_sets_of(claim)
        for lens in lenses_of(claim, prompt_set)
        if asked is None or lens in asked
    ]
    metafunc.parametrize(("prompt_set", "lens"), cases, ids=[f"{s}-{lens}" for s, lens in cases])


@pytest.fixture
def lens() -> str:
    """The lens a claim is read through: the exact logit lens, unless the claim is parametrized over lenses."""
    return EXACT.name


@pytest.fixture
def findings(model_artefacts: ModelArtefacts, lens: str) -> ModelFindings:
    """The model's evidence for the claims through `lens`, each part computed when first read."""
    return ModelFindings(model_artefacts, lens)


@pytest.fixture(autouse=True)
def _warn_of_data(request: pytest.FixtureRequest, record_warning) -> Iterator[None]:
    """After a test over a prompt set, report the facts the model's tokenizer made us leave out, and the
    facts at an edge: where the model's reply was decided by a margin a run in another dtype may overturn
    (so their answered/not answered, and the n counting them, may change: the recorded n tolerates it)."""
    if not {"model_artefacts", "prompt_set"} <= set(request.fixturenames):
        yield
        return
    artefacts = request.getfixturevalue("model_artefacts")
    prompt_set = request.getfixturevalue("prompt_set")
    yield
    for fact, reason in (artefacts.peek(("exclusions", prompt_set)) or {}).items():
        record_warning(reason, kind=LEFT_OUT, facts=(fact,))
    edge = EXPECTED.tolerance_for("bfloat16").get("reply_edge", 0.0)
    for form in (*forms_of(prompt_set), CHAT):
        readings = artefacts.peek(("readings", prompt_set, form)) or ()
        near = tuple(f"{r.fact.id} ({r.reply.margin:.3f})" for r in readings if r.reply.margin < edge)
        if near:
            record_warning(
                f"replies won by less than {edge:g} of probability over the runner-up (the largest margin "
                "a bfloat16 run overturned), so what they count may move in another dtype",
                kind=EDGE,
                form=form,
                facts=near,
                replies=len(readings),
            )


@pytest.fixture
def judge(request: pytest.FixtureRequest, record_verdict) -> Callable[[Verdict], None]:
    """Record a verdict, then assert the claim, against the recorded verdict where there is one."""
    return recorded.judge(request, EXPECTED, record_verdict)


@pytest.fixture
def judge_claim(request: pytest.FixtureRequest, judge, record_control) -> Callable[..., Verdict]:
    """The one skeleton of a claim's test: `judge_claim(evaluate, *args, controls=..., section=...)` judges
    `evaluate(*args, thresholds)` under the claim's thresholds (claims.toml; `section` where claims share
    one) with its sensitivity, and for each of `controls` also `evaluate(..., control=name)`, recorded beside
    it with the difference between claim and control (claims.toml `control_sign`: which should be larger)."""
    claim = request.node.get_closest_marker("claim").args[0]

    def run(
        evaluate: Callable[..., Verdict], *args, controls: tuple[str, ...] = (), section: str | None = None
    ) -> Verdict:
        verdict = judged(evaluate, claim, *args, section=section)
        if isinstance(args[0], ModelFindings) and "faithful_from" in THRESHOLDS.get(claim, {}):
            verdict = with_fidelity(verdict, args[0], THRESHOLDS[claim]["faithful_from"])
        sign = THRESHOLDS.get(claim, {}).get("control_sign", 1)
        for name in controls:
            found = judged(evaluate, claim, *args, section=section, control=name)
            record_control(found)
            record_control(difference_verdict(verdict, found, sign))
            verdict = with_control(verdict, found)
        judge(verdict)
        return verdict

    return run
