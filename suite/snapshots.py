"""A syrupy extension for per-layer lens snapshots: rounded, one line per layer so a diff reads layer by
layer, compared with a tolerance, and stamped with the library versions and model hash that made it."""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

from lens.trace import Trace

DIGITS = 3
"""Probabilities are stored to this many decimals."""
TOLERANCE = 0.01
"""Largest |p_new - p_snapshot| that still matches; tokens must match exactly."""
LIBRARIES = ("torch", "transformers", "transformer_lens")


def snapshot_data(trace: Trace, weights_id: str, top_k: int = 5) -> dict[str, Any]:
    """What a snapshot holds for one (model, prompt): per-layer top-k tokens and the answer's probability."""
    return {
        "meta": {
            "model": trace.model,
            "weights": weights_id,
            **{lib: version(lib.replace("_", "-")) for lib in LIBRARIES},
        },
        "prompt": trace.prompt,
        "answer_token": trace.answer_token,
        "layers": [
            {"layer": lay.layer, "p_answer": _round(lay.p_answer),
             "top": [[tok, _round(p)] for tok, p in lay.top[:top_k]]}
            for lay in trace.layers
        ],
        "output": {"p_answer": _round(trace.output.p_answer),
                   "top": [[tok, _round(p)] for tok, p in trace.output.top[:top_k]]},
    }


class LayerSnapshotExtension(JSONSnapshotExtension):
    """One JSON file per (model, prompt); `meta` is recorded but not compared."""

    def serialize(self, data: Any, **_: Any) -> str:
        head = {k: v for k, v in data.items() if k not in ("layers", "output")}
        lines = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
        layers = ",\n".join(f"    {json.dumps(lay, ensure_ascii=False)}" for lay in data["layers"])
        output = json.dumps(data["output"], ensure_ascii=False)
        return "{\n" + "\n".join(lines) + f'\n  "layers": [\n{layers}\n  ],\n  "output": {output}\n}}\n'

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        try:
            new, old = json.loads(serialized_data), json.loads(snapshot_data)
        except (TypeError, json.JSONDecodeError):
            return False
        new.pop("meta", None), old.pop("meta", None)
        return _close(new, old)


def _round(p: float | None) -> float | None:
    return None if p is None else round(p, DIGITS)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=TOLERANCE)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b
