"""The suite's pytest plugin: options, one marker per model, parametrization over models, the session on
`config.stash`, and what every test records for the report.

Generic over claims: a test says which claim it judges with `@pytest.mark.claim(id, number=N)`; its
module's docstring is the claim's text. Everything a test records travels in `user_properties` as plain
values, so it reaches the controller under xdist too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lens.lenses.registry import KINDS, LENSES
from lens.models.registry import registry
from lens.reads.backends import BACKENDS
from suite.collector import FindingsReport
from suite.config import OPTIONS
from suite.figures import Figure
from suite.keys import FIGURE, IDENTITY, MODEL, RECORDED, SELECTED, SESSION, VERDICT, WARNING
from suite.results import DataWarning, Expected, Identity
from suite.session import ModelArtefacts, SuiteSession
from suite.statistics import EXACT_LENS, Verdict


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, help in OPTIONS.items():
        parser.addini(name, help, default="")
    group = parser.getgroup("lens", "layer-by-layer findings")
    group.addoption(
        "--model",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="run the findings on this model instead of the registry's (repeatable): "
        "a registry name, a Hub repo id, a local model folder or a .gguf file",
    )
    group.addoption(
        "--reports",
        dest="lens_reports",
        default=None,
        metavar="DIR",
        help="where the findings report goes (default: reports/ beside pytest.ini)",
    )
    group.addoption(
        "--backend",
        dest="lens_backend",
        default="bridge",
        choices=BACKENDS,
        help="what runs the forward pass the lens reads: TransformerLens's bridge (default) or nnsight; "
        "attention and patching run on the bridge either way",
    )
    group.addoption(
        "--dtype",
        dest="lens_dtype",
        default=None,
        choices=("float32", "bfloat16", "float16"),
        help="the models' dtype (default: float32 where the weights fit in memory, else bfloat16)",
    )
    group.addoption(
        "--lens",
        dest="lens_lenses",
        default=None,
        metavar="NAMES",
        help=f"the lenses a claim is read through, comma-separated: {', '.join(LENSES)} ('logit' for exact; "
        "default: every lens the claim declares in claims.toml)",
    )
    group.addoption(
        "--recompute",
        dest="lens_recompute",
        action="store_true",
        default=False,
        help="compute every reading anew: the readings an earlier run kept in the lens cache (continuations, lens "
        "reads, attention, patching) are neither read nor written",
    )
    group.addoption(
        "--device",
        dest="lens_device",
        default=None,
        help="cpu, cuda, cuda:N or mps (default: mps > cuda > cpu); non-CPU devices are checked against the CPU first",
    )


def pytest_configure(config: pytest.Config) -> None:
    session = SuiteSession.from_values(
        config.getoption("model", default=[]),
        config.getoption("lens_device", default=None),
        config.getoption("markexpr", default="") or "",
    )
    session.backend = config.getoption("lens_backend", default="bridge")
    session.dtype = config.getoption("lens_dtype", default=None)
    session.lenses = lens_names(config.getoption("lens_lenses", default=None))
    session.keep_readings = not config.getoption("lens_recompute", default=False)
    config.stash[SESSION] = session
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        session.terminal = capture.global_and_fixture_disabled
    config.addinivalue_line("markers", "claim(id, number): the test judges this claim (for the report)")
    config.addinivalue_line("markers", "slow: runs a real model (deselect with -m 'not slow')")
    for spec in registry().values():
        config.addinivalue_line("markers", f"{spec.name}: findings on {spec.describe()}")
    for name in session.names:
        if name not in registry():
            config.addinivalue_line("markers", f"{name}: findings on the model given with --model")
    if not hasattr(config, "workerinput"):  # the xdist controller, or a plain run
        config.pluginmanager.register(FindingsReport(config), "lens-findings-report")


LENS_ALIASES = {kind.title: kind.name for kind in KINDS if kind.title.lower() != kind.name}
"""Other names `--lens` takes: a lens by its title ("logit" for the exact lens)."""


def lens_names(option: str | None) -> tuple[str, ...] | None:
    """The lenses `--lens` asks for, by their names in `lens.lenses.registry` (None: every lens a claim declares)."""
    if not option:
        return None
    names = [LENS_ALIASES.get(name.strip(), name.strip()) for name in option.split(",") if name.strip()]
    unknown = [name for name in names if name not in LENSES]
    if unknown:
        raise pytest.UsageError(
            f"--lens {option}: unknown lens {', '.join(unknown)}; choose among {', '.join(LENSES)} (logit = exact)"
        )
    return tuple(dict.fromkeys(names))


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Once, at the start: which models run, and which do not because their weights are absent."""
    session = config.stash[SESSION]
    lines = [f"lens models: {', '.join(session.names) or 'none'}"]
    if session.absent:
        fetch = "; ".join(f"{name}: `{command}`" for name, command in session.absent.items())
        lines.append(f"not run, weights not here (fetch them to include them): {fetch}")
    if session.on_ndif:
        asked = "; ".join(f"{name}: `{command}`" for name, command in session.on_ndif.items())
        lines.append(f"not run, on NDIF only when asked for: {asked}")
    if session.simulate:
        lines.append("every model through the remote code path, NDIF's requests simulated here (LENS_NDIF=simulate)")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`model_name`: one case per model, each with its marker, so `-m llama3` runs (and loads) only Llama 3.
    `model_names`: one case covering every model (a claim across models)."""
    names = metafunc.config.stash[SESSION].names
    if "model_name" in metafunc.fixturenames:
        params = [pytest.param(n, marks=[getattr(pytest.mark, n), pytest.mark.slow], id=n) for n in names]
        metafunc.parametrize("model_name", params, scope="session")
    if "model_names" in metafunc.fixturenames:
        marks = [getattr(pytest.mark, n) for n in names] + [pytest.mark.slow]
        metafunc.parametrize("model_names", [pytest.param(tuple(names), marks=marks, id="all")])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Claims across models run last, after each model's own tests have computed what they read."""

    def across(item: pytest.Item) -> bool:
        return "model_names" in getattr(item, "fixturenames", ())

    items[:] = [item for item in items if not across(item)] + [item for item in items if across(item)]
    if items:  # which selected tests read each model's artefacts, for the estimate before it loads
        session = items[0].config.stash[SESSION]
        for item in items:
            for name in _models_of(item):
                session.selected.setdefault(name, []).append(item.nodeid)


def _models_of(item: pytest.Item) -> list[str]:
    """The models a test is parametrized over (one, or several for a claim across models)."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    return [params["model_name"]] if "model_name" in params else list(params.get("model_names", ()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Say which test runs, so the artefacts it reads are noted for the next run's estimate."""
    session = item.config.stash[SESSION]
    session.test = item.nodeid
    try:
        return (yield)
    finally:
        session.test = None
        for name in _models_of(item):  # a test that read nothing (skipped at once) is measured too: 0 s
            if name in session.names:
                session.artefacts(name).ran(item.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Keep what this run's artefacts took, for the next run's estimate."""
    session.config.stash[SESSION].timings.save()


@pytest.fixture(scope="session")
def suite_session(pytestconfig: pytest.Config) -> SuiteSession:
    """The run's models and their artefacts."""
    return pytestconfig.stash[SESSION]


@pytest.fixture(scope="session")
def model_artefacts(suite_session: SuiteSession, model_name: str) -> Iterator[ModelArtefacts]:
    """One model's lazily computed artefacts; the model leaves memory when its tests are done."""
    yield suite_session.artefacts(model_name)
    suite_session.release(model_name)


@pytest.fixture(autouse=True)
def _record_model(request: pytest.FixtureRequest) -> Iterator[None]:
    """Attach each model's record (source, weights, device, dtype), once per process, to a test that
    loaded it, so the report can say what ran."""
    yield
    if "model_name" not in request.fixturenames:
        return
    session = request.config.stash[SESSION]
    artefacts = session.artefacts(request.getfixturevalue("model_name"))
    if artefacts.record is not None and not artefacts.reported:
        artefacts.reported = True
        request.node.user_properties.append((MODEL, artefacts.record.to_dict()))


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Callable[[Verdict, Expected | None], None]:
    """Record a claim's verdict (and the recorded expectation it was checked against) for the report."""

    def record(verdict: Verdict, recorded: Expected | None = None) -> None:
        request.node.user_properties.append((VERDICT, verdict.to_dict()))
        request.node.user_properties.append((RECORDED, recorded.to_dict() if recorded else None))

    return record


@pytest.fixture
def record_control(request: pytest.FixtureRequest) -> Callable[[Verdict], None]:
    """Record a claim's control verdict (what the figure is where the claim's mechanism is absent), shown
    beside the claim; where it holds as the claim does, the claim's verdict carries that as a caveat."""

    def record(verdict: Verdict) -> None:
        request.node.user_properties.append((VERDICT, verdict.to_dict()))

    return record


@pytest.fixture
def record_figure(request: pytest.FixtureRequest) -> Callable[[Figure], None]:
    """Record a figure for the report; it is drawn beside the test's claim."""

    def record(figure: Figure) -> None:
        request.node.user_properties.append((FIGURE, figure.to_dict()))

    return record


@pytest.fixture
def record_warning(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a data warning about the test's model and prompt set for the report: its text, and the fields
    the report tabulates (`DataWarning`: kind, form, facts, replies); repeats are shown once."""
    params = getattr(request.node, "callspec", None)
    params = params.params if params else {}

    def record(text: str, **fields) -> None:
        warning = DataWarning(params.get("model_name"), params.get("prompt_set"), text, **fields)
        request.node.user_properties.append((WARNING, warning.to_dict()))

    return record


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Say which claim, model(s) and prompt set a test is about, before anything can skip or fail it (and, with
    a process's first test, how many tests each model has selected: the report marks a model partial below it)."""
    session = item.config.stash[SESSION]
    if session.selected and not session.selected_sent:
        session.selected_sent = True
        item.user_properties.append(
            (SELECTED, {name: len(tests) for name, tests in session.selected.items() if isinstance(name, str)})
        )
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    marker = item.get_closest_marker("claim")
    if marker is None and "model_name" not in params:
        return
    if not all(isinstance(params.get(key) or "", str) for key in ("model_name", "prompt_set", "lens")):
        return  # an empty parameter set (no model here): pytest skips it, and it says nothing of a claim
    if "model_name" in params:
        models = [params["model_name"]]
    else:
        models = list(params.get("model_names", ()))
    module = getattr(item, "module", None)
    doc = (module.__doc__ or "").strip() if module else ""
    title, _, text = doc.partition("\n")
    item.user_properties.append(
        (
            IDENTITY,
            Identity(
                claim=marker.args[0] if marker else None,
                number=marker.kwargs.get("number") if marker else None,
                title=title.strip().rstrip("."),
                doc=text.strip(),
                module=Path(str(item.fspath)).name,
                test=getattr(item, "originalname", item.name),
                models=tuple(models),
                prompt_set=params.get("prompt_set"),
                lens=params.get("lens") or EXACT_LENS,
            ).to_dict(),
        )
    )
