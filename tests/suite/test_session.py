"""suite.session: artefacts are computed once, only when asked for, with at most one model in memory."""

from types import SimpleNamespace

import pytest
import torch

import lens.models.loader
from lens.models.registry import registry
from suite.session import SuiteSession

EMBEDDED = [spec.name for spec in registry().values() if spec.embedded][:2]


@pytest.fixture
def loads(monkeypatch):
    """Stand-in models: no weights planned or read, so the embedded models count as present whether or not
    this machine has fetched them; and the log of what was loaded and released."""
    from lens.models.registry import PyPIModel

    monkeypatch.setattr(PyPIModel, "is_present", lambda self: True)
    monkeypatch.setattr(
        lens.models.loader,
        "plan",
        lambda name, device=None, dtype=None: SimpleNamespace(
            dtype=getattr(torch, dtype or "float32"), parameters=1_000, device="cpu", weights_id="w", folder=None
        ),
    )
    log = []

    def load(name, device=None, planned=None):
        log.append(("load", name))
        return SimpleNamespace(name=name, device="cpu", weights_id="w", dtype=torch.float32, n_layers=3)

    monkeypatch.setattr(lens.models.loader, "load", load)
    monkeypatch.setattr(lens.models.loader, "release", lambda model: log.append(("release", model.name)))
    return log


def test_an_artefact_is_computed_once_and_only_when_asked_for(loads):
    session = SuiteSession({name: name for name in EMBEDDED}, device=None)
    first = session.artefacts(EMBEDDED[0])
    assert loads == [] and first.record is None  # nothing loads until something is computed
    calls = []
    assert first.get("x", lambda model: calls.append(model.name) or 41) == 41
    assert first.get("x", lambda model: calls.append(model.name) or 42) == 41
    assert calls == [EMBEDDED[0]] and first.record.n_layers == 3
    assert loads == [("load", EMBEDDED[0])]


def test_loading_another_model_releases_the_first_and_keeps_its_artefacts(loads):
    if len(EMBEDDED) < 2:
        pytest.skip("needs two embedded models in the registry")
    session = SuiteSession({name: name for name in EMBEDDED}, device=None)
    a, b = (session.artefacts(name) for name in EMBEDDED)
    a.get("x", lambda model: 1)
    b.get("x", lambda model: 2)
    assert a.get("x", lambda model: 3) == 1  # kept: no reload
    assert loads == [("load", EMBEDDED[0]), ("release", EMBEDDED[0]), ("load", EMBEDDED[1])]
    session.release(EMBEDDED[0])  # not the one in memory: nothing happens
    session.release(EMBEDDED[1])
    assert loads[-1] == ("release", EMBEDDED[1])


def test_a_model_without_weights_is_skipped_with_its_download_command(loads, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    session = SuiteSession({"llama3": "llama3"}, device=None)
    with pytest.raises(pytest.skip.Exception, match=r"llama3 not run: .*download llama3`"):
        session.artefacts("llama3").get("x", lambda model: 1)
    assert loads == []


@pytest.fixture
def hub_absent(monkeypatch):
    """The Hub models' weights absent and the embedded ones present, whatever this machine holds (the models that
    run on NDIF aside: never downloaded)."""
    from lens.models.registry import HubModel, PyPIModel

    monkeypatch.setattr(HubModel, "is_present", lambda self: False)
    monkeypatch.setattr(PyPIModel, "is_present", lambda self: True)
    return [spec.name for spec in registry().values() if isinstance(spec, HubModel) and not spec.remote]


ON_NDIF = [spec.name for spec in registry().values() if getattr(spec, "remote", False)]


def test_models_without_weights_are_not_collected_but_named_with_their_fetch_command(hub_absent):
    session = SuiteSession.from_values([], device=None)
    assert session.names == [name for name in registry() if name not in hub_absent + ON_NDIF]
    assert set(session.absent) == set(hub_absent)
    assert all(command.endswith(f"download {name}") for name, command in session.absent.items())


def test_asking_for_a_model_without_weights_ends_the_run_with_the_command(hub_absent):
    with pytest.raises(
        pytest.exit.Exception,
        match=rf"{hub_absent[0]}'s weights are not here: fetch them with `.*download {hub_absent[0]}`",
    ) as stop:
        SuiteSession.from_values([], device=None, markexpr=f"{hub_absent[0]} and not slow")
    assert stop.value.returncode == 2
    with pytest.raises(pytest.exit.Exception):
        SuiteSession.from_values([hub_absent[0]], device=None)


@pytest.mark.parametrize(
    "markexpr, asked",
    [
        ("{absent}", True),
        ("{absent} or smollm2", True),
        ("{absent} and not slow", True),
        ("not {absent}", False),
        ("not slow", False),
        ("smollm2", False),
        ("", False),
    ],
)
def test_a_marker_expression_asks_for_the_models_it_selects_by_name(hub_absent, markexpr, asked):
    expression = markexpr.format(absent=hub_absent[0])
    if asked:
        with pytest.raises(pytest.exit.Exception, match="weights are not here"):
            SuiteSession.from_values([], device=None, markexpr=expression)
    else:
        session = SuiteSession.from_values([], device=None, markexpr=expression)
        assert hub_absent[0] in session.absent


def test_a_spot_check_that_disagrees_refuses_the_models_results_in_one_line(loads, monkeypatch, tiny_tokenizer):
    """A wrong block after the load check (a hook standing in for a wrong kernel): the artefact that ran the
    forward pass fails with one line, and so does every later one of the model."""
    from lens.reads.trace import collect
    from tests.conftest import random_model
    from tests.test_spot import wrong_kernel

    model = random_model("llama", tiny_tokenizer)
    model.spot_checks = True  # on the CPU, where a run would not spot-check itself
    monkeypatch.setattr(lens.models.loader, "load", lambda name, device=None, planned=None: model)
    session = SuiteSession({EMBEDDED[0]: EMBEDDED[0]}, device=None)
    artefacts = session.artefacts(EMBEDDED[0])
    assert artefacts.get("clean", lambda m: collect(m, ["The capital of Germany is"]).output_logits.shape[0]) == 1
    wrong_kernel(model, 1)
    with pytest.raises(pytest.fail.Exception, match=r"^refusing the results: .* block 1 .*--device cpu$"):
        artefacts.get("lens", lambda m: collect(m, ["The capital of Germany is"]))
    with pytest.raises(pytest.fail.Exception, match="refusing the results"):
        artefacts.get("other", lambda m: 1)


def test_each_artefact_is_timed_for_its_own_work_and_noted_for_the_test_that_read_it(loads, monkeypatch, tmp_path):
    import suite.session

    monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path))
    clock = [0.0]
    monkeypatch.setattr(suite.session.time, "perf_counter", lambda: clock[0])

    def work(seconds, then=None):
        def compute(model):
            clock[0] += seconds
            if then:
                then()
            return seconds

        return compute

    session = SuiteSession({EMBEDDED[0]: EMBEDDED[0]}, device=None)
    artefacts = session.artefacts(EMBEDDED[0])
    session.test = "t1"
    artefacts.get("outer", work(2.0, then=lambda: artefacts.get("inner", work(5.0))))
    session.test = "t2"
    artefacts.get("inner", work(99.0))  # kept: not computed again, but t2 needs it
    run = f"{EMBEDDED[0]} cpu float32"
    kept = session.timings.runs[run]
    assert kept["seconds"]["outer"] == 2.0 and kept["seconds"]["inner"] == 5.0  # not 7 for the outer
    assert kept["tests"] == {"t1": ["inner", "outer"], "t2": ["inner"]}
    assert session.timings.expected(run, ["t2"])[0] == pytest.approx(5.0 + kept["seconds"]["load"])


@pytest.mark.parametrize(
    "markexpr, asked",
    [
        ("llama3", {"llama3"}),
        ("smollm2 or gemma3", {"smollm2", "gemma3"}),
        ("(smollm2 or gemma3) and not slow", {"smollm2", "gemma3"}),
        ("llama3 and slow", {"llama3"}),
        ("not llama3", set()),  # every other model's tests: llama3's weights are not demanded
        ("not slow", set()),
        ("slow", set()),  # every model's tests, none by name
        ("not smollm2 and not gemma3", set()),
        ("smollm2 or not gemma3", set()),  # selects tests without any model marker too
        ("", set()),
        ("llama3 or", set()),  # malformed: pytest itself says so
    ],
)
def test_a_marker_expression_names_a_model_only_where_it_selects_that_models_tests_alone(markexpr, asked):
    from suite.session import _asks_for

    assert {name for name in ("llama3", "mistral", "smollm2", "gemma3") if _asks_for(markexpr, name)} == asked


def test_a_later_run_reads_back_what_an_earlier_one_computed_without_loading_the_model(loads):
    earlier = SuiteSession({EMBEDDED[0]: EMBEDDED[0]}, device=None)
    assert earlier.artefacts(EMBEDDED[0]).get(("lens", "capitals"), lambda model: [0.5, 0.25]) == [0.5, 0.25]
    assert earlier.artefacts(EMBEDDED[0]).get("unkept", lambda model: "x", keep=False) == "x"
    loads.clear()
    later = SuiteSession({EMBEDDED[0]: EMBEDDED[0]}, device=None)  # a new process, as it were
    artefacts = later.artefacts(EMBEDDED[0])
    assert artefacts.get(("lens", "capitals"), lambda model: pytest.fail("computed again")) == [0.5, 0.25]
    assert loads == [] and artefacts.read_back == 1
    assert artefacts.record.n_layers == 3 and artefacts.record.weights == "w"  # what the report says of the model
    assert artefacts.get("unkept", lambda model: "y", keep=False) == "y" and loads == [("load", EMBEDDED[0])]


def test_a_reading_is_computed_again_where_what_it_depends_on_changed_or_when_asked(loads):
    first = SuiteSession({EMBEDDED[0]: EMBEDDED[0]}, device=None)
    first.readings_depend = lambda: {"prompts": "v1"}
    first.artefacts(EMBEDDED[0]).get("x", lambda model: 1, depends="lens A")

    def again(change):
        session = SuiteSession({EMBEDDED[0]: EMBEDDED[0]}, device=None)
        session.readings_depend = lambda: {"prompts": "v1"}
        change(session)
        return session.artefacts(EMBEDDED[0]).get("x", lambda model: 2, depends=getattr(session, "lens", "lens A"))

    assert again(lambda session: None) == 1
    assert again(lambda session: setattr(session, "readings_depend", lambda: {"prompts": "v2"})) == 2  # new prompts
    assert again(lambda session: setattr(session, "lens", "lens B")) == 2  # another lens (trained again)
    assert again(lambda session: setattr(session, "dtype", "bfloat16")) == 2  # runs otherwise (the plan's dtype)
    assert again(lambda session: setattr(session, "keep_readings", False)) == 2  # --recompute
    assert again(lambda session: None) == 1  # and none of those wrote over it
