"""Recording measured verdicts as the expected ones (findings/expected_verdicts.toml), from a run's results."""

from __future__ import annotations

import json
import os
from pathlib import Path

HEADER = """\
# Recorded verdicts, per claim and model, each with the measured figure that decided it.
# A claim recorded as refuted or inconclusive runs as a strict xfail: a run fails when a verdict flips.
# Written by `lens verdicts --record` from a findings run; never edit a verdict to make a run green.
"""


def render_recorded(results: dict) -> str:
    """The TOML text recording every verdict of a run, with its figure and the run's environment."""
    env = results["environment"]
    lines = [HEADER.rstrip(), f"# Measured {results['generated']} by `{results['command']}`",
             f"# on {env['machine']}, torch {env['torch']}, transformers {env['transformers']}, "
             f"transformer-lens {env['transformer-lens']}.", ""]
    for claim, entry in results["claims"].items():
        rows = [(model, res["verdict"]) for model, res in entry["results"].items() if res.get("verdict")]
        if not rows:
            continue
        lines.append(f"[{claim}]")
        for model, verdict in rows:
            lines.append(f"{json.dumps(model)} = {{ verdict = {json.dumps(verdict['verdict'])}, "
                         f"figure = {json.dumps(verdict['figure'], ensure_ascii=False)} }}")
        lines.append("")
    return "\n".join(lines)


def write_recorded(results: dict, path: Path) -> None:
    """Replace the recorded verdicts file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_recorded(results))
    tmp.replace(path)
