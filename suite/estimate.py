"""Before a model loads: one line saying what its part of the run will cost, its size and the time that the
artefacts the selected tests need (the lens over each prompt set, replies, attention, patching...) took on
earlier runs here. Times are kept per artefact, and which artefacts each test read, per model, device and
dtype, in the lens cache (`suite-timings.json`), so `-k convergence` is estimated as its own work, not
the whole run's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lens.device import DTYPES, weight_bytes
from lens.paths import cache_dir

TIMINGS = "suite-timings.json"
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

    @property
    def weight_bytes(self) -> int:
        return weight_bytes(self.parameters, DTYPES[self.dtype])

    def line(self) -> str:
        """E.g. "smollm2: 135M parameters in float32 on cpu (0.5 GB); 52 tests; about 3 min (as measured
        here before)"."""
        if self.seconds is None:
            when = "time unknown: first run of these tests with this model on this device"
        else:
            when = f"about {_duration(self.seconds)} (as measured here before)"
            if self.unmeasured:
                when += f", and {self.unmeasured} tests never measured here"
        return (f"{self.model}: {self.parameters / 1e6:,.0f}M parameters in {self.dtype} on {self.device} "
                f"({self.weight_bytes / 1e9:.1f} GB); {self.tests} tests; {when}")


def estimate(timings: Timings, model: str, parameters: int, dtype: str, device: str,
             tests: Iterable[str]) -> Estimate:
    """The estimate for a model about to load, for the tests selected on it."""
    tests = list(tests)
    seconds, _, unmeasured = timings.expected(run_key(model, device, dtype), tests)
    return Estimate(model, parameters, dtype, device, len(tests), seconds, unmeasured)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
