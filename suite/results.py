"""The results document behind reports/findings.json, typed: per claim its results (one `Result` per models x
prompt set, carrying its `Verdict`), per model its record and run, the per-model checks, the figures and the
data warnings. Every type round-trips through plain values (`to_dict` / `from_dict`); `suite.document` is the one
serializer of the whole document, so a run, the merge with earlier runs, the recorded verdicts and `./run report`
all read the same objects. Built from typed identities, never from node ids."""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from suite.figures import Figure
from suite.provenance import UNKNOWN, Commit, code_commit, library_versions
from suite.statistics import EXACT_LENS, Beside, Label, Verdict, holm_adjusted


class Outcome(StrEnum):
    """How a test ended, as pytest says it (xfailed: a claim recorded as not holding, still not holding)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    XPASSED = "xpassed"

    @property
    def as_recorded(self) -> bool:
        """Whether the test came out as its record says (a failure, or a recorded non-hold that now holds, did not)."""
        return self not in (Outcome.FAILED, Outcome.XPASSED)


@dataclass(frozen=True)
class Expected:
    """A verdict as recorded (the package of claims' recorded verdicts): its word and the figures that decided it,
    what a new verdict is checked against. A record from before figures were kept has the word and figure only."""

    verdict: Label
    figure: str
    """The recorded one-line figure (`Verdict.figure`)."""
    value: float | None = None
    ci: tuple[float, float] | None = None
    n: int | None = None
    kind: str | None = None
    beside: tuple[Beside, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Label(self.verdict))

    @classmethod
    def of(cls, verdict: Verdict) -> Expected:
        """What recording `verdict` keeps of it."""
        return cls(verdict.verdict, verdict.figure, verdict.value, verdict.ci, verdict.n, verdict.kind, verdict.beside)

    def to_dict(self) -> dict:
        """Plain values, as the recorded file and findings.json keep them (what was not recorded left out)."""
        data = {
            "verdict": self.verdict.value,
            "value": self.value,
            "ci": list(self.ci) if self.ci else None,
            "n": self.n,
            "kind": self.kind,
            "figure": self.figure,
            "beside": [asdict(figure) for figure in self.beside] if self.value is not None else None,
        }
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict) -> Expected:
        return cls(
            verdict=data["verdict"],
            figure=data.get("figure", ""),
            value=data.get("value"),
            ci=tuple(data["ci"]) if "ci" in data else None,
            n=data.get("n"),
            kind=data.get("kind"),
            beside=tuple(Beside(**figure) for figure in data.get("beside", ())),
        )


@dataclass(frozen=True)
class ModelRecord:
    """What a report says about a model run: where its weights came from and how it ran."""

    model: str
    source: str
    weights: str
    device: str
    dtype: str
    n_layers: int
    backend: str = "bridge"
    parameters: int | None = None
    """Parameters of the model as run (None where not counted, e.g. on NDIF)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelRecord:
        return cls(**data)


@dataclass(frozen=True)
class Identity:
    """Which claim a test judges, on which models and prompt set (suite.plugin, before the test runs)."""

    claim: str | None
    """None: a per-model check (a snapshot), not a claim."""
    number: int | None
    title: str
    doc: str
    module: str
    test: str
    models: tuple[str, ...]
    prompt_set: str | None
    lens: str = EXACT_LENS
    """The lens the claim is read through (a test parametrized by `lens`), else the logit lens."""

    def to_dict(self) -> dict:
        return {**asdict(self), "models": list(self.models)}

    @classmethod
    def from_dict(cls, data: dict) -> Identity:
        return cls(**{**data, "models": tuple(data["models"])})


@dataclass(frozen=True)
class TestRecord:
    """One test's outcome and what it recorded."""

    __test__ = False  # not a pytest test class

    identity: Identity
    outcome: Outcome
    message: str | None
    verdict: Verdict | None = None
    controls: tuple[Verdict, ...] = ()
    """The claim's control verdicts (e.g. shuffled answers), shown beside it."""
    recorded: Expected | None = None
    """The recorded expectation the verdict was checked against."""
    figures: tuple[Figure, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))


@dataclass(frozen=True)
class Result:
    """A claim's outcome on some models and a prompt set: its verdict, or why there is none."""

    models: tuple[str, ...]
    prompt_set: str | None
    outcome: Outcome
    message: str | None
    verdict: Verdict | None = None
    controls: tuple[Verdict, ...] = ()
    recorded: Expected | None = None
    lens: str = EXACT_LENS
    run: Run | None = None
    """The run that produced it (a later run of other claims, sets or lenses leaves it as it was); None in a
    document from before results carried their run: the model's run stamp stands in."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))

    @property
    def key(self) -> tuple[tuple[str, ...], str | None, str]:
        """What a later run of the same models, prompt set and lens replaces."""
        return self.models, self.prompt_set, self.lens

    @property
    def label(self) -> str:
        """ "smollm2 (capitals)", "smollm2+gemma3 (capitals)" for a claim across models, "smollm2 (capitals,
        tuned lens)" through another lens than the logit lens."""
        where = ", ".join(filter(None, [self.prompt_set, None if self.lens == EXACT_LENS else f"{self.lens} lens"]))
        return "+".join(self.models) + (f" ({where})" if where else "")

    @property
    def cell(self) -> str:
        """One verdict-matrix cell: the verdict with its figure, a regression against the record, or why none."""
        verdict, recorded = self.verdict, self.recorded
        if verdict is None:
            return Outcome.SKIPPED.value if self.outcome == Outcome.SKIPPED else Outcome.FAILED.value
        if recorded and recorded.verdict != verdict.verdict:
            return f"regression: {recorded.verdict} → {verdict.verdict}"
        if self.outcome == Outcome.FAILED:
            return f"failed: {verdict.cell}"
        return verdict.cell

    @property
    def measured(self) -> str:
        """What the run measured (the verdict with its figure, not whether it matched the record, nor its Holm
        adjustment, which depends on the other verdicts in the report), or the outcome."""
        return replace(self.verdict, holm=None).cell if self.verdict else self.cell

    def to_dict(self) -> dict:
        return {
            "models": list(self.models),
            "prompt_set": self.prompt_set,
            "outcome": self.outcome.value,
            "message": self.message,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "controls": [control.to_dict() for control in self.controls],
            "recorded": self.recorded.to_dict() if self.recorded else None,
            "lens": self.lens,
            **({"run": self.run.to_dict()} if self.run else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        verdict, recorded = data.get("verdict"), data.get("recorded")
        return cls(
            models=tuple(data["models"]),
            prompt_set=data["prompt_set"],
            outcome=data["outcome"],
            message=data.get("message"),
            verdict=Verdict.from_dict(verdict) if verdict else None,
            controls=tuple(Verdict.from_dict(c) for c in data.get("controls", [])),
            recorded=Expected.from_dict(recorded) if recorded else None,
            lens=data.get("lens", EXACT_LENS),
            run=Run.from_dict(data["run"]) if data.get("run") else None,
        )


@dataclass(frozen=True)
class ClaimResults:
    """One claim: its number, title and text (its module's docstring), and its results."""

    number: int | None
    title: str
    doc: str
    module: str
    results: tuple[Result, ...] = ()

    def result_for(self, model: str, prompt_set: str | None, lens: str = EXACT_LENS) -> Result | None:
        """The result that covers this model on this prompt set through this lens, if any."""
        return next(
            (r for r in self.results if r.prompt_set == prompt_set and model in r.models and r.lens == lens), None
        )

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "title": self.title,
            "doc": self.doc,
            "module": self.module,
            "results": [result.to_dict() for result in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClaimResults:
        return cls(
            number=data["number"],
            title=data["title"],
            doc=data["doc"],
            module=data["module"],
            results=tuple(Result.from_dict(r) for r in data["results"]),
        )


@dataclass(frozen=True)
class Run:
    """When and how a model's latest results were produced (its stamp): date, command, machine, library versions
    and the git commit of the code that ran."""

    date: str
    command: str
    machine: str
    python: str
    libraries: dict[str, str] = field(default_factory=dict)
    code: Commit = Commit()
    """The git commit of the code that ran, and whether the checkout differed from it (`suite.provenance`)."""
    partial: tuple[int, int] | None = None
    """(tests done, tests selected) on this model where the run stopped before it finished them (an interrupt,
    SIGTERM, a run killed outright); None where it finished."""

    def to_dict(self) -> dict:
        return {
            "date": self.date,
            "command": self.command,
            "machine": self.machine,
            "python": self.python,
            "libraries": dict(self.libraries),
            "commit": self.code.sha,
            "dirty": self.code.dirty,
            **({"partial": list(self.partial)} if self.partial else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Run:
        """The run a `to_dict` came from; a stamp from before schema 4 (libraries beside the other keys, no
        commit) reads as one whose commit is unknown."""
        known = ("date", "command", "machine", "python")
        partial = data.get("partial")
        libraries = (
            data["libraries"]
            if "libraries" in data
            else {k: v for k, v in data.items() if k not in (*known, "partial")}
        )
        return cls(
            **{k: data[k] for k in known},
            libraries=dict(libraries),
            code=Commit(data.get("commit", UNKNOWN), data.get("dirty")),
            partial=tuple(partial) if partial else None,
        )


EDGE, LEFT_OUT = "edge", "left out"
"""The data warnings the report tabulates: a form's replies at an edge, a fact left out."""


@dataclass(frozen=True)
class DataWarning:
    """A warning about a model's prompt set, shown once: replies at an edge (`kind` EDGE, per form), a fact left
    out (LEFT_OUT), or any other note (kind empty: `text` says it all)."""

    model: str | None
    prompt_set: str | None
    text: str
    """What the warning means (for EDGE, the same for every form; for LEFT_OUT, why the fact was left out)."""
    kind: str = ""
    form: str | None = None
    """The prompt form whose replies are at an edge (EDGE)."""
    facts: tuple[str, ...] = ()
    """The facts it concerns: "id (margin)" per reply at an edge; the fact left out."""
    replies: int | None = None
    """How many replies of the form were read (EDGE; None where the run did not record it)."""

    def to_dict(self) -> dict:
        return {**asdict(self), "facts": list(self.facts)}

    @classmethod
    def from_dict(cls, data: dict) -> DataWarning:
        if "kind" not in data:  # written before warnings had fields: its sentence says the same
            return _legacy_warning(data["model"], data["prompt_set"], data["text"])
        return cls(**{**data, "facts": tuple(data.get("facts", ()))})


_LEGACY_EDGE = re.compile(r"(?P<form>[\w-]+): (?P<count>\d+) replies at an edge, (?P<text>.*?): (?P<facts>.*)")
_LEGACY_LEFT_OUT = re.compile(r"(?P<fact>\S+) left out \((?P<text>.*)\)")


def _legacy_warning(model: str | None, prompt_set: str | None, text: str) -> DataWarning:
    """A warning as its sentence stated it before warnings had fields ("qa: 3 replies at an edge, won by ...:
    a (0.1), b (0.2), c (0.0)"; "x left out (why)"), with the fields the sentence names."""
    if found := _LEGACY_EDGE.fullmatch(text):
        facts = tuple(found["facts"].split(", "))
        if len(facts) == int(found["count"]):
            return DataWarning(model, prompt_set, f"replies {found['text']}", EDGE, found["form"], facts)
    if found := _LEGACY_LEFT_OUT.fullmatch(text):
        return DataWarning(model, prompt_set, found["text"], LEFT_OUT, facts=(found["fact"],))
    return DataWarning(model, prompt_set, text)


@dataclass(frozen=True)
class ClaimFigure:
    """A figure drawn under a claim (None: a per-model check's, e.g. a lens's fidelity on a prompt set)."""

    claim: str | None
    figure: Figure

    def to_dict(self) -> dict:
        return {"claim": self.claim, **self.figure.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ClaimFigure:
        return cls(claim=data["claim"], figure=Figure.from_dict(data))


@dataclass(frozen=True)
class Results:
    """Every claim's latest results per model, what ran them, and what changed since the previous run."""

    generated: str
    command: str
    model_order: tuple[str, ...]
    runs: dict[str, Run]
    """Per model with results here, the run they come from."""
    claims: dict[str, ClaimResults]
    """Claim id -> its results, in claim order."""
    models: dict[str, ModelRecord] = field(default_factory=dict)
    checks: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """Model -> per-model check (a test that is no claim, e.g. the snapshots) -> passed/failed/skipped counts."""
    figures: tuple[ClaimFigure, ...] = ()
    warnings: tuple[DataWarning, ...] = ()
    absent: dict[str, str] = field(default_factory=dict)
    """Models whose weights are not here -> the command that fetches them."""
    by_construction: str = ""
    changes: dict[str, list[str]] | None = None
    """Per model this run ran, what differs from its previous results (None: nothing to compare with)."""
    versions: tuple[dict, ...] = ()
    """The library sets the findings ran with (reports/versions.json)."""

    @property
    def ran(self) -> list[str]:
        """The models with results here, in order."""
        return [m for m in self.model_order if m in self.runs]

    def verdicts(self) -> list[Verdict]:
        """Every claim's verdict (controls aside), claim by claim."""
        return [r.verdict for entry in self.claims.values() for r in entry.results if r.verdict]

    def with_holm(self) -> Results:
        """Every verdict with its Holm-adjusted word (`suite.statistics.holm_adjusted`: a family per model(s) and
        lens, over every claim and prompt set here)."""
        adjusted = iter(holm_adjusted(self.verdicts()))
        claims = {
            claim: replace(
                entry, results=tuple(replace(r, verdict=next(adjusted)) if r.verdict else r for r in entry.results)
            )
            for claim, entry in self.claims.items()
        }
        return replace(self, claims=claims)

    def lenses(self) -> list[str]:
        """The lenses results were read through: the logit lens first, then the others as they come."""
        return list(dict.fromkeys([EXACT_LENS, *(r.lens for e in self.claims.values() for r in e.results)]))

    def prompt_sets(self) -> list[str | None]:
        """The prompt sets in the order the claims first use them."""
        return list(dict.fromkeys(r.prompt_set for entry in self.claims.values() for r in entry.results))

    def to_dict(self) -> dict:
        return {
            "generated": self.generated,
            "command": self.command,
            "model_order": list(self.model_order),
            "models": {name: record.to_dict() for name, record in self.models.items()},
            "runs": {name: run.to_dict() for name, run in self.runs.items()},
            "claims": {claim: entry.to_dict() for claim, entry in self.claims.items()},
            "checks": self.checks,
            "figures": [figure.to_dict() for figure in self.figures],
            "warnings": [warning.to_dict() for warning in self.warnings],
            "absent": self.absent,
            "by_construction": self.by_construction,
            "changes": self.changes,
            "versions": list(self.versions),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Results:
        """The results a `to_dict` came from (KeyError or TypeError where the document is not one)."""
        return cls(
            generated=data["generated"],
            command=data["command"],
            model_order=tuple(data["model_order"]),
            models={name: ModelRecord.from_dict(record) for name, record in data.get("models", {}).items()},
            runs={name: Run.from_dict(run) for name, run in data["runs"].items()},
            claims={claim: ClaimResults.from_dict(entry) for claim, entry in data["claims"].items()},
            checks=data.get("checks", {}),
            figures=tuple(ClaimFigure.from_dict(f) for f in data.get("figures", [])),
            warnings=tuple(DataWarning.from_dict(w) for w in data.get("warnings", [])),
            absent=data.get("absent") or {},
            by_construction=data.get("by_construction") or "",
            changes=data.get("changes"),
            versions=tuple(data.get("versions") or ()),
        )


def assemble(
    records: list[TestRecord],
    models: dict[str, ModelRecord],
    model_order: list[str],
    command: str,
    run: Run | None = None,
) -> Results:
    """Results of one run: per claim its results (models, prompt set, outcome, verdict), per model its
    record, the per-model checks (tests that are not claims, e.g. snapshots), and the figures. `run`: when and
    with what it ran (default: now, here)."""
    claims: dict[str, ClaimResults] = {}
    checks: dict[str, dict[str, dict[str, int]]] = {}
    figures: list[ClaimFigure] = []
    run = run or environment(now(), command)
    for record in records:
        who = record.identity
        if who.claim is None:
            figures += [ClaimFigure(None, figure) for figure in record.figures]
            for model in who.models:
                counts = checks.setdefault(model, {}).setdefault(
                    who.test, {outcome.value: 0 for outcome in (Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED)}
                )
                counts[record.outcome.value if record.outcome.value in counts else Outcome.FAILED.value] += 1
            continue
        entry = claims.setdefault(who.claim, ClaimResults(who.number, who.title, who.doc, who.module))
        verdict = record.verdict
        # A claim across models that was not judged concerns the models that ran, not every one named.
        unjudged = tuple(m for m in who.models if m in models or len(who.models) == 1) or who.models
        result = Result(
            models=verdict.models if verdict else unjudged,
            prompt_set=verdict.prompt_set if verdict else who.prompt_set,
            outcome=record.outcome,
            message=record.message,
            verdict=verdict,
            controls=record.controls,
            recorded=record.recorded,
            lens=verdict.lens if verdict else who.lens,
            run=run,
        )
        claims[who.claim] = replace(entry, results=(*entry.results, result))
        figures += [ClaimFigure(who.claim, figure) for figure in record.figures]
    order = tuple(dict.fromkeys([*model_order, *models]))
    generated = run.date
    judged = {m for entry in claims.values() for r in entry.results for m in r.models}
    return Results(
        generated=generated,
        command=command,
        model_order=order,
        models=dict(models),
        # Only the models this run produced results for: `-m smollm2` deselects the others' tests (a claim
        # across models it did not judge concerns the models that ran).
        runs={name: run for name in order if name in models or name in checks or name in judged},
        claims=dict(sorted(claims.items(), key=lambda item: item[1].number or 0)),
        checks=checks,
        figures=tuple(figures),
    )


def now() -> str:
    """The date and time a report states, in UTC to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def environment(date: str, command: str, outputs: tuple[Path, ...] = ()) -> Run:
    """This run: the machine, Python, the library versions and the code's commit it used (each model's record
    carries its run's); `outputs`: folders the run writes, no change of code (the reports)."""
    return Run(
        date=date,
        command=command,
        machine=f"{platform.system()} {platform.machine()}",
        python=platform.python_version(),
        libraries=library_versions(),
        code=code_commit(outputs=outputs),
    )
