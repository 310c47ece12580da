"""lens.models.model: one interface for a model here and a model on NDIF. Every member of the `Model` protocol is
answered by both, and the reads that run otherwise on NDIF are answered for a remote model by its own
implementation (registered by `lens.remote.reads`), never by a branch in the read."""

import re
import typing
from pathlib import Path

import pytest

from lens.lenses.registry import lens_for
from lens.models.model import Model
from lens.reads.attention import attention_from_last
from lens.reads.generate import generated
from lens.reads.grid import grid_cells
from lens.reads.patching import patched_rows
from lens.reads.trace import residuals_of
from lens.remote import RemoteModel, simulated
from tests.conftest import random_model


def members() -> set[str]:
    """The protocol's attributes, properties and methods."""
    return {name for name in (*typing.get_type_hints(Model), *vars(Model)) if not name.startswith("_")}


@pytest.fixture(scope="module")
def here_and_there(tiny_tokenizer):
    model = random_model("llama", tiny_tokenizer)
    return model, simulated(model)


def test_a_model_here_and_one_on_ndif_answer_every_member_of_the_protocol(here_and_there):
    assert members() >= {
        "name",
        "n_layers",
        "n_ctx",
        "softcap",
        "tokenizer",
        "device",
        "dtype",
        "weights_id",
        "spot_checks",
        "runs_through",
    }
    for model in here_and_there:
        missing = [name for name in members() if not hasattr(model, name)]
        assert missing == [], f"{type(model).__name__} lacks {missing}"
    here, there = here_and_there
    assert (here.name, here.n_layers, here.n_ctx, here.softcap) == (
        there.name,
        there.n_layers,
        there.n_ctx,
        there.softcap,
    )
    assert here.runs_through("bridge") == "bridge" and there.runs_through("bridge") == "nnsight"
    assert there.spot_checks is False  # nothing runs here to check against the CPU


def test_every_read_that_runs_otherwise_on_ndif_has_the_remote_models_own_implementation():
    for generic in (residuals_of, grid_cells, generated, patched_rows, attention_from_last, lens_for):
        assert generic.dispatch(RemoteModel) is not generic.dispatch(object), generic.__name__


def test_a_read_that_needs_the_models_modules_here_says_so_in_one_line(here_and_there):
    from lens.errors import NotRemote

    _, there = here_and_there
    with pytest.raises(NotRemote, match="runs on NDIF: its modules are not here"):
        _ = there.bridge


def test_no_module_outside_the_remote_package_asks_a_model_whether_it_is_remote():
    root = Path(__file__).parent.parent
    asks = re.compile(r"""getattr\([^)]*["']remote["']|\bmodel\.remote\b|\.remote\s*(is|==)""")
    found = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("lens", "suite", "findings")
        for path in (root / folder).rglob("*.py")
        if "remote" not in path.relative_to(root).parts[1:2]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if asks.search(line)
    ]
    assert found == []
