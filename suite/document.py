"""reports/findings.json, the results document: the one serializer that writes it and reads it back, with its
schema version, and what sets an unreadable one aside. Imports no torch (`./run report` reads it)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from suite.results import Results

RESULTS = "findings.json"
SCHEMA = 4
"""The document's layout version: a document in a layout this code cannot read is neither merged nor compared.
3: `runs` stamps each model with its run (date, command, versions); warnings name their model and set. Later
within 3 (read alike without them): each result carries its own run; a warning its kind, form, facts and replies.
4: a run's stamp keeps its library versions under `libraries` and the git commit of the code that ran."""
READS = (3, SCHEMA)
"""The layouts read back (a schema 3 run stamp reads with its commit unknown: `suite.results.Run.from_dict`)."""


def dumps(results: Results) -> str:
    """The document's text: the schema version, then the results."""
    return json.dumps({"schema": SCHEMA, **results.to_dict()}, indent=1, ensure_ascii=False)


def loads(text: str) -> Results | None:
    """The results of a document's text; None where it is in a layout this code does not read. ValueError, KeyError
    or TypeError where the text is no results document."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("schema") not in READS:
        return None
    return Results.from_dict(data)


def load_results(reports_dir: Path) -> Results | None:
    """The results of the last run written to `reports_dir`; None if there are none, or if they are in another
    layout (an older schema: neither merged nor compared, and rewritten by the next run)."""
    path = reports_dir / RESULTS
    if not path.is_file():
        return None
    try:
        return loads(path.read_text())
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        from lens.errors import LensError  # here only: the lens package imports torch, which reading needs not

        raise LensError(
            f"{path} is not a findings results file: rerun the findings, which set it aside and write a new one"
        ) from None


def set_aside_if_unreadable(reports_dir: Path) -> Path | None:
    """Move an unreadable results file out of the way under a dated name (before any model loads, so a run
    never computes for minutes and then cannot write its results); the new name, or None if all is well."""
    path = reports_dir / RESULTS
    if not path.is_file():
        return None
    try:
        loads(path.read_text())
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        kept = path.with_name(f"{path.stem}.unreadable-{datetime.now():%Y%m%d-%H%M%S}.json")
        path.replace(kept)
        return kept
    return None
