"""The suite's session state, kept on `config.stash` (as syrupy's SnapshotSession is): which models run,
and each model's artefacts, computed lazily when a selected test first asks, once per process, and kept on disk
(`suite.store`): a rerun reads back what an earlier run computed, without loading the model, where nothing it
depends on changed.

At most one model is in memory at a time: loading another releases it (an 8B model must fit beside
nothing else); what was computed from it stays. A model that runs on NDIF (models.toml `remote = true`) is
connected to when the run asks for it, before anything loads or is sent, and runs only when asked for.
`LENS_NDIF=simulate` (tests) sends every model of the run through that remote path, NDIF's requests simulated
here by nnsight on the model loaded here.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import pytest

import lens.models.loader
import lens.remote
from lens.errors import LensError, NotAvailable
from lens.models.registry import ModelSpec, registry, resolve
from lens.models.spot import DeviceDisagrees
from lens.reads.check import check_device
from suite.config import findings_command
from suite.estimate import LOAD, Timings, WorkPlan, estimate, run_key
from suite.provenance import library_versions
from suite.results import ModelRecord
from suite.store import MISSING, Store, files_state, source_digest

T = TypeVar("T")
SIMULATE = "LENS_NDIF"
"""`LENS_NDIF=simulate`: every model goes through the remote code path, NDIF simulated here (tests)."""
SIMULATED_BACKEND = "nnsight, NDIF's requests simulated here"


def _asks_for(markexpr: str, name: str) -> bool:
    """Whether a `-m` expression selects this model's tests and would select none without its marker
    (`-m llama3`, `-m "llama3 or mistral"`; not `-m "not llama3"`, nor `-m "not slow"`)."""
    if not markexpr.strip():
        return False
    from _pytest.mark.expression import Expression

    try:
        expression = Expression.compile(markexpr)
    except Exception:  # pytest itself reports a malformed expression
        return False

    def selects(*markers: str) -> bool:
        return expression.evaluate(lambda marker, **_: marker in markers)

    return (selects(name) or selects(name, "slow")) and not (selects() or selects("slow"))


class ModelArtefacts:
    """One model's artefacts: each computed on first use, with the model loaded by the session."""

    def __init__(self, session: SuiteSession, name: str) -> None:
        self.session, self.name = session, name
        self._memo: dict[Hashable, Any] = {}
        self.record: ModelRecord | None = None
        """Set when the model is first loaded in this process."""
        self.reported = False
        """Whether a test of this process has carried the record to the report."""
        self.computing: list[float] = []
        """Per artefact being computed (nested: one reads another), the seconds its inner ones took."""
        self.read_back = self.computed = 0
        """How many artefacts this process read back from an earlier run, and how many it computed."""

    def peek(self, key: Hashable) -> Any:
        """The artefact under `key` if it was computed, else None (never computes)."""
        return self._memo.get(key)

    def get(
        self,
        key: Hashable,
        compute: Callable[[lens.models.loader.LoadedModel], T],
        keep: bool = True,
        depends: Any = None,
    ) -> T:
        """The artefact under `key`, computed by `compute(model)` the first time it is asked for, or read back from
        an earlier run (`keep`: kept on disk, under the model's store and `depends`, what else it depends on, e.g.
        the lens it reads through). One the model cannot give (`NotAvailable`: a remote model's attention, a lens it
        has none of) skips the test that asks for it, with the reason, every time."""
        if isinstance(self._memo.get(key), NotAvailable):
            pytest.skip(str(self._memo[key]))
        self.session.refused(self.name)
        with self.session.terminal():  # a first plan may dequantize the weights, and says so
            store = self.session.store(self.name) if keep and key not in self._memo else None
        if store is not None and (kept := store.load(key, depends)) is not MISSING and self._restore(store):
            self._memo[key] = kept
            self.read_back += 1
        if key not in self._memo:
            with self.session.terminal():  # progress bars and the estimate reach the user's terminal
                model = self.session.loaded(self.name)
                start = time.perf_counter()
                self.computing.append(0.0)
                try:
                    self._memo[key] = compute(model)
                except DeviceDisagrees as error:  # a spot check off the CPU: none of the model's results stand
                    self.session.refuse(self.name, str(error))
                except NotAvailable as error:
                    self._memo[key] = error
                    pytest.skip(str(error))
                finally:
                    took, inner = time.perf_counter() - start, self.computing.pop()
                    if self.computing:
                        self.computing[-1] += took
                self.note(key, took - inner)
                self.computed += 1
                if store is not None:
                    store.save(key, self._memo[key], depends)
        self.note(key)
        return self._memo[key]

    def _restore(self, store: Store) -> bool:
        """Whether the model's record is known (what a test reports of it), reading it back if it was not loaded
        in this process: an artefact read back is used only then."""
        if self.record is None:
            kept = store.load_record()
            try:
                self.record = ModelRecord.from_dict(kept) if kept is not None else None
            except TypeError:
                return False
        return self.record is not None

    def ran(self, test: str) -> None:
        """Keep for the next run's estimate that `test` ran on this model (once the model's run is known)."""
        if self.record is not None:
            self.session.timings.ran(run_key(self.name, self.record.device, self.record.dtype), test)

    def note(self, key: Hashable, seconds: float | None = None) -> None:
        """Keep for the next run's estimate that the running test read `key` (and what computing it took)."""
        record, session = self.record, self.session
        if record is None:
            return
        run = run_key(self.name, record.device, record.dtype)
        if seconds is not None:
            session.timings.seconds(run, key, seconds)
        if session.test is not None:
            session.timings.used(run, session.test, key)


class SuiteSession:
    """Which models the run covers, where each comes from, and the one model in memory."""

    def __init__(
        self,
        sources: dict[str, str],
        device: str | None,
        absent: dict[str, str] | None = None,
        connected: dict[str, lens.remote.RemoteModel] | None = None,
        on_ndif: dict[str, str] | None = None,
    ) -> None:
        self.terminal: Callable[[], AbstractContextManager] = nullcontext
        """Lets output through to the terminal while an artefact is computed (the plugin suspends capture)."""
        self.backend = "bridge"
        """What runs the lens's forward passes (lens.reads.backends: bridge or nnsight)."""
        self.dtype: str | None = None
        """float32, bfloat16 or float16; None: the loader's choice (float32 where it fits)."""
        self.lenses: tuple[str, ...] | None = None
        """The lenses `--lens` asked for (None: every lens each claim declares)."""
        self.sources = sources
        """Model name -> what to load for it (a registry name, a path or a repo id)."""
        self.device = device
        self.absent = absent or {}
        """Registry models left out because their weights are not here -> the command that fetches them."""
        self.connected = connected or {}
        """Models of the run that run on NDIF, connected to when the run began."""
        self.on_ndif = on_ndif or {}
        """Models that run on NDIF, left out because the run did not ask for them -> the command that does."""
        self.work_plan: Callable[[str, lens.models.loader.Plan, list[str]], WorkPlan] | None = None
        """What the selected tests (node ids) will compute on a model here, counted before it loads, for the
        estimate's cost model: set by the package of claims, which knows what they compute."""
        self.remote_plan: Callable[[str, Any, list[str]], str] | None = None
        """What the selected tests (node ids) will send a model on NDIF and bring back, in one line: set by the
        package of claims, which knows what they read."""
        self.simulate = os.environ.get(SIMULATE) == "simulate"
        self._simulated: lens.remote.RemoteModel | None = None
        self._artefacts: dict[str, ModelArtefacts] = {}
        self._loaded: lens.models.loader.LoadedModel | None = None
        self._refused: dict[str, str] = {}
        self.timings = Timings.load()
        """What the artefacts took on earlier runs here, for the estimate; this run's are added at its end."""
        self.test: str | None = None
        """The test running now (its node id), whose artefacts are noted for the estimate."""
        self.selected: dict[str, list[str]] = {}
        """Model name -> the selected tests that read its artefacts (node ids), for the estimate."""
        self.selected_sent = False
        """Whether a test of this process has carried the selection to the report."""
        self.prompt_sets: tuple[str, ...] = ()
        """The prompt sets in the order the package of claims keeps them (the report's order; set by it)."""
        self.keep_readings = True
        """Whether artefacts are kept on disk and read back (`--recompute`: neither)."""
        self.readings_depend: Callable[[], dict[str, Any]] | None = None
        """What the package of claims says its readings read besides the model (its code, the prompts): set by
        it; a change makes every kept reading stale."""
        self._plans: dict[str, lens.models.loader.Plan] = {}
        self._stores: dict[str, Store | None] = {}

    @classmethod
    def from_values(cls, given: list[str], device: str | None, markexpr: str = "") -> SuiteSession:
        """From the --model values; none: every registered model whose weights are here. A model asked for
        (with --model, or by name in -m) whose weights are absent ends the run with the command that
        fetches them (exit status 2), rather than a run of skips. A model that runs on NDIF runs only when asked
        for, and is connected to at once: no key, no network, a model NDIF does not run now end the run with
        one line (exit status 2) before anything loads or is sent."""
        try:
            specs = {resolve(value).name: (value, resolve(value)) for value in given}
        except LensError as error:
            raise pytest.UsageError(f"--model: {error}") from None
        if not specs:
            specs = {name: (name, spec) for name, spec in registry().items()}
        named = {name for name in specs if given or _asks_for(markexpr, name)}
        remote = {name for name, (_, spec) in specs.items() if spec.hosted}
        connected = {}
        for name in sorted(named & remote):
            try:
                connected[name] = lens.remote.connect(specs[name][0])
            except LensError as error:
                pytest.exit(f"{name} runs on NDIF: {error}", returncode=2)
        on_ndif = {name: findings_command(f"-m {name}") for name in sorted(remote - named)}
        specs = {name: entry for name, entry in specs.items() if name not in on_ndif}
        present = {name: name in connected or spec.is_present() for name, (_, spec) in specs.items()}
        for name in sorted(named & set(specs)):
            if not present[name]:
                spec = specs[name][1]
                size = f" (about {spec.size_gb:g} GB)" if spec.size_gb else ""
                pytest.exit(
                    f"{name}'s weights are not here: fetch them with `{spec.download_command()}`{size}, "
                    f"then run `{findings_command('-m ' + name)}`",
                    returncode=2,
                )
        return cls(
            {name: value for name, (value, _) in specs.items() if present[name]},
            device,
            {name: spec.download_command() for name, (_, spec) in specs.items() if not present[name]},
            connected,
            on_ndif,
        )

    @property
    def names(self) -> list[str]:
        """The models this run covers, in order."""
        return list(self.sources)

    def spec(self, name: str) -> ModelSpec:
        """The spec of one of the run's models."""
        return resolve(self.sources[name])

    def artefacts(self, name: str) -> ModelArtefacts:
        """The artefacts of one model (the model itself loads only when one is computed)."""
        if name not in self._artefacts:
            self._artefacts[name] = ModelArtefacts(self, name)
        return self._artefacts[name]

    def loaded(self, name: str) -> lens.models.loader.LoadedModel:
        """The model in memory, loading it (and releasing any other) if needed. Skips a model whose
        weights are absent; fails one whose device disagrees with the CPU."""
        self.refused(name)
        if name in self.connected:
            return self._on_ndif(name)
        if self._loaded is not None and self._loaded.name == name:
            return self._simulated or self._loaded
        spec = self.spec(name)
        if not spec.is_present():
            size = f" (about {spec.size_gb:g} GB)" if spec.size_gb else ""
            pytest.skip(
                f"{name} not run: its weights are not here; fetch them with `{spec.download_command()}`"
                f"{size}, then run `{findings_command('-m ' + name)}`"
            )
        self.release()
        plan = self.plan(name)
        dtype = str(plan.dtype).removeprefix("torch.")
        tests = self.selected.get(name, [])
        try:
            work = self.work_plan(name, plan, tests) if self.work_plan is not None else None
        except (OSError, ValueError, KeyError, LensError):  # no tokenizer or config readable: no cost model
            work = None
        kept = self.store(name) is not None and self.store(name).kept() > 0
        print(
            f"\n{estimate(self.timings, name, plan.parameters, dtype, plan.device, tests, work).line()}"
            + ("; less what earlier runs kept (read back, not computed again)" if kept else ""),
            file=sys.stderr,
        )
        start = time.perf_counter()
        model = lens.models.loader.load(self.sources[name], planned=plan)
        if model.device != "cpu":
            check = check_device(model)
            if not check.agrees:
                lens.models.loader.release(model)
                self.refuse(name, f"refusing to judge on this device: {check.summary()}; run with --device cpu")
        self._loaded = model
        if self.simulate:  # the remote code path, NDIF's requests run back here on this model
            self._simulated = lens.remote.simulated(model)
        self.artefacts(name).record = ModelRecord(
            model=name,
            source=spec.describe(),
            weights=model.weights_id,
            device=model.device,
            dtype=str(model.dtype).removeprefix("torch."),
            n_layers=model.n_layers,
            backend=SIMULATED_BACKEND if self.simulate else self.backend,
            parameters=plan.parameters,
        )
        if (store := self.store(name)) is not None:
            store.save_record(self.artefacts(name).record.to_dict())
        took = time.perf_counter() - start
        self.timings.seconds(run_key(name, model.device, self.artefacts(name).record.dtype), LOAD, took)
        timing = self.artefacts(name).computing
        if timing:  # a load inside an artefact's computation is not that artefact's work
            timing[-1] += took
        return self._simulated or model

    def _on_ndif(self, name: str) -> lens.remote.RemoteModel:
        """A model that runs on NDIF: nothing loads here; its record says where it runs."""
        model = self.connected[name]
        artefacts = self.artefacts(name)
        if artefacts.record is None:
            plan = self.remote_plan(name, model, self.selected.get(name, [])) if self.remote_plan else None
            print(
                f"\n{name} runs on NDIF ({model.host}): nothing loads here; "
                f"{plan or 'each phase says its prompts, jobs and bytes before it sends them'}",
                file=sys.stderr,
            )
            artefacts.record = ModelRecord(
                model=name,
                source=self.spec(name).describe(),
                weights=model.weights_id,
                device=model.device,
                dtype=str(model.dtype).removeprefix("torch."),
                n_layers=model.n_layers,
                backend="nnsight",
            )
            if (store := self.store(name)) is not None:
                store.save_record(artefacts.record.to_dict())
        return model

    def plan(self, name: str) -> lens.models.loader.Plan:
        """How one of the run's models will load (where its weights are, device, dtype), decided once."""
        if name not in self._plans:
            self._plans[name] = lens.models.loader.plan(self.sources[name], device=self.device, dtype=self.dtype)
        return self._plans[name]

    def store(self, name: str) -> Store | None:
        """Where one model's artefacts are kept, under everything they depend on (`suite.store`); None where they
        are not kept (`--recompute`), or its weights cannot be found (loading it says why)."""
        if name not in self._stores:
            self._stores[name] = None
            if self.keep_readings:
                try:
                    self._stores[name] = Store.open(name, self.depends(name))
                except LensError:
                    pass
        return self._stores[name]

    def depends(self, name: str) -> dict[str, Any]:
        """What one model's artefacts depend on: its weights (their id and files), where and how it runs, the
        library versions, the instrument's code (lens/) and what the package of claims names (its code, the
        prompts)."""
        if name in self.connected:
            model = self.connected[name]
            where = {
                "weights": model.weights_id,
                "host": model.host,
                "device": model.device,
                "dtype": str(model.dtype),
                "backend": "nnsight",
            }
        else:
            plan = self.plan(name)
            where = {
                "weights": plan.weights_id,
                "files": files_state(plan.folder),
                "device": plan.device,
                "dtype": str(plan.dtype),
                "backend": SIMULATED_BACKEND if self.simulate else self.backend,
            }
        return {
            "model": name,
            **where,
            "libraries": library_versions(),
            "lens code": source_digest([Path(lens.__file__).parent]),
            "claims": self.readings_depend() if self.readings_depend else None,
        }

    def refused(self, name: str) -> None:
        """Fail a test of a model this run refused (its device disagreed with the CPU): nothing of it is read, not
        even what an earlier run kept."""
        if name in self._refused:
            pytest.fail(self._refused[name], pytrace=False)

    def tally(self) -> tuple[int, int]:
        """How many artefacts this process read back from earlier runs, and how many it computed."""
        return (sum(a.read_back for a in self._artefacts.values()), sum(a.computed for a in self._artefacts.values()))

    def refuse(self, name: str, reason: str) -> None:
        """Fail this test and every later one of the model, with one line: its results are not to be trusted."""
        self._refused[name] = reason
        pytest.fail(reason, pytrace=False)

    def release(self, name: str | None = None) -> None:
        """Free the model in memory (only if it is `name`, when given); computed artefacts stay."""
        if self._loaded is not None and name in (None, self._loaded.name):
            lens.models.loader.release(self._loaded)
            self._loaded, self._simulated = None, None
