"""A syrupy extension for per-layer lens snapshots: one file per (model, prompt set), one line per
(prompt, layer) so a diff reads layer by layer, stamped with the library versions, code commit, model hash, device
and dtype that made it, and compared with tolerances (per dtype, measured: `SnapshotTolerance`) that let
near-ties through and stop real drift.

What is compared, per layer: the followed token's log-probability (a relative tolerance on p, so p = 1e-5 is
held as tightly as p = 0.5, down to a floor below which nothing is compared), its rank (exact where either
side has it in the top 10, but for one place where its log p has not moved: another token crossed it at a tie
of float error; else within a relative tolerance), and the top-k tokens as a set, where a token
may swap in or out only if its probability is within `tie` of the k-th. A prompt whose reply changed (it
flipped at a near-tie in another dtype) counts against an allowance, `replies`: read after other whitespace,
its rows have nothing left to compare; following another token there, only their top-k.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

from lens.reads.records import Trace
from suite.provenance import code_commit, library_versions

FLOOR = -30.0
"""log p below this is stored as this (exp(-30) ~ 1e-13: nothing to compare beneath)."""


@dataclass(frozen=True)
class SnapshotTolerance:
    """How far a run may differ from a snapshot, per layer row (claims.toml [snapshot], per dtype)."""

    logp: float
    """Largest |log p_new - log p_snapshot| (nats) of the followed token at a layer where log p >= `deep`."""
    deep: float
    """log p below which the followed token's probability is too small to compare (its rank still is)."""
    rank: float
    """Ranks above 10 may move by this share (deep ranks turn on near-ties in float error)."""
    near_rank: int
    """A rank in the top 10 (on either side) may move by this many places (0: exact)..."""
    unmoved: float
    """... and by one place more where the followed token's log p moved by at most this (nats): it did not move,
    another token crossed it at a tie within float error. Measured: SmolLM2, "Question: What is 12 - 5? Answer:"
    at block 26, " 7" and " 5" 4.8e-6 apart in logit, ranks 7 and 8 on two machines, log p -3.7124 on both."""
    tie: float
    """Probability gap within which top-k tokens count as tied: they may swap order, in or out of the top-k;
    a top-k probability may move by `tie` + `top` * p."""
    top: float
    replies: int
    """Prompts whose followed token may differ from the snapshot's (a reply flipped at a near-tie)."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any], dtype: str = "float32") -> SnapshotTolerance:
        """The tolerance for a run in `dtype` from a [snapshot] table whose sub-tables override it per dtype."""
        values = {k: v for k, v in table.items() if not isinstance(v, Mapping)} | dict(table.get(dtype, {}))
        missing = {f.name for f in fields(cls)} - values.keys()
        if missing:
            raise ValueError(f"the [snapshot] tolerance table lacks {', '.join(sorted(missing))}")
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def snapshot_data(traces: Sequence[Trace], meta: dict[str, str], top_k: int = 5) -> dict[str, Any]:
    """What a snapshot holds for one (model, prompt set): per prompt and layer, the followed token's
    log-probability and rank and the top-k tokens with their probabilities."""
    return {
        "meta": {**meta, **library_versions(), "commit": code_commit().text},
        "rows": [
            {
                "prompt": trace.prompt,
                "lead": trace.read_after[len(trace.prompt) :],
                "layer": lay.layer,
                "followed": trace.answer_token,
                "logp": _logp(lay.p_answer),
                "rank": lay.rank_answer,
                "top": [[tok, round(p, 4)] for tok, p in lay.top[:top_k]],
            }
            for trace in traces
            for lay in trace.layers
        ],
    }


def layer_snapshot_extension(tolerance: SnapshotTolerance) -> type[JSONSnapshotExtension]:
    """The extension class comparing with `tolerance` (syrupy instantiates extensions itself)."""
    return type("LayerSnapshotExtension", (LayerSnapshotExtension,), {"tolerance": tolerance})


class LayerSnapshotExtension(JSONSnapshotExtension):
    """One JSON file per (model, prompt set); `meta` is recorded but not compared."""

    tolerance: SnapshotTolerance

    def serialize(self, data: Any, **_: Any) -> str:
        rows = ",\n".join(f"    {json.dumps(row, ensure_ascii=False)}" for row in data["rows"])
        return "{\n" + f'  "meta": {json.dumps(data["meta"], ensure_ascii=False)},\n  "rows": [\n{rows}\n  ]\n}}\n'

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        try:
            new, old = json.loads(serialized_data), json.loads(snapshot_data)
        except (TypeError, json.JSONDecodeError):
            return False
        return rows_match(new["rows"], old["rows"], self.tolerance)


def rows_match(new: list[dict], old: list[dict], tolerance: SnapshotTolerance) -> bool:
    """Whether every (prompt, layer) row agrees within the tolerance, and few enough replies changed."""
    drift = drifted_layers(new, old, tolerance)
    return not drift and len(changed_replies(new, old)) <= tolerance.replies


def changed_replies(new: list[dict], old: list[dict]) -> list[str]:
    """The prompts whose reply changed between the two runs (rows lined up): the lens reads them after
    other whitespace, or follows another token."""
    if not _aligned(new, old):
        return sorted({row["prompt"] for row in old})
    return sorted({b["prompt"] for a, b in zip(new, old) if not _same_lead(a, b) or a["followed"] != b["followed"]})


def drifted_layers(new: list[dict], old: list[dict], tolerance: SnapshotTolerance) -> dict[int, int]:
    """Per layer, how many prompts' rows moved beyond the tolerance (every old row, where the rows no
    longer line up: other prompts or layers)."""
    if not _aligned(new, old):
        return {row["layer"]: 1 for row in old}
    found: dict[int, int] = {}
    for a, b in zip(new, old):
        if not _row_matches(a, b, tolerance):
            found[b["layer"]] = found.get(b["layer"], 0) + 1
    return found


def _aligned(new: list[dict], old: list[dict]) -> bool:
    return len(new) == len(old) and all(
        (a["prompt"], a["layer"]) == (b["prompt"], b["layer"]) for a, b in zip(new, old)
    )


def _same_lead(new: dict, old: dict) -> bool:
    """Whether the lens read both rows at the same place (a snapshot from before leads were kept: assumed)."""
    return "lead" not in new or "lead" not in old or new["lead"] == old["lead"]


def _row_matches(new: dict, old: dict, tol: SnapshotTolerance) -> bool:
    """One row against the other (a changed reply is counted by `changed_replies`, not here)."""
    if not _same_lead(new, old):  # read at another position: nothing left to compare
        return True
    top = _tops_match(dict(map(tuple, new["top"])), dict(map(tuple, old["top"])), tol)
    if new["followed"] != old["followed"]:  # another token followed there: only the layer's top-k compares
        return top
    if max(new["logp"], old["logp"]) >= tol.deep and abs(new["logp"] - old["logp"]) > tol.logp:
        return False
    if min(new["rank"], old["rank"]) <= 10:  # in the top 10 on either side: (nearly) exact
        tied = abs(new["logp"] - old["logp"]) <= tol.unmoved  # it stayed; a token within float error crossed it
        if abs(new["rank"] - old["rank"]) > tol.near_rank + tied:
            return False
    elif abs(new["rank"] - old["rank"]) > tol.rank * max(new["rank"], old["rank"]):
        return False
    return top


def _tops_match(new: dict[str, float], old: dict[str, float], tol: SnapshotTolerance) -> bool:
    """Same top-k as a set with the same probabilities, but for tokens tied with the k-th."""
    for token in new.keys() | old.keys():
        if token in new and token in old:
            if abs(new[token] - old[token]) > tol.tie + tol.top * max(new[token], old[token]):
                return False
        else:
            inside, other = (new, old) if token in new else (old, new)
            if inside[token] - min(other.values()) > tol.tie:
                return False
    return True


def _logp(p: float | None) -> float | None:
    return None if p is None else round(max(math.log(p), FLOOR) if p > 0 else FLOOR, 4)
