"""A syrupy extension for per-layer lens snapshots: one file per (model, prompt set), one line per
(prompt, layer) so a diff reads layer by layer, stamped with the library versions, model hash, device and
dtype that made it, and compared with tolerances that let near-ties through and stop real drift.

What is compared, per layer: the answer's log-probability (within LOGP_TOLERANCE nats: a relative
tolerance on p, so p = 1e-5 is held as tightly as p = 0.5), its rank (exact up to 10, else within
RANK_TOLERANCE relative), and the top-k tokens as a set, where a token may swap in or out only if its
probability is within TIE of the k-th (a near-tie that flips on another device or dtype).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

from lens.trace import Trace

LIBRARIES = ("torch", "transformers", "transformer_lens")
LOGP_TOLERANCE = 0.05
"""Largest |log p_new - log p_snapshot| (nats) of the answer at a layer: 5% of p, at any p."""
RANK_TOLERANCE = 0.25
"""Ranks above 10 may move by this share (deep ranks turn on near-ties in float error)."""
TIE = 0.002
"""Probability gap within which top-k tokens count as tied: they may swap order, in or out of the top-k."""
FLOOR = -30.0
"""log p below this is stored as this (exp(-30) ~ 1e-13: nothing to compare beneath)."""


def snapshot_data(traces: Sequence[Trace], meta: dict[str, str], top_k: int = 5) -> dict[str, Any]:
    """What a snapshot holds for one (model, prompt set): per prompt and layer, the answer's log-probability
    and rank and the top-k tokens with their probabilities."""
    return {
        "meta": {**meta, **{lib: version(lib.replace("_", "-")) for lib in LIBRARIES}},
        "rows": [
            {"prompt": trace.prompt, "layer": lay.layer, "followed": trace.answer_token,
             "logp": _logp(lay.p_answer), "rank": lay.rank_answer,
             "top": [[tok, round(p, 4)] for tok, p in lay.top[:top_k]]}
            for trace in traces for lay in trace.layers
        ],
    }


class LayerSnapshotExtension(JSONSnapshotExtension):
    """One JSON file per (model, prompt set); `meta` is recorded but not compared."""

    def serialize(self, data: Any, **_: Any) -> str:
        rows = ",\n".join(f"    {json.dumps(row, ensure_ascii=False)}" for row in data["rows"])
        return "{\n" + f'  "meta": {json.dumps(data["meta"], ensure_ascii=False)},\n  "rows": [\n{rows}\n  ]\n}}\n'

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        try:
            new, old = json.loads(serialized_data), json.loads(snapshot_data)
        except (TypeError, json.JSONDecodeError):
            return False
        return rows_match(new["rows"], old["rows"])


def rows_match(new: list[dict], old: list[dict]) -> bool:
    """Whether every (prompt, layer) row agrees within the tolerances."""
    return len(new) == len(old) and all(_row_matches(a, b) for a, b in zip(new, old))


def drifted_layers(new: list[dict], old: list[dict]) -> dict[int, int]:
    """Per layer, how many prompts' rows moved beyond the tolerances (every old row, where the rows no
    longer line up: another prompt or token followed)."""
    if len(new) != len(old):
        return {row["layer"]: 1 for row in old}
    found: dict[int, int] = {}
    for a, b in zip(new, old):
        if not _row_matches(a, b):
            found[b["layer"]] = found.get(b["layer"], 0) + 1
    return found


def _row_matches(new: dict, old: dict) -> bool:
    if (new["prompt"], new["layer"], new["followed"]) != (old["prompt"], old["layer"], old["followed"]):
        return False
    if abs(new["logp"] - old["logp"]) > LOGP_TOLERANCE:
        return False
    if min(new["rank"], old["rank"]) <= 10 and max(new["rank"], old["rank"]) <= 10:
        if new["rank"] != old["rank"]:
            return False
    elif abs(new["rank"] - old["rank"]) > RANK_TOLERANCE * max(new["rank"], old["rank"]):
        return False
    return _tops_match(dict(map(tuple, new["top"])), dict(map(tuple, old["top"])))


def _tops_match(new: dict[str, float], old: dict[str, float]) -> bool:
    """Same top-k as a set with the same probabilities, but for tokens tied with the k-th."""
    for token in new.keys() | old.keys():
        if token in new and token in old:
            if abs(new[token] - old[token]) > TIE + 0.05 * max(new[token], old[token]):
                return False
        else:
            inside, other = (new, old) if token in new else (old, new)
            if inside[token] - min(other.values()) > TIE:
                return False
    return True


def _logp(p: float | None) -> float | None:
    return None if p is None else round(max(math.log(p), FLOOR) if p > 0 else FLOOR, 4)
