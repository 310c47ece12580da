"""The slow marks (tests/conftest.py): a test that asks for a model-loading fixture, itself or through another
fixture, and is not marked slow stops the collection, naming it; marked by hand (the test or its module), it is
collected. Run on stand-in fixtures of the same names in a pytest run inside this one: nothing loads."""

from __future__ import annotations

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from tests.conftest import pytest_collection_modifyitems  # the guard under test

@pytest.fixture
def smollm2():
    return "a stand-in: nothing loads"

@pytest.fixture
def real_model(smollm2):
    return smollm2

@pytest.fixture
def twin(real_model):
    return real_model
"""
MARKED = """
import pytest

@pytest.mark.slow
def test_marked(smollm2):
    pass

@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2])
def test_marked_parametrized(twin, n):
    pass

def test_no_model():
    pass
"""
MODULE_MARKED = """
import pytest

pytestmark = pytest.mark.slow

def test_in_a_slow_module(real_model):
    pass
"""
UNMARKED = """
def test_unmarked(smollm2):
    pass

def test_unmarked_through_a_fixture(twin):
    pass
"""


def collect(pytester, **modules: str):
    pytester.makeini("[pytest]\nmarkers =\n    slow: loads an embedded model\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**modules)
    return pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider")


def test_tests_marked_slow_by_hand_are_collected_and_not_slow_leaves_the_rest(pytester):
    result = collect(pytester, test_marked=MARKED, test_module_marked=MODULE_MARKED)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*5 tests collected*"])
    deselected = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider", "-m", "not slow")
    deselected.stdout.fnmatch_lines(["test_marked.py::test_no_model", "*1/5 tests collected (4 deselected)*"])


def test_a_test_asking_for_a_model_unmarked_stops_the_collection_naming_it(pytester):
    result = collect(pytester, test_marked=MARKED, test_unmarked=UNMARKED)
    assert result.ret == 4  # a usage error: nothing runs
    result.stderr.fnmatch_lines(
        [
            "ERROR: not marked slow, yet loading an embedded model: test_unmarked.py::test_unmarked, "
            "test_unmarked.py::test_unmarked_through_a_fixture; mark each @pytest.mark.slow, or its module "
            "pytestmark = pytest.mark.slow"
        ]
    )
