"""The user's scale: `./run bench -k scale` runs every phase of the findings (benchmarks/scale.py) on both embedded
models (their weights, every fact) and on the notes' four models built at full width and vocabulary with random
weights in bfloat16 (lens.models.simulate; `SCALE_FACTS` facts per prompt set), each model in a process of its own, and
writes per phase the seconds, the peak memory and the cost model's estimate of the same work to
benchmarks/scale.md (and scale.json).

A simulated model runs at full depth where this machine's free memory holds it (`fits`), else at two reduced
depths, extrapolated to full depth per block (both time and memory grow linearly with the blocks: the weights, the
block outputs kept, the lens's rows). `LENS_SCALE` names the models (comma-separated), `LENS_SCALE_FACTS` the facts
per set of a simulated run, `LENS_SCALE_DEPTHS` the depths of a reduced one (default 4,8); set, it runs every simulated
model at those depths, even one that would fit (two reduced runs cost less than one full run); `LENS_SCALE_OUT` writes
the figures to another file than benchmarks/scale.json (two runs side by side, one a core, each its own file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from benchmarks.scale import DEPARTURES, machine
from suite.estimate import Shape, Work, throughput_for

ROOT = Path(__file__).parent.parent
OUT = Path(os.environ.get("LENS_SCALE_OUT") or Path(__file__).with_name("scale.json"))
"""The figures, merged into what the file holds (`LENS_SCALE_OUT`: another file, for runs side by side)."""
REPORT = OUT.with_suffix(".md")
EMBEDDED = ("smollm2", "gemma3")
SIMULATED = ("llama3", "mistral", "gemma2", "qwen3")
SCALE_FACTS = int(os.environ.get("LENS_SCALE_FACTS", "8"))
DEPTHS = tuple(int(d) for d in os.environ.get("LENS_SCALE_DEPTHS", "4,8").split(","))
REDUCED = "LENS_SCALE_DEPTHS" in os.environ
"""Reduced depths asked for: every simulated model runs at `DEPTHS`, whether or not it `fits` at full depth."""
HEADROOM = 3 * 2**30
"""Free memory a full-depth run needs beyond its weights, block outputs kept for the tuned lens and the lens itself."""


def selected() -> list[str]:
    wanted = os.environ.get("LENS_SCALE")
    return [m for m in (*EMBEDDED, *SIMULATED) if wanted is None or m in wanted.split(",")]


def fits(name: str) -> bool:
    """Whether a full-depth simulation of `name` fits in this machine's free memory now: its bfloat16 weights, the
    tuned lens's training (the block outputs of 8,255 tokens kept, the float32 translators) and `HEADROOM`."""
    from lens.models.simulate import shape_of

    shape = shape_of(name)
    need = (
        shape.weight_bytes("bfloat16")
        + 8255 * shape.n_layers * shape.d_model * 2
        + (shape.n_layers - 1) * shape.d_model**2 * 4
        + HEADROOM
    )
    return psutil.virtual_memory().available >= need


def run_scale(name: str, tmp: Path, *options: str) -> dict:
    """One run of benchmarks/scale.py in a process of its own."""
    out = tmp / f"{name}{'-'.join(options)}.json"
    env = dict(os.environ, LENS_PROGRESS="0", OMP_NUM_THREADS="1")  # see `took`
    subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", name, "--out", str(out), *options], cwd=ROOT, env=env, check=True
    )
    return json.loads(out.read_text())


def planned(phase: dict) -> Work:
    """A phase's work as the cost model counted it (a file of 2026-12-02 kept the rows of one fitted block)."""
    counts = dict(phase["planned"])
    if "fit_rows" in counts:
        counts["gram_rows"] = counts.pop("fit_rows") * counts["fitted"]
    return Work(**counts)


def shape_of(result: dict) -> Shape:
    """The cost model's view of a measured model."""
    return Shape(
        n_layers=result["n_layers"],
        d_model=result["d_model"],
        vocab=result["vocab"],
        parameters=result["parameters"],
        embedding=result["embedding"],
        weight_bytes=result["weight_bytes"],
    )


def estimated(result: dict) -> dict[str, float]:
    """The cost model's seconds for each measured phase's own work (its counts from the run's readings)."""
    tp = throughput_for("cpu", result["dtype"])
    shape = shape_of(result)
    return {p["name"]: tp.seconds(planned(p), shape) for p in result["phases"] if p["planned"]}


def extrapolated(low: dict, high: dict, full: int) -> dict:
    """A run at full depth from runs at two depths: each phase's seconds and peak memory (and the counts) continued
    linearly per block."""
    d1, d2 = low["n_layers"], high["n_layers"]
    out = dict(
        high,
        n_layers=full,
        extrapolated=f"from depths {d1} and {d2}",
        parameters=round(high["parameters"] + (full - d2) * (high["parameters"] - low["parameters"]) / (d2 - d1)),
        weight_bytes=round(
            high["weight_bytes"] + (full - d2) * (high["weight_bytes"] - low["weight_bytes"]) / (d2 - d1)
        ),
    )
    lows = {p["name"]: p for p in low["phases"]}
    phases = []
    for p in high["phases"]:
        q = lows[p["name"]]

        def line(a, b):
            return a + (b - a) * (full - d1) / (d2 - d1)

        phases.append(
            dict(
                p,
                seconds=line(q["seconds"], p["seconds"]),
                cpu_seconds=line(q.get("cpu_seconds", 0.0), p.get("cpu_seconds", 0.0)),
                peak_bytes=round(line(q["peak_bytes"], p["peak_bytes"])),
                start_bytes=round(line(q["start_bytes"], p["start_bytes"])),
                counted={k: round(line(q["counted"][k], v)) for k, v in p["counted"].items()},
                planned={k: round(line(q["planned"][k], v)) for k, v in p["planned"].items()},
                floor_seconds=None
                if p.get("floor_seconds") is None
                else line(q.get("floor_seconds") or 0.0, p["floor_seconds"]),
            )
        )
    out["phases"] = phases
    return out


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    """Every selected model's figures, gathered for the report written when the module ends."""
    found: dict[str, dict] = json.loads(OUT.read_text()) if OUT.exists() else {}
    yield found
    OUT.write_text(json.dumps(found, indent=1))
    REPORT.write_text(report(found))


@pytest.mark.parametrize("name", selected())
def test_scale(name, results, tmp_path):
    from lens.models.simulate import shape_of as full_shape

    if name in EMBEDDED:
        result = run_scale(name, tmp_path)
    elif not REDUCED and fits(name):
        result = run_scale(name, tmp_path, "--simulate", "--facts", str(SCALE_FACTS))
    else:
        low, high = (
            run_scale(name, tmp_path, "--simulate", "--facts", str(SCALE_FACTS), "--depth", str(d)) for d in DEPTHS
        )
        result = extrapolated(low, high, full_shape(name).n_layers)
        result["runs"] = [low, high]
    result["estimated"] = estimated(result)
    results[name] = result
    counted = ("passes", "tokens", "unembedded")  # what hooks on the model count
    for run in result.get("runs", [result]):
        for phase in run["phases"]:
            if phase["planned"]:
                mine, model = ({k: phase[side][k] for k in counted} for side in ("counted", "planned"))
                if phase["name"] == "tuned lens":  # the model decides its leads; the KL steps gather, unhooked
                    assert all(mine[k] <= model[k] for k in counted), f"{name}: the run counted {mine}, over {model}"
                else:
                    assert mine == model, f"{name} {phase['name']}: the run counted {mine}, the cost model {model}"


def report(results: dict[str, dict]) -> str:
    """benchmarks/scale.md: per model and phase, seconds, peak memory and the cost model's estimate."""
    lines = [
        "# What a run costs, measured here (`./run bench -k scale`)",
        "",
        f"Machine: {machine()}. Written by benchmarks/test_scale.py; figures in scale.json.",
        "",
    ]
    for name, r in results.items():
        if name in ("first runs", "cost model"):
            continue
        how = "simulated: random weights, full width and vocabulary, " if r["simulated"] else "its own weights, "
        depth = f"{r['n_layers']} blocks" + (f" (extrapolated {r['extrapolated']})" if r.get("extrapolated") else "")
        facts = sum(r["facts"].values())
        lines += [
            f"## {name}: {r['parameters'] / 1e9:.2f}B parameters in {r['dtype']}, {how}{depth}, "
            f"{facts} facts over {len(r['facts'])} sets",
            "",
        ]
        if r["simulated"]:
            lines += [f"Departures from a real run: {DEPARTURES}.", ""]
        lines += [
            "| phase | wall s | CPU s | cost model s | floor CPU s | x floor | peak GiB | passes | tokens | "
            "rows unembedded |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        est = r.get("estimated", {})
        for p in r["phases"]:
            c = p["counted"] or {}
            e = f"{est[p['name']]:.1f}" if p["name"] in est else ""
            floor = p.get("floor_seconds")
            over = f"{took(p) / floor:.2f}" if floor else ""
            lines.append(
                f"| {p['name']} | {p['seconds']:.1f} | {p.get('cpu_seconds', 0):.1f} | {e} | "
                f"{'' if floor is None else f'{floor:.1f}'} | {over} | {p['peak_bytes'] / 2**30:.2f} | "
                f"{c.get('passes', '')} | {c.get('tokens', '')} | {c.get('unembedded', '')} |"
            )
        total = sum(p["seconds"] for p in r["phases"])
        cpu = sum(p.get("cpu_seconds", 0) for p in r["phases"])
        modelled = sum(est.values())
        measured_modelled = sum(took(p) for p in r["phases"] if p["name"] in est)
        lines += [
            "",
            f"Total {total:.0f} s wall, {cpu:.0f} s CPU (one thread: the wall time of an unshared machine; "
            "extrapolated wall times carry the noise of other work); the phases the cost model prices: "
            f"measured {measured_modelled:.0f} s, "
            f"estimated {modelled:.0f} s (x{modelled / max(measured_modelled, 1e-9):.2f}); "
            f"peak {max(p['peak_bytes'] for p in r['phases']) / 2**30:.1f} GiB.",
            "",
        ]
        if floor_of(r):
            measured_floored = sum(took(p) for p in r["phases"] if p.get("floor_seconds") is not None)
            lines += [
                "Against the floor (each artefact's forward passes and rows unembedded done plain right after it, "
                f"benchmarks/scale.py `floor`): the phases {measured_floored:.0f} CPU s, their floor "
                f"{floor_of(r):.0f} CPU s (x{measured_floored / floor_of(r):.2f}).",
                "",
            ]
    for dtype, model in results.get("cost model", {}).items():
        lines += [
            f"## The cost model in {dtype}: fitted here, and each model estimated by a fit without it",
            "",
            "Fitted: " + ", ".join(f"{k} = {v:.3g}" for k, v in model["fitted"].items()),
            "",
            "| held out | measured s | estimated s | estimate / measured |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {run} | {c['measured']:.0f} | {c['estimated']:.0f} | {c['ratio']:.2f} |"
            for run, c in model["held out"].items()
        ] + [""]
    whole = [name for name in SIMULATED if name in results]
    if whole:
        lines += [
            "## Whole runs at full size (every fact of every set), by the cost model",
            "",
            "Here: bfloat16 on this machine's CPU, one thread, the throughput fitted above, the tuned lens trained. "
            "Mac: a 64 GB M2 Max in float32 (the loader's choice there), the assumed throughput of "
            "suite/throughput.toml, the published tuned lenses read where models.toml names one (Mistral's "
            "trained). Peak memory here: measured (at full depth, or extrapolated per block).",
            "",
            "| model | where | minutes | dominant phase (minutes) | weights GB | peak GiB |",
            "|---|---|---:|---|---:|---:|",
        ]
        for name in whole:
            peak = max(p["peak_bytes"] for p in results[name]["phases"]) / 2**30
            for where, device, dtype, trains in (
                ("here", "cpu", "bfloat16", True),
                ("Mac", "mps", "float32", name == "mistral"),
            ):
                phases, weights = whole_run(name, dtype, device, trains)
                top = max(phases, key=phases.get)
                lines.append(
                    f"| {name} | {where} | {sum(phases.values()) / 60:.0f} | {top} ({phases[top] / 60:.0f}) "
                    f"| {weights / 1e9:.1f} | {f'{peak:.1f}' if where == 'here' else ''} |"
                )
        lines.append("")
    first = results.get("first runs", {})
    if first:
        lines += [
            "## First runs of the findings (a fresh lens cache), whole, against the estimate printed before and "
            "the floor",
            "",
            "The floor: the CPU seconds of the forward passes and unembeddings the run needs, done plain (its "
            "phases' floors, summed, from the model's own section above: another run).",
            "",
            "| model | tests | wall s | CPU s | estimated s | estimate / CPU | floor CPU s | CPU / floor |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, f in first.items():
            floor = floor_of(results.get(name, {}))
            over = f"{floor:.0f} | {f['cpu_seconds'] / floor:.2f}" if floor else " | "
            lines.append(
                f"| {name} | {f['tests']} | {f['seconds']:.0f} | {f['cpu_seconds']:.0f} | {f['estimated']:.0f} | "
                f"{f['ratio']:.2f} | {over} |"
            )
        lines += [""] + [f"- {f['line']}" for f in first.values()] + [""]
    return "\n".join(lines)


def floor_of(result: dict) -> float:
    """The CPU seconds of a run's floor: its phases' floors summed (0: none measured)."""
    return sum(p.get("floor_seconds") or 0.0 for p in result.get("phases", []))


FEATURES = ("per_pass", "per_pass_byte", "per_flop", "per_logit", "per_fit_flop")
"""The throughput constants fitted (suite.estimate.Throughput); the rest stay as the table has them."""


def features(work: Work, shape: Shape) -> list[float]:
    """How much of each unit `work` is on `shape`, in the order of `FEATURES` (as Throughput.seconds prices it)."""
    d, vocab, body = shape.d_model, shape.vocab, max(shape.parameters - shape.embedding, 0)
    return [
        work.passes,
        work.passes * shape.weight_bytes,
        2 * (work.tokens * body + work.unembedded * d * vocab + work.moved * d * d + 2 * work.gram_rows * (d + 1) ** 2),
        work.reduced * vocab,
        work.fitted * 3 * (d + 1) ** 3,
    ]


def took(phase: dict) -> float:
    """A phase's time as the cost model is fitted to and judged on: its CPU time where it ran on one thread (the
    wall time of a machine nobody else uses: this one is shared), else its wall time."""
    return phase.get("cpu_seconds") or phase["seconds"]


def fit(results: list[dict]) -> dict[str, float]:
    """Throughput constants fitted to measured phases (non-negative least squares on relative error: a 1 s phase
    counts as much as a 100 s one)."""
    import numpy as np
    from scipy.optimize import nnls

    rows, seconds = [], []
    for result in results:
        for phase in result["phases"]:
            if phase["planned"] and took(phase) > 0.05 and phase["name"] != "jacobian lens":
                rows.append(features(planned(phase), shape_of(result)))
                seconds.append(took(phase))
    a, s = np.array(rows, dtype=float), np.array(seconds)
    scale = a.max(0)
    scale[scale == 0] = 1
    x, _ = nnls(a / scale / s[:, None], np.ones(len(s)))
    return dict(zip(FEATURES, (x / scale).tolist()))


@pytest.mark.parametrize("name", [m for m in EMBEDDED if m in selected()])
def test_first_run(name, results, tmp_path):
    """A first run of the findings on an embedded model (a fresh lens cache: nothing measured before, no tuned lens
    kept) on one thread, timed whole (its CPU time: see `took`), beside the estimate the run prints before the
    model loads (the cost model's)."""
    import time

    import lens.models.loader
    from findings.work import work_plan
    from lens.models.registry import resolve
    from lens.paths import cache_dir
    from suite.estimate import Timings, estimate

    cache = tmp_path / "cache"
    cache.mkdir()
    for part in ("gguf", "dequantized"):
        (cache / part).symlink_to(cache_dir() / part)
    env = dict(os.environ, LENS_CACHE_DIR=str(cache), LENS_PROGRESS="0", OMP_NUM_THREADS="1")
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "findings/", "-m", name, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    tests = [line for line in listed.stdout.splitlines() if "::" in line]
    plan = lens.models.loader.plan(name, device="cpu")
    dtype = str(plan.dtype).removeprefix("torch.")
    os.environ["LENS_CACHE_DIR"], before = str(cache), os.environ.get("LENS_CACHE_DIR")
    try:
        expected = estimate(
            Timings.load(), name, plan.parameters, dtype, "cpu", tests, work_plan(resolve(name), plan, tests)
        )
    finally:
        os.environ.pop("LENS_CACHE_DIR") if before is None else os.environ.__setitem__("LENS_CACHE_DIR", before)
    import resource

    start, before_cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "findings/",
            "-m",
            name,
            "-q",
            "-p",
            "no:cacheprovider",
            "--reports",
            str(tmp_path / "reports"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds, after_cpu = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after_cpu.ru_utime + after_cpu.ru_stime) - (before_cpu.ru_utime + before_cpu.ru_stime)
    said = next(
        (
            line
            for line in done.stderr.splitlines() + done.stdout.splitlines()
            if line.startswith(f"{name}: ") and "parameters" in line
        ),
        "",
    )
    results.setdefault("first runs", {})[name] = {
        "tests": len(tests),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "estimated": expected.modelled,
        "line": said,
        "ratio": expected.modelled / cpu,
        "timings": json.loads((cache / "suite-timings.json").read_text()),
    }
    assert said, f"the run printed no estimate line:\n{done.stderr[-2000:]}"
    assert "time unknown" not in said


TESTS_PER_MODEL = 78
"""Tests the findings run per model (`pytest findings/ -m smollm2 --collect-only`: 78 on 2026-12-02)."""


def whole_run(name: str, dtype: str, device: str, trains: bool) -> tuple[dict[str, float], int]:
    """The cost model's seconds per phase of a whole run (every fact of every set) of one of the notes' models at
    full size, counted with SmolLM2's tokenizer (the simulation's), and the weights' bytes: `trains` where its tuned
    lens is trained (none published, or not fetched), its Jacobian lens read where models.toml names one."""
    from findings.work import phase_of, plan_of
    from lens.models.device import DTYPES, weight_bytes
    from lens.models.registry import resolve
    from lens.models.simulate import config_of, embedded_tokenizer
    from lens.models.simulate import shape_of as full_shape

    spec, size = resolve(name), full_shape(name)
    tied = bool(getattr(config_of(name), "tie_word_embeddings", False))
    shape = Shape(
        n_layers=size.n_layers,
        d_model=size.d_model,
        vocab=size.vocab,
        parameters=size.parameters,
        embedding=size.vocab * size.d_model * (1 if tied else 2),
        weight_bytes=weight_bytes(size.parameters, DTYPES[dtype]),
    )
    lenses = ["tuned", *(["jacobian"] if spec.jacobian_lens else [])]
    plan = plan_of(embedded_tokenizer(), shape, spec.chat, lenses, None, spot_checks=device != "cpu", trains=trains)
    tp = throughput_for(device, dtype)
    phases: dict[str, float] = {"load": tp.load_seconds(shape)}
    for artefact, work in plan.artefacts.items():
        parts = artefact.split()
        phase = phase_of(tuple(parts) if len(parts) > 1 else parts[0])
        phases[phase] = phases.get(phase, 0.0) + tp.seconds(work, shape)
    phases["tests' own work"] = tp.per_test * TESTS_PER_MODEL
    return phases, shape.weight_bytes


def runs_of(results: dict[str, dict]) -> list[dict]:
    """Every measured run in the results (a reduced-depth pair counts as its two runs, not their extrapolation)."""
    out = []
    for name, result in results.items():
        if name != "first runs" and isinstance(result, dict) and "phases" in result:
            out += result.get("runs", [result])
    return out


def priced(run: dict, tp) -> tuple[float, float]:
    """(measured, estimated) seconds of the phases the cost model prices, over one run."""
    measured = estimated = 0.0
    for phase in run["phases"]:
        if phase["planned"] and phase["name"] != "jacobian lens":
            measured += took(phase)
            estimated += tp.seconds(planned(phase), shape_of(run))
    return measured, estimated


def cross_validated(runs: list[dict]) -> dict[str, dict]:
    """Per dtype: the throughput fitted on every run, and for each model the estimate of its runs by a throughput
    fitted on the other models' runs only (leave one model out): the cost model judged on what it never saw."""
    from dataclasses import replace

    out: dict[str, dict] = {}
    for dtype in sorted({run["dtype"] for run in runs}):
        mine = [run for run in runs if run["dtype"] == dtype]
        base = throughput_for("cpu", dtype)
        checks = {}
        for model in sorted({run["model"] for run in mine}):
            others = [run for run in mine if run["model"] != model]
            if not others:
                continue
            tp = replace(base, **fit(others))
            for run in (r for r in mine if r["model"] == model):
                measured, estimated = priced(run, tp)
                checks[f"{model} ({run['n_layers']} blocks)"] = {
                    "measured": measured,
                    "estimated": estimated,
                    "ratio": estimated / measured,
                }
        out[dtype] = {"fitted": fit(mine), "held out": checks}
    return out


def test_cost_model(results):
    """The throughput tables fitted to this run's measurements, and each model's estimate by a table fitted
    without it (written to scale.json and scale.md; suite/throughput.toml takes the fitted values by hand)."""
    runs = runs_of(results)
    if not runs:
        pytest.skip("no model measured in this run")
    results["cost model"] = cross_validated(runs)
