"""Hand-built typed results for the suite's tests: a verdict, a result and a run's results in one line each."""

from __future__ import annotations

from dataclasses import replace

from suite.results import ClaimResults, ModelRecord, Result, Results, Run
from suite.statistics import Verdict


def verdict(models=("smollm2",), prompt_set="capitals", label="holds", claim="c", value=0.8) -> Verdict:
    return Verdict(
        claim=claim,
        models=tuple(models),
        prompt_set=prompt_set,
        verdict=label,
        statistic="share",
        value=value,
        ci=(0.6, 0.9),
        rule="r",
        n=7,
    )


def result(models=("smollm2",), prompt_set="capitals", label: str | None = "holds", outcome=None) -> Result:
    """A result with a verdict labelled `label`, or (None) a skip without one."""
    return Result(
        models=tuple(models),
        prompt_set=prompt_set,
        outcome=outcome or ("passed" if label else "skipped"),
        message=None if label else "skipped",
        verdict=verdict(models, prompt_set, label) if label else None,
    )


def run(date: str) -> Run:
    return Run(
        date=date, command="pytest findings/", machine="Linux x86_64", python="3.11.7", libraries={"torch": "2.13.0"}
    )


def results(date: str, claims: dict[str, list[Result]], dtype="float32", **more) -> Results:
    """A run on `date` of every model its results name."""
    models = list(dict.fromkeys(m for rs in claims.values() for r in rs for m in r.models))
    built = Results(
        generated=date,
        command="pytest findings/",
        model_order=tuple(models),
        runs={m: run(date) for m in models},
        claims={
            c: ClaimResults(number=i, title=c.title(), doc="", module=f"test_{c}.py", results=tuple(rs))
            for i, (c, rs) in enumerate(claims.items())
        },
        models={
            m: ModelRecord(model=m, source="s", weights="w", device="cpu", dtype=dtype, n_layers=4) for m in models
        },
    )
    return replace(built, **more)
