"""The names under which the suite's tests hand what they record to the report: the session's stash key and
the user_properties keys. Their own module, so the plugin and the collector both read them without
importing each other."""

import pytest

from suite.session import SuiteSession

SESSION = pytest.StashKey[SuiteSession]()
IDENTITY, VERDICT, RECORDED, FIGURE, MODEL, WARNING, SELECTED = (
    "suite_identity",
    "suite_verdict",
    "suite_recorded",
    "suite_figure",
    "suite_model",
    "suite_warning",
    "suite_selected",
)
"""The user_properties a test carries to the report (SELECTED: how many tests each model has selected, carried by
a process's first test, so the controller knows it under xdist too)."""
