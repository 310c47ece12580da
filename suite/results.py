"""The results document behind reports/findings.json: what each test recorded, grouped by claim, with
the models that ran and the environment. Built from typed identities, never from node ids."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

SCHEMA = 3
"""The results document's layout version: a previous run in another layout is neither merged nor compared.
3: `runs` stamps each model with its run (date, command, versions); warnings name their model and set."""


@dataclass
class TestRecord:
    """One test's outcome and what it recorded (plain values, from its report's user_properties)."""

    identity: dict[str, Any]
    """Claim id, number, title, doc, module, test name, models and prompt set (suite.plugin)."""
    outcome: str
    """passed, failed, skipped, xfailed or xpassed."""
    message: str | None
    verdict: dict | None = None
    controls: list[dict] = field(default_factory=list)
    """The claim's control verdicts (e.g. shuffled answers), shown beside it."""
    recorded: dict | None = None
    figures: list[dict] = field(default_factory=list)


def assemble(records: list[TestRecord], models: dict[str, dict], model_order: list[str], command: str) -> dict:
    """Results of one run: per claim its results (models, prompt set, outcome, verdict), per model its
    record, the per-model checks (tests that are not claims, e.g. snapshots), and the figures."""
    claims: dict[str, dict] = {}
    checks: dict[str, dict[str, dict[str, int]]] = {}
    figures = []
    for record in records:
        who = record.identity
        if who["claim"] is None:
            for model in who["models"]:
                counts = checks.setdefault(model, {}).setdefault(who["test"], {"passed": 0, "failed": 0, "skipped": 0})
                counts[record.outcome if record.outcome in counts else "failed"] += 1
            continue
        entry = claims.setdefault(who["claim"], {
            "number": who["number"], "title": who["title"], "doc": who["doc"], "module": who["module"],
            "results": [],
        })
        verdict = record.verdict
        # A claim across models that was not judged concerns the models that ran, not every one named.
        unjudged = [m for m in who["models"] if m in models or len(who["models"]) == 1] or who["models"]
        entry["results"].append({
            "models": verdict["models"] if verdict else unjudged,
            "prompt_set": verdict["prompt_set"] if verdict else who["prompt_set"],
            "outcome": record.outcome, "message": record.message,
            "verdict": verdict, "controls": record.controls, "recorded": record.recorded,
        })
        figures += [{"claim": who["claim"], **figure} for figure in record.figures]
    order = list(dict.fromkeys([*model_order, *models]))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run = {"date": generated, "command": command, **environment()}
    return {
        "schema": SCHEMA,
        "generated": generated,
        "command": command,
        "model_order": order,
        "models": models,
        # Only the models this run produced results for: `-m smollm2` deselects the others' tests (a claim
        # across models it did not judge concerns the models that ran).
        "runs": {name: run for name in order if name in models or name in checks
                 or any(name in r["models"] for e in claims.values() for r in e["results"])},
        "claims": dict(sorted(claims.items(), key=lambda item: item[1]["number"] or 0)),
        "checks": checks,
        "figures": figures,
    }


def environment() -> dict[str, str]:
    """The machine, Python and the library versions a run used (each model's record carries its run's)."""
    return {
        "machine": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        **{lib: version(lib) for lib in ("torch", "transformers", "transformer-lens")},
    }
