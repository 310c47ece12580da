"""Before a model loads: one line saying what its part of the run will cost, its size and the time the
artefacts the selected tests need (the lens over each prompt set, replies, attention, patching...) will take.
An artefact measured on an earlier run here counts at its measured time: times are kept per artefact, and which
artefacts each test read, per model, device and dtype, in the lens cache (`suite-timings.json`), so
`-k convergence` is estimated as its own work, not the whole run's. One never measured here (a first run) is
priced by the cost model: its work counted before the run (`Work`: forward passes, tokens, rows unembedded and
reduced, by the package of claims, which knows what its artefacts are) times this device's throughput for the
model's size (`Throughput`, suite/throughput.toml: measured here for the CPU, assumed elsewhere, and said so).
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path

from lens.models.device import DTYPES, weight_bytes
from lens.paths import cache_dir

TIMINGS = "suite-timings.json"
THROUGHPUT = Path(__file__).with_name("throughput.toml")
LOAD = "load"
"""The artefact every test of a model needs first: the model in memory."""


def artefact_name(key: Hashable) -> str:
    """An artefact key as the timings file keeps it: ("lens", "capitals", "qa", "exact") -> "lens capitals qa exact"."""
    return " ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def run_key(model: str, device: str, dtype: str) -> str:
    """Whose timings: one model on one kind of device in one dtype."""
    return f"{model} {device.split(':')[0]} {dtype}"


@dataclass
class Timings:
    """Measured seconds per artefact, and the artefacts each test read, per `run_key`; merged into the
    file on `save`, so runs (and xdist workers) add to what earlier ones measured."""

    path: Path = field(default_factory=lambda: cache_dir() / TIMINGS)
    runs: dict[str, dict[str, dict]] = field(default_factory=dict)
    _new: dict[str, dict[str, dict]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path | None = None) -> Timings:
        timings = cls() if path is None else cls(path=path)
        timings.runs = timings._read()
        return timings

    def seconds(self, run: str, artefact: Hashable, seconds: float) -> None:
        """Keep how long computing `artefact` took (its own work: the artefacts it read are timed apart)."""
        for runs in (self.runs, self._new):
            runs.setdefault(run, {}).setdefault("seconds", {})[artefact_name(artefact)] = round(seconds, 3)

    def used(self, run: str, test: str, artefact: Hashable) -> None:
        """Keep that `test` read `artefact` (computed for it or not)."""
        for runs in (self.runs, self._new):
            needs = runs.setdefault(run, {}).setdefault("tests", {}).setdefault(test, [])
            if artefact_name(artefact) not in needs:
                needs.append(artefact_name(artefact))

    def ran(self, run: str, test: str) -> None:
        """Keep that `test` ran, whether or not it read anything (a test that skips at once costs nothing)."""
        for runs in (self.runs, self._new):
            runs.setdefault(run, {}).setdefault("tests", {}).setdefault(test, [])

    def expected(self, run: str, tests: Iterable[str]) -> tuple[float | None, int, int]:
        """Seconds the artefacts `tests` need took before (None: none measured), how many tests that covers,
        and how many never ran here."""
        known = self.runs.get(run, {})
        needs = known.get("tests", {})
        tests = list(tests)
        measured = [test for test in tests if test in needs]
        artefacts = {LOAD} | {name for test in measured for name in needs[test]}
        seconds = known.get("seconds", {})
        if not measured:
            return None, 0, len(tests)
        return sum(seconds.get(name, 0.0) for name in artefacts), len(measured), len(tests) - len(measured)

    def save(self) -> None:
        """Add this run's measurements to the file (atomically; a failure to write loses them, nothing else)."""
        if not self._new:
            return
        merged = self._read()
        for run, parts in self._new.items():
            for part, values in parts.items():
                merged.setdefault(run, {}).setdefault(part, {}).update(values)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _read(self) -> dict[str, dict[str, dict]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Work:
    """What computing some artefacts takes, counted (`findings.work` counts each artefact's)."""

    passes: int = 0
    """Forward passes through the model (a greedy continuation's every step is one)."""
    tokens: int = 0
    """Token positions through the blocks, padding included (a cached continuation step: one per row)."""
    unembedded: int = 0
    """Rows of width d_model through the unembedding (the lens's reads at every block, a continuation's steps)."""
    reduced: int = 0
    """Rows of the whole vocabulary reduced (log-softmax, entropy, KL, ranks): one per prompt and block read."""
    moved: int = 0
    """Rows moved through a d_model x d_model matrix (the tuned and Jacobian lenses' reads)."""
    fitted: int = 0
    """Blocks whose tuned-lens translator is fitted by least squares (a (d_model + 1)^2 system each)."""
    gram_rows: int = 0
    """Rows of block outputs summed into a fitted block's Gram matrices, over every block fitted."""
    spots: int = 0
    """Spot checks: a prompt's blocks recomputed on the CPU, one block's weights copied at a time (off the CPU)."""

    def __add__(self, other: Work) -> Work:
        return Work(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Work)})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(Work)}


@dataclass(frozen=True)
class Shape:
    """What the cost model reads of a model: its size, from its configuration."""

    n_layers: int
    d_model: int
    vocab: int
    parameters: int
    """Every parameter (a tied embedding once)."""
    embedding: int
    """Parameters of the embedding and unembedding matrices (a tied one once): not run per token."""
    weight_bytes: int
    """The weights in memory in the dtype the model runs in."""


@dataclass(frozen=True)
class Throughput:
    """Seconds per unit of work of one kind of device in one dtype (a table of suite/throughput.toml)."""

    kind: str
    """"cpu bfloat16", "mps float32"..."""
    per_pass: float
    """Fixed cost of a forward pass (Python, hooks, kernel launches)."""
    per_pass_byte: float
    """Per pass and byte of weights: a pass reads every weight once (1 / memory bandwidth)."""
    per_flop: float
    """Per multiply-add pair of the blocks' and the unembedding's matrices (1 / matmul throughput)."""
    per_logit: float
    """Per logit reduced (the lens's passes over the vocabulary)."""
    per_fit_flop: float
    """Per float64 operation of the tuned lens's solves (on the CPU wherever the model runs)."""
    per_spot_byte: float = 0.0
    """Per spot check and byte of weights (a copy to the CPU and a CPU pass)."""
    per_test: float = 0.0
    """Per test: its verdict, statistics, snapshot comparison and its part of the report (no model work)."""
    load_bytes_per_second: float = 1e9
    """Reading the weights from disk into memory."""
    source: str = ""
    """Measured here (when, by what) or assumed (from what)."""

    def seconds(self, work: Work, shape: Shape) -> float:
        """What `work` takes on a model of `shape`."""
        d, vocab = shape.d_model, shape.vocab
        body = max(shape.parameters - shape.embedding, 0)
        return (
            work.passes * (self.per_pass + shape.weight_bytes * self.per_pass_byte)
            + 2
            * self.per_flop
            * (
                work.tokens * body
                + work.unembedded * d * vocab
                + work.moved * d * d
                + 2 * work.gram_rows * (d + 1) ** 2
            )
            + self.per_logit * work.reduced * vocab
            + self.per_fit_flop * work.fitted * 3 * (d + 1) ** 3
            + self.per_spot_byte * work.spots * shape.weight_bytes
        )

    @property
    def origin(self) -> str:
        """Where the table comes from, in a few words: "measured here", "assumed for a 64 GB M2 Max", "cpu
        float32's, standing in"."""
        return self.source.split(":")[0].split(" (")[0].split(", one")[0]

    def load_seconds(self, shape: Shape) -> float:
        return shape.weight_bytes / self.load_bytes_per_second


@cache
def throughputs(path: Path = THROUGHPUT) -> dict[str, Throughput]:
    """The throughput tables, by kind ("cpu bfloat16")."""
    tables = tomllib.loads(path.read_text())
    return {kind: Throughput(kind=kind, **values) for kind, values in tables.items()}


def throughput_for(device: str, dtype: str, tables: Mapping[str, Throughput] | None = None) -> Throughput:
    """This kind of device's table for the dtype; else the same device's in another dtype, else the CPU's in float32
    (its `source` then says it stands in)."""
    tables = throughputs() if tables is None else tables
    kind = device.split(":")[0]
    for name in (f"{kind} {dtype}", *sorted(k for k in tables if k.startswith(f"{kind} ")), "cpu float32"):
        if name in tables:
            found = tables[name]
            if name != f"{kind} {dtype}":
                return Throughput(
                    **{
                        **found.__dict__,
                        "kind": f"{kind} {dtype}",
                        "source": f"{name}'s, standing in: none known for {kind} {dtype}",
                    }
                )
            return found
    raise ValueError(f"{THROUGHPUT} has no cpu float32 table")


@dataclass(frozen=True)
class WorkPlan:
    """What a model's part of the run will compute, counted before it loads (by the package of claims)."""

    shape: Shape
    artefacts: dict[str, Work]
    """Artefact name (`artefact_name`) -> its work."""

    def total(self, names: Iterable[str] | None = None) -> Work:
        total = Work()
        for name in self.artefacts if names is None else names:
            total += self.artefacts[name]
        return total


@dataclass(frozen=True)
class Estimate:
    """What one model's part of the run will cost."""

    model: str
    parameters: int
    dtype: str
    device: str
    tests: int
    seconds: float | None
    """What the artefacts of the measured tests took on earlier runs here; None: no test ran here before."""
    unmeasured: int = 0
    """Selected tests that never ran here with this model, device and dtype (not in `seconds`)."""
    modelled: float | None = None
    """What the cost model gives for the work never measured here (None: no work plan)."""
    work: Work | None = None
    """That work."""
    vocab: int = 0
    throughput: Throughput | None = None

    @property
    def weight_bytes(self) -> int:
        return weight_bytes(self.parameters, DTYPES[self.dtype])

    def line(self) -> str:
        """E.g. "smollm2: 135M parameters in float32 on cpu (0.5 GB); 52 tests; about 3 min (as measured
        here before)"."""
        if self.modelled is not None and self.work is not None and self.throughput is not None:
            work, tp = self.work, self.throughput
            basis = (
                f"{work.passes:,} forward passes over {work.tokens:,} tokens, the lens over {work.reduced:,} rows "
                f"of {self.vocab:,} tokens, at {tp.kind} throughput {tp.origin}"
            )
            if self.seconds is None:
                when = f"about {_duration(self.modelled)} on a first run (cost model: {basis})"
            else:
                when = (
                    f"about {_duration(self.seconds + self.modelled)} ({_duration(self.seconds)} as measured here "
                    f"before, {_duration(self.modelled)} by the cost model for what never ran here: {basis})"
                )
        elif self.seconds is None:
            when = "time unknown: first run of these tests with this model on this device"
        else:
            when = f"about {_duration(self.seconds)} (as measured here before)"
            if self.unmeasured:
                when += f", and {self.unmeasured} tests never measured here"
        return (
            f"{self.model}: {self.parameters / 1e6:,.0f}M parameters in {self.dtype} on {self.device} "
            f"({self.weight_bytes / 1e9:.1f} GB); {self.tests} tests; {when}"
        )


def estimate(
    timings: Timings,
    model: str,
    parameters: int,
    dtype: str,
    device: str,
    tests: Iterable[str],
    plan: WorkPlan | None = None,
    tables: Mapping[str, Throughput] | None = None,
) -> Estimate:
    """The estimate for a model about to load, for the tests selected on it: with a work `plan`, each artefact
    at its time measured here before, else by the cost model (and the load likewise; the tests' own work at the
    table's `per_test`)."""
    tests = list(tests)
    run = run_key(model, device, dtype)
    if plan is None:
        seconds, _, unmeasured = timings.expected(run, tests)
        return Estimate(model, parameters, dtype, device, len(tests), seconds, unmeasured)
    tp = throughput_for(device, dtype, tables)
    measured = timings.runs.get(run, {}).get("seconds", {})
    known = {name: measured[name] for name in (LOAD, *plan.artefacts) if name in measured}
    new = [name for name in plan.artefacts if name not in known]
    modelled = sum(tp.seconds(plan.artefacts[name], plan.shape) for name in new)
    if LOAD not in known:
        modelled += tp.load_seconds(plan.shape)
    ran = timings.runs.get(run, {}).get("tests", {})
    overhead = tp.per_test * len(tests)  # the tests' own work: measured here on earlier runs, not per model
    if not known:
        return Estimate(
            model,
            parameters,
            dtype,
            device,
            len(tests),
            None,
            len(tests),
            modelled + overhead,
            plan.total(new),
            plan.shape.vocab,
            tp,
        )
    return Estimate(
        model,
        parameters,
        dtype,
        device,
        len(tests),
        sum(known.values()) + overhead,
        sum(test not in ran for test in tests),
        modelled if new or LOAD not in known else None,
        plan.total(new),
        plan.shape.vocab,
        tp,
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
