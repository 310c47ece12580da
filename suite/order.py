"""The order of everything in the results, fixed by the data, never by the order tests ran or finished in (xdist,
`-k`, a rerun of part of the run): claims by number, then each claim's results by prompt set, model and lens; the
models, runs, checks, figures and warnings by model. Two runs with the same verdicts write the same findings.json
and findings.md, but for dates and durations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from lens.lenses.registry import LENSES
from lens.models.registry import registry
from suite.results import ClaimResults, Result, Results


class Ranks:
    """Positions in a fixed order, and after it, in the order first seen, whatever was not in it."""

    def __init__(self, fixed: Iterable[str | None] = (), seen: Iterable[str | None] = ()) -> None:
        self.order: dict[str | None, int] = {}
        for name in [*fixed, *seen]:
            self.order.setdefault(name, len(self.order))

    def __call__(self, name: str | None) -> int:
        return self.order.setdefault(name, len(self.order))


def model_order(*orders: Sequence[str]) -> tuple[str, ...]:
    """The models of several runs' orders in one order: the registry's (models.toml) first, then others as first
    seen (the earlier runs' orders first, so a model given by path keeps its place)."""
    seen = list(dict.fromkeys(name for order in orders for name in order))
    return tuple([name for name in registry() if name in seen] + [name for name in seen if name not in registry()])


def ordered(results: Results, prompt_sets: Sequence[str] = (), previous: Results | None = None) -> Results:
    """`results` with every part in the data's order: `prompt_sets` as the package of claims orders them (sets it
    does not name, as first seen in `previous`, then in `results`), the models as `model_order`, the lenses as
    `lens.lenses.registry` declares them."""
    models = model_order(previous.model_order if previous else (), results.model_order)
    model_rank = Ranks(models)
    sets = Ranks(
        prompt_sets,
        [
            r.prompt_set
            for source in (previous, results)
            if source is not None
            for entry in source.claims.values()
            for r in entry.results
        ],
    )
    lens_rank = Ranks(LENSES)

    def result_key(result: Result) -> tuple:
        return (
            sets(result.prompt_set),
            len(result.models) > 1,
            [model_rank(m) for m in result.models],
            lens_rank(result.lens),
        )

    claims = sorted(results.claims.items(), key=lambda item: (item[1].number is None, item[1].number or 0, item[0]))
    claim_rank = Ranks([None, *(claim for claim, _ in claims)])

    def by_model(mapping: dict) -> dict:
        return {name: mapping[name] for name in sorted(mapping, key=model_rank)}

    return replace(
        results,
        model_order=models,
        claims={claim: _sorted_results(entry, result_key) for claim, entry in claims},
        models=by_model(results.models),
        runs=by_model(results.runs),
        checks={model: dict(sorted(checks.items())) for model, checks in by_model(results.checks).items()},
        figures=tuple(
            sorted(
                results.figures,
                key=lambda f: (
                    claim_rank(f.claim),
                    sets(getattr(f.figure, "prompt_set", None) or None),
                    model_rank(f.figure.model),
                    lens_rank(getattr(f.figure, "lens", "") or ""),
                    f.figure.name,
                ),
            )
        ),
        warnings=tuple(sorted(results.warnings, key=lambda w: (model_rank(w.model), sets(w.prompt_set), w.text))),
        changes=None if results.changes is None else by_model(results.changes),
    )


def _sorted_results(entry: ClaimResults, key) -> ClaimResults:
    return replace(entry, results=tuple(sorted(entry.results, key=key)))
