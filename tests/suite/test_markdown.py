"""suite.markdown: a table too wide for the page is split by columns, each part repeating the leading columns and
keeping a group's columns together; every lens has one name in the report."""

import pytest

from suite.markdown import lens_name, table


def parts(text: str) -> list[list[str]]:
    """Each table's header cells."""
    return [[cell.strip() for cell in block.splitlines()[0].strip("|").split("|")] for block in text.split("\n\n")]


def test_a_table_that_fits_stays_whole():
    text = table([["a", "1", "2"]], ["key", "x", "y"], width=40)
    assert parts(text) == [["key", "x", "y"]] and max(len(line) for line in text.splitlines()) <= 40


def test_a_wide_table_splits_into_parts_that_fit_each_with_the_key_and_every_column_once():
    rows = [[f"row {r}", *(f"cell {r}-{c} " + "x" * 10 for c in range(7))] for r in range(3)]
    headers = ["key", *(f"col {c}" for c in range(7))]
    whole = table(rows, headers, width=1000)
    text = table(rows, headers, width=80)
    assert max(len(line) for line in whole.splitlines()) > 80
    assert all(len(line) <= 80 for line in text.splitlines())
    found = parts(text)
    assert len(found) > 1 and all(part[0] == "key" for part in found)
    assert [h for part in found for h in part[1:]] == headers[1:]
    assert "| row 2 " in text.split("\n\n")[-1]  # each part has every row


@pytest.mark.parametrize("sizes", [[2, 2, 3], [3, 4]])
def test_a_groups_columns_stay_in_one_part_where_they_fit_together(sizes):
    rows = [["k", *("v" * 12 for _ in range(7))]]
    headers = ["key", *(f"c{c}" for c in range(7))]
    found = parts(table(rows, headers, groups=sizes, width=60))
    starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    groups = [set(headers[1 + a : 1 + b]) for a, b in zip(starts, starts[1:])]
    for group in groups:
        together = [part for part in found if group & set(part)]
        fits = len(table([rows[0][:1] + ["v" * 12] * len(group)], ["key", *group], width=1000).splitlines()[0]) <= 60
        assert len(together) == 1 or not fits


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("exact", "logit"),
        ("logit lens", "logit"),
        ("tuned", "tuned"),
        ("tuned lens", "tuned"),
        ("jacobian", "Jacobian"),
        ("Jacobian lens", "Jacobian"),
        ("raw", "raw"),
        ("other", "other"),
    ],
)
def test_each_lens_has_one_name_whichever_way_the_results_spell_it(given, name):
    assert lens_name(given) == name
