"""reports/versions.json: which library versions the findings ran with, per device and dtype, on which models (each
with the commit of the code that ran), and whether every figure and snapshot held against the record (nnterp's
tested-versions file, for findings). A run adds or updates its own entry and keeps the others."""

from __future__ import annotations

import json
import os
from pathlib import Path

from suite.results import Outcome, Results

VERSIONS = "versions.json"


def held_by_model(results: Results) -> dict[str, bool]:
    """Per model this run ran: whether every claim and check held against the record (nothing failed, no
    recorded verdict flipped)."""
    held = {model: True for model in results.runs}
    for entry in results.claims.values():
        for result in entry.results:
            if not result.outcome.as_recorded:
                for model in result.models:
                    if model in held:
                        held[model] = False
    for model, checks in results.checks.items():
        if model in held and any(counts[Outcome.FAILED] for counts in checks.values()):
            held[model] = False
    return held


def update_versions(results: Results, reports_dir: Path, libraries: dict[str, str]) -> list[dict]:
    """Add this run to versions.json (atomically): one entry per library set (`libraries`: name -> version), device and
    dtype, each model with the date and code commit of its last run there and whether everything held. Returns every
    entry."""
    path = reports_dir / VERSIONS
    try:
        entries = json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError:
        entries = []  # an unreadable file is rewritten from this run on
    for model, held in held_by_model(results).items():
        record = results.models.get(model)
        key = {
            "libraries": libraries,
            "device": record.device if record else "?",
            "dtype": record.dtype if record else "?",
        }
        entry = next((e for e in entries if {k: e[k] for k in key} == key), None)
        if entry is None:
            entry = {**key, "models": {}}
            entries.append(entry)
        run = results.runs[model]
        entry["models"][model] = {"date": run.date, "held": held, "commit": run.code.sha, "dirty": run.code.dirty}
    reports_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    tmp.replace(path)
    return entries
