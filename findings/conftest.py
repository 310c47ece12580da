"""The findings' fixtures: which models run (one marker each), their traces (computed once per model,
the model released before the next loads), and `judge`, which checks a verdict against the record."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pytest

import lens.loader
from findings.data import CAPITALS, EXPECTED, FACTS, NOTES_PROMPT, SETS, THRESHOLDS, forms_of
from findings.evidence import output_top1
from lens.attention import AttentionFromLast, attention_from_last, token_positions
from lens.check import check_device
from lens.errors import command, findings_command
from lens.fetch import is_present
from lens.patching import Patching, patch_residuals
from lens.pytest_plugin import MODEL_PROPERTY, model_names, model_sources
from lens.registry import resolve
from lens.tokens import variants
from lens.trace import LensGrid, Trace, collect, lens_grid, read_at
from lens.verdicts import HOLDS, ClaimNotHeld, Verdict, VerdictChanged


@dataclass(frozen=True)
class ModelTraces:
    """Everything the claims read about one model, computed from one set of forward passes."""

    model: str
    source: str
    weights_id: str
    device: str
    dtype: str
    n_layers: int
    sets: dict[str, dict[str, tuple[Trace, ...]]]
    """prompt set -> form -> one trace per fact (in the set's order), at temperature 1, with the raw
    (no-norm) lens."""
    tempered: dict[float, dict[str, dict[str, tuple[Trace, ...]]]]
    """temperature -> prompt set -> form -> traces."""
    grid: LensGrid
    """The logit-lens picture of the notes' own prompt."""
    attention: tuple[AttentionFromLast, ...]
    """Per fact, attention from the last position of its completion prompt."""
    subject_positions: tuple[tuple[int, ...], ...]
    """Per fact, the positions of the subject's tokens in its completion prompt."""
    patching: tuple[Patching | None, ...]
    """Per fact, activation patching of its completion prompt into another fact's (None: no partner
    of the same token length)."""

    @property
    def forms(self) -> dict[str, tuple[Trace, ...]]:
        """The capitals' traces by form (the claims that only make sense for them read these)."""
        return self.sets[CAPITALS]

    def patched(self):
        """(fact, patching, subject positions, clean trace) for the facts patching can measure: answered
        top-1, and the clean and corrupted probabilities at least `min_gap` apart."""
        for fact, patching, subject, trace in zip(FACTS, self.patching, self.subject_positions,
                                                  self.forms["completion"]):
            if (patching is not None and output_top1(trace, fact.answer)
                    and patching.p_clean - patching.p_corrupt >= THRESHOLDS["patching"]["min_gap"]):
                yield fact, patching, subject, trace

    def record(self) -> dict:
        """What the report draws for this model (plain values, so it crosses xdist)."""
        curves = {}
        for form in ("completion", "qa"):
            traces = self.forms[form]
            curves[form] = {
                "depth": [lay.depth for lay in traces[0].layers],
                "p_answer": [[lay.p_answer for lay in t.layers] for t in traces],
                "rank_answer": [[lay.rank_answer for lay in t.layers] for t in traces],
            }
        meta = {k: getattr(self, k) for k in ("model", "source", "weights_id", "device", "dtype", "n_layers")}
        meta["weights"] = meta.pop("weights_id")
        notes = next(i for i, fact in enumerate(FACTS) if fact.origin == "notes")
        patching = self.patching[notes]
        return {**meta, "curves": curves, "grid": asdict(self.grid),
                "attention": asdict(self.attention[notes]),
                "patching": asdict(patching) if patching else None}


_computed: dict[str, ModelTraces] = {}
_records: dict[str, dict] = {}
_refused: dict[str, str] = {}


def traces_for(config: pytest.Config, name: str) -> ModelTraces:
    """The model's traces, computed on first use and kept for the session (the model itself is not)."""
    if name in _refused:
        pytest.fail(_refused[name], pytrace=False)
    if name not in _computed:
        source = model_sources(config)[name]
        spec = resolve(source)
        if not is_present(spec):
            size = f" (about {spec.size_gb:g} GB)" if spec.size_gb else ""
            pytest.skip(
                f"{name} not run: its weights are not here; fetch them with "
                f"`{command('download ' + name)}`{size}, then run `{findings_command('-m ' + name)}`"
            )
        model = lens.loader.load(source, device=config.getoption("lens_device"))
        try:
            if model.device != "cpu":
                check = check_device(model)
                if not check.agrees:
                    _refused[name] = f"refusing to judge on this device: {check.summary()}; run with --device cpu"
                    pytest.fail(_refused[name], pytrace=False)
            _computed[name] = _compute(model)
        finally:
            lens.loader.release(model)
    return _computed[name]


def _compute(model: lens.loader.LoadedModel) -> ModelTraces:
    cases = [(name, form, fact) for name in SETS for form in forms_of(name) for fact in SETS[name]]
    temperatures = (1.0, *THRESHOLDS["temperature"]["temperatures"])
    read = read_at(
        model,
        collect(model, [fact.prompt(form) for _, form, fact in cases]),
        temperatures,
        [fact.target(form) for _, form, fact in cases],
        [variants(fact.target(form)) + variants(fact.other(form)) for _, form, fact in cases],
        raw=True,
    )
    by_temperature: dict[float, dict[str, dict[str, tuple[Trace, ...]]]] = {}
    for temperature, traces in read.items():
        grouped: dict[str, dict[str, list[Trace]]] = {}
        for (name, form, _), one in zip(cases, traces):
            grouped.setdefault(name, {}).setdefault(form, []).append(one)
        by_temperature[temperature] = {
            name: {form: tuple(ts) for form, ts in forms.items()} for name, forms in grouped.items()
        }
    return ModelTraces(
        model=model.name,
        source=model.spec.describe(),
        weights_id=model.weights_id,
        device=model.device,
        dtype=str(model.dtype).removeprefix("torch."),
        n_layers=model.n_layers,
        sets=by_temperature.pop(1.0),
        tempered=by_temperature,
        grid=lens_grid(model, NOTES_PROMPT),
        attention=tuple(attention_from_last(model, fact.completion) for fact in FACTS),
        subject_positions=tuple(tuple(token_positions(model, f.completion, f.subject)) for f in FACTS),
        patching=_patch_all(model),
    )


def _patch_all(model: lens.loader.LoadedModel) -> tuple[Patching | None, ...]:
    """Patch each fact's completion prompt into the next fact's of the same token length (None if none)."""
    length = [len(model.tokenizer(f.completion)["input_ids"]) for f in FACTS]

    def patch(i: int) -> Patching | None:
        for j in [*range(i + 1, len(FACTS)), *range(i)]:
            if length[j] == length[i] and FACTS[j].answer != FACTS[i].answer:
                return patch_residuals(model, FACTS[i].completion, FACTS[j].completion, FACTS[i].target("completion"))
        return None

    return tuple(patch(i) for i in range(len(FACTS)))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over models with one marker each, so `-m llama3` runs (and loads) only Llama 3."""
    names = model_names(metafunc.config)
    if "model_name" in metafunc.fixturenames:
        params = [pytest.param(n, marks=getattr(pytest.mark, n), id=n) for n in names]
        metafunc.parametrize("model_name", params, scope="session")
    if "prompt_set" in metafunc.fixturenames:
        sets = getattr(metafunc.module, "PROMPT_SETS", [CAPITALS])
        metafunc.parametrize("prompt_set", [pytest.param(n, id=f"@{n}") for n in sets])
    if "model_set" in metafunc.fixturenames:
        marks = [getattr(pytest.mark, n) for n in names]
        metafunc.parametrize("model_set", [pytest.param(tuple(names), marks=marks, id="all")])


@pytest.fixture(scope="session")
def traces(pytestconfig: pytest.Config, model_name: str) -> ModelTraces:
    return traces_for(pytestconfig, model_name)


@pytest.fixture(autouse=True)
def _record_model(request: pytest.FixtureRequest) -> None:
    """Attach each model's record, once per process, to a test that reads its traces (for the figures)."""
    if "traces" in request.fixturenames:
        name = request.getfixturevalue("model_name")
        if name not in _records:
            _records[name] = request.getfixturevalue("traces").record()
            request.node.user_properties.append((MODEL_PROPERTY, _records[name]))


@pytest.fixture
def claim(request: pytest.FixtureRequest) -> str:
    """The claim's id: its module's name without `test_NN_`."""
    return re.sub(r"^test_\d+_", "", request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def judge(request: pytest.FixtureRequest, record_verdict) -> Callable[[Verdict], None]:
    """Record a verdict, then assert the claim, against the recorded verdict where there is one.

    Recorded `holds`: the test passes while the claim holds. Recorded otherwise: a strict xfail, so a
    flip to `holds` fails as XPASS, and a change between refuted and inconclusive fails outright.
    """

    def judge_(verdict: Verdict) -> None:
        recorded = EXPECTED.get(verdict.claim, {}).get(verdict.model)
        record_verdict(verdict, recorded)
        if recorded and recorded["verdict"] != HOLDS:
            request.applymarker(pytest.mark.xfail(
                strict=True, raises=ClaimNotHeld,
                reason=f"recorded {recorded['verdict']}: {recorded['figure']}",
            ))
            if verdict.verdict not in (HOLDS, recorded["verdict"]):
                raise VerdictChanged(
                    f"{verdict.claim} on {verdict.model}: recorded {recorded['verdict']} "
                    f"({recorded['figure']}), now {verdict.verdict}: {verdict.figure}; {verdict.rule}"
                )
        if verdict.verdict != HOLDS:
            was = f" (recorded holds: {recorded['figure']})" if recorded else ""
            raise ClaimNotHeld(
                f"{verdict.claim} on {verdict.model}: {verdict.verdict}{was}: {verdict.figure}; {verdict.rule}"
            )

    return judge_
