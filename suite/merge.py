"""Results accumulate across runs: a run replaces what it ran (claim x models x prompt set) and keeps the
rest, each model stamped with its own run (`runs`). Llama 3 on Monday and Mistral on Tuesday give one report."""

from __future__ import annotations

from suite.results import SCHEMA


def merge(previous: dict | None, current: dict) -> dict:
    """`current` with everything of `previous` it did not run again: claims' results, models (with their
    run stamps), per-model checks, figures and data warnings. A previous run in another layout is dropped."""
    if previous is None or previous.get("schema") != SCHEMA:
        return current
    ran = set(current["runs"])
    merged = dict(current)
    for key in ("models", "runs", "checks"):
        merged[key] = {**{m: r for m, r in previous.get(key, {}).items() if m not in ran}, **current.get(key, {})}
    merged["model_order"] = list(dict.fromkeys([*current["model_order"], *previous["model_order"]]))
    merged["claims"] = _merge_claims(previous["claims"], current["claims"])
    new_files = {(f["model"], f["name"]) for f in current.get("figures", [])}
    merged["figures"] = [f for f in previous.get("figures", []) if (f["model"], f["name"]) not in new_files
                         and f["claim"] in merged["claims"]] + current.get("figures", [])
    new_sets = {(w["model"], w["prompt_set"]) for w in current.get("warnings", [])} | {
        (m, r["prompt_set"]) for e in current["claims"].values() for r in e["results"] for m in r["models"]}
    merged["warnings"] = [w for w in previous.get("warnings", []) if (w["model"], w["prompt_set"]) not in new_sets
                          ] + current.get("warnings", [])
    merged["changes"] = {**{m: c for m, c in (previous.get("changes") or {}).items() if m not in ran},
                         **(current.get("changes") or {})}
    return merged


def _merge_claims(previous: dict, current: dict) -> dict:
    claims = {claim: dict(entry, results=list(entry["results"])) for claim, entry in previous.items()}
    for claim, entry in current.items():
        kept = claims.get(claim, {}).get("results", [])
        results = []
        for new in entry["results"]:
            models = set(new["models"])
            covered = [old for old in kept if old["prompt_set"] == new["prompt_set"] and models < set(old["models"])]
            if new.get("verdict") is None and any(old.get("verdict") for old in covered):
                continue  # a claim across models run on fewer of them keeps its last comparison of more
            kept = [old for old in kept if not (old["prompt_set"] == new["prompt_set"]
                                                and set(old["models"]) <= models)]
            results.append(new)
        claims[claim] = dict(entry, results=kept + results)
    return dict(sorted(claims.items(), key=lambda item: item[1]["number"] or 0))
