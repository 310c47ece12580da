"""Turns the findings run's test outcomes into the results document behind reports/findings.json."""

from __future__ import annotations

import ast
import platform
import re
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

CAPITALS = "capitals"
"""The default prompt set: its results are keyed by model alone, the others' by model@set."""
CLAIM_MODULE = re.compile(r"test_(\d+)_(\w+)")
SNAPSHOT_MODULE = "test_layer_snapshots"


def assemble(config: Any, tests: list[dict], models: dict[str, dict], model_order: list[str]) -> dict:
    """Results of one run: per claim and model the outcome and verdict, per model its record."""
    claims: dict[str, dict] = {}
    snapshots: dict[str, dict] = {}
    for test in tests:
        path, _, name = test["nodeid"].partition("::")
        module = Path(path).stem
        param = name[name.index("[") + 1 : -1] if "[" in name else ""
        if module == SNAPSHOT_MODULE:
            counts = snapshots.setdefault(param.split("-")[0], {"passed": 0, "failed": 0, "skipped": 0})
            counts[test["outcome"] if test["outcome"] in counts else "failed"] += 1
            continue
        match = CLAIM_MODULE.fullmatch(module)
        if not match:
            continue
        entry = claims.setdefault(match[2], {"number": int(match[1]), **_describe(config.rootpath / path),
                                             "results": {}})
        # Ids are model-@set for claims run on several prompt sets; verdicts carry model@set already.
        key = test["verdict"]["model"] if test["verdict"] else param.replace("-@", "@")
        key = key.removesuffix(f"@{CAPITALS}")
        if key == "all":  # a claim across models, not judged: it concerns the models that ran
            key = "+".join(models) or "all"
        entry["results"][key] = {k: test[k] for k in ("outcome", "message", "verdict", "recorded")}
    order = list(dict.fromkeys([*model_order, *models]))
    return {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["pytest", *config.invocation_params.args]),
        "model_order": order,
        "models": models,
        "claims": dict(sorted(claims.items(), key=lambda item: item[1]["number"])),
        "snapshots": snapshots,
        "environment": environment(models),
    }


def environment(models: dict[str, dict]) -> dict[str, str]:
    """Date, machine, devices, dtypes, library versions and each model's source and hash."""
    env = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        **{lib: version(lib) for lib in ("torch", "transformers", "transformer-lens")},
    }
    for name, record in models.items():
        env[name] = f"{record['source']}; {record['dtype']} on {record['device']}; weights {record['weights']}"
    return env


def _describe(module_path: Path) -> dict[str, str]:
    """A claim module's docstring: its first line is the title, the rest the claim and its definition."""
    doc = ast.get_docstring(ast.parse(module_path.read_text())) or module_path.stem
    title, _, rest = doc.partition("\n")
    return {"title": title.strip().rstrip("."), "doc": rest.strip(), "module": module_path.name}
