"""The findings' phases on one model, each timed, counted and its peak memory measured, in a process of its own:

    python -m benchmarks.scale MODEL --out FILE.json [--simulate] [--depth N] [--facts K] [--dtype D]

MODEL is a registry name. With `--simulate` it is built at full size from its published configuration with random
weights (`lens.models.simulate`), at `--depth` blocks (default: all); else its real weights are loaded. `--facts K` runs
each prompt set's first K facts (the notes' fact among the capitals); default: every fact. The artefacts are the ones a
run of the findings computes for the model (`findings.work.artefacts`), computed by the findings' own code
(`findings.model_findings.ModelFindings` on a suite session), phase by phase. Per phase: wall seconds, the peak
resident memory (Linux: the kernel's high-water mark, reset at the phase's start), the forward passes, tokens and
unembedded rows counted by hooks on the model's embedding and unembedding, and the same counted by
`findings.work.Counter` from the run's own readings (they should agree), and the phase's floor (`floor`): the CPU
time of the same passes and unembedded rows done plain, each artefact's right after it.

Departures from a real run, said in the output: a simulated model answers nothing, so the phases that need
answered facts (patching) run as if every fact were answered whose reply starts without a whitespace lead; its
tuned lens is trained here (a real run reads a published one where it is in the Hugging Face cache) and its
Jacobian lens has random matrices (of the published lens's shape, where models.toml names one). Verdicts,
snapshots' comparison and the report are not run: the snapshot phase serializes the traces as the snapshot test
does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from unittest.mock import patch

import psutil
import torch

from findings.data import CAPITALS, NOTES_FACT, SETS, THRESHOLDS
from findings.model_findings import ModelFindings, _patch_all, lens_for
from findings.work import Counter, Readings, Work, artefacts, phase_of
from lens.lenses.lenses import EXACT, RAW, JacobianLens, TunedLens
from lens.models.model import LoadedModel
from suite.results import ModelRecord
from suite.session import SuiteSession
from suite.store import DIR_ENV

DEPARTURES = (
    "a simulated model answers nothing: patching runs as if every capital were answered whose reply starts "
    "without a whitespace lead; its tuned lens is "
    "trained here (a real run reads a published one where the Hugging Face cache has it); its Jacobian lens "
    "has random matrices of the published lens's shape"
)


def peak_reset() -> None:
    """Start a new high-water mark of this process's resident memory (Linux; elsewhere nothing to reset)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_bytes() -> int:
    """This process's peak resident memory since the last `peak_reset` (Linux), else since it started."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024
    except (OSError, StopIteration):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class Hooks:
    """Counts the forward passes and tokens through a model (a hook on its embedding) and the rows through its
    unembedding; on the modules transformers built, which every path (the bridge, `generate`) runs."""

    def __init__(self, model: LoadedModel) -> None:
        from lens.models.bridge import plain_view

        plain = plain_view(model.hf_model)
        self.work = Work()
        self.shapes: dict[tuple[int, int], int] = {}
        """(rows, tokens a row) of each pass since the last take, and how many passes had it."""
        self._handles = [
            plain.get_input_embeddings().register_forward_pre_hook(self._embedded),
            plain.get_output_embeddings().register_forward_pre_hook(self._unembedded),
        ]

    def _embedded(self, module, args) -> None:
        ids = args[0]
        self.work += Work(passes=1, tokens=int(ids.numel()))
        shape = (int(ids.shape[0]), int(ids.shape[-1])) if ids.dim() > 1 else (1, int(ids.shape[0]))
        self.shapes[shape] = self.shapes.get(shape, 0) + 1

    def _unembedded(self, module, args) -> None:
        x = args[0]
        self.work += Work(unembedded=int(x.numel() // x.shape[-1]))

    def take(self) -> tuple[Work, dict[tuple[int, int], int]]:
        """What was counted since the last take, and the shapes of its passes."""
        work, shapes, self.work, self.shapes = self.work, self.shapes, Work(), {}
        return work, shapes

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@dataclass
class Phase:
    """One phase measured."""

    name: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """The process's CPU time: on one thread, the phase's wall time on a machine nobody else uses (this one is
    shared: other processes stretch the wall time, not this)."""
    peak_bytes: int = 0
    """Peak resident memory of the process during the phase."""
    start_bytes: int = 0
    """Resident memory when it started."""
    counted: dict[str, int] = field(default_factory=dict)
    """Passes, tokens and unembedded rows counted by hooks on the model."""
    planned: dict[str, int] = field(default_factory=dict)
    """The same work as `findings.work.Counter` counts it from the run's readings."""
    shapes: list[list[int]] = field(default_factory=list)
    """[rows, tokens a row, passes] of the passes the hooks saw."""
    floor_seconds: float | None = None
    """CPU seconds of the phase's floor (`floor`): its passes plain and its rows unembedded plain."""
    artefacts: int = 0


@contextmanager
def measured(phase: Phase, hooks: Hooks | None = None) -> Iterator[dict]:
    """Time a phase, keep its peak memory and its counted work (added to what the phase had); what was counted
    this time is left in the dict it yields ("work", "shapes")."""
    gc.collect()
    phase.start_bytes = phase.start_bytes or psutil.Process().memory_info().rss
    peak_reset()
    start, cpu = time.perf_counter(), time.process_time()
    taken: dict = {}
    try:
        yield taken
    finally:
        phase.seconds += time.perf_counter() - start
        phase.cpu_seconds += time.process_time() - cpu
        phase.peak_bytes = max(phase.peak_bytes, peak_bytes())
        if hooks is not None:
            work, shapes = taken["work"], taken["shapes"] = hooks.take()
            phase.counted = (Work(**phase.counted) + work if phase.counted else work).as_dict()
            seen = {(r, n): k for r, n, k in phase.shapes}
            for shape, k in shapes.items():
                seen[shape] = seen.get(shape, 0) + k
            phase.shapes = [[r, n, k] for (r, n), k in sorted(seen.items())]


UNEMBED_CHUNK = 256
"""Rows a plain unembedding takes at once in the floor (the lens reads unembed in batches too)."""


def floor(model: LoadedModel, shapes: Mapping[tuple[int, int], int], rows: int) -> float:
    """The CPU seconds of a phase's floor, the work its claims need and no more: each of its passes (`shapes`:
    (rows, tokens a row) -> passes, as `Hooks` counts them) as a plain
    forward of transformers' decoder (no cache, no lens, no hook: token ids of the same shape; a cached step costs
    no less than one token a row) and `rows` rows through the final norm's output into the unembedding, plain."""
    from lens.models.bridge import plain_view

    if not shapes and not rows:
        return 0.0  # a phase that only reduces (the candidates): no floor
    plain = plain_view(model.hf_model)
    decoder, head = plain.base_model, plain.get_output_embeddings()
    device = next(head.parameters()).device
    d = int(head.weight.shape[1])
    cpu = time.process_time()
    with torch.inference_mode():
        for (r, n), k in shapes.items():
            ids = torch.zeros(r, n, dtype=torch.long, device=device)
            for _ in range(k):
                decoder(input_ids=ids, use_cache=False)
        hidden = torch.zeros(min(rows, UNEMBED_CHUNK), d, dtype=head.weight.dtype, device=device)
        for start in range(0, rows, UNEMBED_CHUNK):
            head(hidden[: min(UNEMBED_CHUNK, rows - start)])
    return time.process_time() - cpu


def subset(k: int | None) -> dict[str, tuple]:
    """Each prompt set's first `k` facts (the capitals: the notes' fact among them); None: every fact."""
    if k is None:
        return dict(SETS)
    out = {name: facts[:k] for name, facts in SETS.items()}
    if NOTES_FACT not in out[CAPITALS]:
        out[CAPITALS] = (*out[CAPITALS][: k - 1], NOTES_FACT)
    return out


def random_jacobian(model: LoadedModel) -> JacobianLens:
    """A Jacobian lens of the published lens's shape with random matrices (float16, as published), checked as a
    published one is (`lens.lenses.jacobian.checked`)."""
    from transformer_lens.tools.analysis import JacobianLens as Artefact

    from lens.lenses.jacobian import checked

    d = int(model.bridge.cfg.d_model)
    generator = torch.Generator().manual_seed(0)
    matrices = {
        layer: (torch.eye(d) + torch.randn(d, d, generator=generator) / d**0.5).half()
        for layer in range(model.n_layers - 1)
    }
    return checked(Artefact(matrices, n_prompts=1, d_model=d, metadata={}), model, "random (simulated)")


def computer(findings: dict[str, ModelFindings], simulated: bool) -> Callable[[Hashable], object]:
    """What computes an artefact key, by the findings' own code."""
    exact = findings[EXACT.name]

    def compute(key: Hashable) -> object:
        kind = key[0] if isinstance(key, tuple) else key
        if kind == "readings":
            return exact.readings(key[1], key[2], every=True)
        if kind == "exclusions":
            return exact.exclusions(key[1])
        if kind == "residuals":
            return exact._residuals(key[1], key[2])
        if kind == "candidates":
            return exact.candidates(key[1], key[2])
        if kind == "lens":
            lens = {EXACT.name: EXACT, RAW.name: RAW}.get(key[3])
            return findings[key[3]].form_lens(key[1], key[2], lens)
        if key == (TunedLens.name, "lens"):
            from lens.lenses.train_tuned import train_tuned

            def train(model: LoadedModel) -> TunedLens:
                trained = train_tuned(model, force=True)
                if simulated:  # nothing to keep: random weights
                    shutil.rmtree(trained.folder, ignore_errors=True)
                return trained.lens

            return exact.artefacts.get(key, train)
        if key == (JacobianLens.name, "lens"):
            return exact.artefacts.get(key, random_jacobian if simulated else lambda m: lens_for(m, JacobianLens.name))
        if kind == "patching" and simulated:
            facts, subjects, answers = exact.facts(CAPITALS), exact.subject_positions(), simulated_answers(exact)
            return exact.artefacts.get(key, lambda model: _patch_all(model, facts, subjects, answers))
        return getattr(exact, kind)()  # grid, attention, subject_positions, patching, notes_patching

    return compute


def simulated_answers(exact: ModelFindings) -> dict[str, str]:
    """The capitals a simulation patches, as if answered: every one whose reply the lens follows without a
    whitespace lead (a real run patches those of them the model answers), with the token followed."""
    return {
        r.fact.id: r.followed.token
        for r in exact.readings(CAPITALS, "completion")
        if r.followed is not None and not r.lead_ids
    }


def snapshots(exact: ModelFindings) -> None:
    """What the snapshot test does with the traces: its rows for every prompt of every set, serialized."""
    from findings.data import forms_of
    from suite.snapshots import SnapshotTolerance, layer_snapshot_extension, snapshot_data

    record = exact.record
    tolerance = SnapshotTolerance.from_table(THRESHOLDS["snapshot"], record.dtype)
    for name in SETS:
        forms = exact.lens(name)
        traces = [trace for form in forms_of(name) for trace in forms[form]]
        data = snapshot_data(
            traces, {"model": exact.name, "weights": record.weights, "device": record.device, "dtype": record.dtype}
        )
        layer_snapshot_extension(tolerance)().serialize(data)


def run(
    name: str, simulate: bool, depth: int | None, facts: int | None, dtype: str | None, say: Callable[[str], None]
) -> dict:
    """Build or load one model, then measure every phase of the findings on it; the figures as a JSON-ready dict."""
    import lens.models.loader
    from lens.models import simulate as simulation

    load = Phase("load")
    say(f"{name}: {'building' if simulate else 'loading'}")
    with measured(load):
        if simulate:
            model = simulation.build(name, depth, dtype or "bfloat16")
        else:
            model = lens.models.loader.load(name, device="cpu", dtype=dtype)
    say(f"{name}: {'built' if simulate else 'loaded'} in {load.seconds:.0f} s, {load.peak_bytes / 2**30:.1f} GiB peak")
    lenses = [TunedLens.name] + ([JacobianLens.name] if model.spec.jacobian_lens and simulate else [])
    result = measure(model, name, simulate, facts, lenses, say)
    result["phases"].insert(0, asdict(load))
    result["full_layers"] = simulation.shape_of(name).n_layers if simulate else model.n_layers
    return result


def measure(
    model: LoadedModel,
    source: str,
    simulate: bool,
    facts: int | None,
    lenses: list[str],
    say: Callable[[str], None] = lambda _: None,
) -> dict:
    """Every phase of the findings on a loaded model (`source`: what the suite session would load for it), over
    each prompt set's first `facts` facts, reading the logit lens, the raw lens and `lenses`; with `simulate`, as
    a simulation (`DEPARTURES`)."""
    name = model.name
    dtype_name = str(model.dtype).removeprefix("torch.")
    hooks = Hooks(model)
    session = SuiteSession({name: source}, "cpu")
    session._loaded = model  # the model the session would have loaded
    memo = session.artefacts(name)
    memo.record = ModelRecord(
        model=name,
        source=model.weights_id,
        weights=model.weights_id,
        device="cpu",
        dtype=dtype_name,
        n_layers=model.n_layers,
        parameters=sum(p.numel() for p in model.hf_model.parameters()),
    )
    chat = session.spec(name).chat
    findings = {lens: ModelFindings(memo, lens) for lens in (EXACT.name, RAW.name, *lenses)}
    compute = computer(findings, simulate)
    phases: dict[str, Phase] = {}
    try:
        with patch.dict(SETS, subset(facts)):
            keys = artefacts(chat, lenses)
            counter = Counter(
                model.tokenizer, model.n_layers, int(model.bridge.cfg.d_model), int(model.bridge.cfg.d_vocab)
            )  # before the run's readings: the tuned lens's count needs none
            for key in keys:
                phase = phases.setdefault(phase_of(key), Phase(phase_of(key)))
                if not phase.artefacts:
                    say(f"{name}: {phase.name} ...")
                with measured(phase, hooks) as taken:
                    try:
                        compute(key)
                    except BaseException as error:  # noqa: BLE001 (pytest.skip is a BaseException)
                        if type(error).__name__ != "Skipped":
                            raise
                        say(f"{name}: {key} skipped: {error}")
                phase.artefacts += 1
                # its floor at once, so that both run on the machine as it is then (another run beside this one
                # slows both alike); the tuned lens's KL steps gather their columns, unhooked: its rows as planned
                rows = counter.work(key).unembedded if key == (TunedLens.name, "lens") else taken["work"].unembedded
                phase.floor_seconds = (phase.floor_seconds or 0.0) + floor(model, taken["shapes"], rows)
                hooks.take()  # the floor's own passes are no phase's
            snap = phases.setdefault("snapshots", Phase("snapshots"))
            with measured(snap):
                snapshots(findings[EXACT.name])
            readings = Readings.of(findings[EXACT.name], keys)
            if simulate:  # patched as if answered
                readings = replace(readings, answered=list(simulated_answers(findings[EXACT.name])))
            counter.readings = readings  # the run's own: the other phases' counts need them
            for phase_name, work in counter.phases(keys).items():
                phases[phase_name].planned = work.as_dict()
            sizes = {set_name: len(facts_) for set_name, facts_ in SETS.items()}
            lead_tokens = {f"{s} {f}": sum(map(len, leads)) for (s, f), leads in readings.leads.items()}
    finally:
        hooks.remove()
    say(f"{name}: done")
    return {
        "model": name,
        "simulated": simulate,
        "dtype": dtype_name,
        "device": "cpu",
        "chat": chat,
        "lenses": lenses,
        "n_layers": model.n_layers,
        "full_layers": model.n_layers,
        "d_model": int(model.bridge.cfg.d_model),
        "vocab": int(model.bridge.cfg.d_vocab),
        "parameters": memo.record.parameters,
        "weight_bytes": model.weight_bytes(),
        "embedding": embedding(model),
        "facts": sizes,
        "lead_tokens": lead_tokens,
        "answered": list(readings.answered),
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "departures": DEPARTURES if simulate else "",
        "phases": [asdict(phase) for phase in phases.values()],
    }


def embedding(model: LoadedModel) -> int:
    """Parameters of the embedding and unembedding matrices (a tied one once)."""
    from lens.models.bridge import plain_view

    plain = plain_view(model.hf_model)
    matrices = {id(m.weight): m.weight.numel() for m in (plain.get_input_embeddings(), plain.get_output_embeddings())}
    return sum(matrices.values())


def machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, torch {torch.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--out", required=True)
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--depth", type=int)
    parser.add_argument("--facts", type=int)
    parser.add_argument("--dtype")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as readings:  # every reading computed: none read back from an earlier run
        os.environ[DIR_ENV] = readings
        result = run(
            args.model,
            args.simulate,
            args.depth,
            args.facts,
            args.dtype,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
