"""Results accumulate across runs: a run replaces what it ran (claim x models x prompt set) and keeps the
rest, each model stamped with its own run (`runs`). Llama 3 on Monday and Mistral on Tuesday give one report."""

from __future__ import annotations

from dataclasses import replace

from suite.results import ClaimResults, Results


def merge(previous: Results | None, current: Results) -> Results:
    """`current` with everything of `previous` it did not run again: claims' results, models (with their
    run stamps), per-model checks, figures and data warnings."""
    if previous is None:
        return current
    ran = set(current.runs)

    def kept(old: dict, new: dict) -> dict:
        return {**{m: value for m, value in old.items() if m not in ran}, **new}

    claims = _merge_claims(previous.claims, current.claims)
    new_files = {(f.figure.model, f.figure.name) for f in current.figures}
    new_sets = {(w.model, w.prompt_set) for w in current.warnings} | {
        (m, r.prompt_set) for e in current.claims.values() for r in e.results for m in r.models
    }
    return replace(
        current,
        models=kept(previous.models, current.models),
        runs=kept(previous.runs, current.runs),
        checks=kept(previous.checks, current.checks),
        model_order=tuple(dict.fromkeys([*current.model_order, *previous.model_order])),
        claims=claims,
        figures=tuple(
            f
            for f in previous.figures
            if (f.figure.model, f.figure.name) not in new_files and (f.claim is None or f.claim in claims)
        )
        + current.figures,
        warnings=tuple(w for w in previous.warnings if (w.model, w.prompt_set) not in new_sets) + current.warnings,
        changes={**{m: c for m, c in (previous.changes or {}).items() if m not in ran}, **(current.changes or {})},
    )


def _merge_claims(previous: dict[str, ClaimResults], current: dict[str, ClaimResults]) -> dict[str, ClaimResults]:
    claims = dict(previous)
    for claim, entry in current.items():
        kept = list(claims[claim].results) if claim in claims else []
        results = []
        for new in entry.results:
            models = set(new.models)
            same = [old for old in kept if (old.prompt_set, old.lens) == (new.prompt_set, new.lens)]
            if new.verdict is None and any(old.verdict for old in same if models < set(old.models)):
                continue  # a claim across models run on fewer of them keeps its last comparison of more
            kept = [old for old in kept if not (old in same and set(old.models) <= models)]
            results.append(new)
        claims[claim] = replace(entry, results=(*kept, *results))
    return dict(sorted(claims.items(), key=lambda item: item[1].number or 0))
