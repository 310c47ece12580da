"""A pytest plugin for tests only: the selected tests run in a shuffled order (`-p tests.shuffle`; the seed from
`LENS_SHUFFLE_SEED`, else a random one, said in the header), to show that no result depends on the order tests run
in (pytest-randomly's idea, without the dependency)."""

from __future__ import annotations

import os
import random

import pytest

SEED = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SEED] = int(os.environ.get("LENS_SHUFFLE_SEED") or random.SystemRandom().randrange(2**32))


def pytest_report_header(config: pytest.Config) -> str:
    return f"tests in a shuffled order: LENS_SHUFFLE_SEED={config.stash[SEED]}"


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """After every other plugin has ordered the tests (the suite's claims across models last included)."""
    yield
    random.Random(config.stash[SEED]).shuffle(items)
