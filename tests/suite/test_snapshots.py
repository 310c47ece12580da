"""suite.snapshots: a row moved just inside each tolerance matches, just outside it does not (the tolerances
written out here as numbers, not read from the module)."""

import pytest

from suite.snapshots import drifted_layers, rows_match

TOP = [["a", 0.30], ["b", 0.20], [" Berlin", 0.10], ["c", 0.0105], ["d", 0.0100]]


def row(**changes) -> dict:
    """A snapshot row of layer 3 (a fresh one each call), with `changes` applied."""
    return {"prompt": "p", "layer": 3, "followed": " Berlin", "logp": -2.30, "rank": 4,
            "top": [list(pair) for pair in TOP], **changes}


def top(**changes) -> list[list]:
    """TOP with some tokens' probabilities changed (None: the token left out) or tokens added."""
    found = dict(TOP) | changes
    return [[token, p] for token, p in found.items() if p is not None]


@pytest.mark.parametrize("new, old, match", [
    # log p within 0.05 nats, at any p: 5% of p, so a tiny p is held as tightly as a large one.
    (row(logp=-2.349), row(), True),
    (row(logp=-2.351), row(), False),
    (row(logp=-2.251), row(), True),
    (row(logp=-2.249), row(), False),
    (row(logp=-12.049), row(logp=-12.0), True),
    (row(logp=-12.051), row(logp=-12.0), False),
    # A rank of 10 or better is exact.
    (row(rank=5), row(), False),
    (row(rank=3), row(), False),
    (row(rank=10), row(rank=9), False),
    # Both ranks above 10: they may differ by 25% of the larger.
    (row(rank=100), row(rank=133), True),     # 33 <= 0.25 * 133 = 33.25
    (row(rank=100), row(rank=134), False),    # 34 >  0.25 * 134 = 33.5
    (row(rank=8000), row(rank=9000), True),
    # A token in both tops: p within 0.002 + 5% of the larger.
    (row(top=top(a=0.3176)), row(), True),    # |d| = 0.0176 <= 0.002 + 0.05 * 0.3176 = 0.01788
    (row(top=top(a=0.3180)), row(), False),   # |d| = 0.0180 >  0.002 + 0.05 * 0.3180 = 0.01790
    (row(top=top(c=0.0131)), row(), True),    # 0.0026 <= 0.002 + 0.05 * 0.0131 = 0.002655
    (row(top=top(c=0.0132)), row(), False),   # 0.0027 >  0.002 + 0.05 * 0.0132 = 0.00266
    # A token in one top only: it may be there only within 0.002 of the other top's lowest p (0.0100).
    (row(top=top(d=None, e=0.0119)), row(), True),
    (row(top=top(d=None, e=0.0121)), row(), False),
    (row(top=top(a=None, z=0.30)), row(), False),  # a new top token, far from a tie
    # Another token followed, another prompt or layer: the rows no longer describe the same reading.
    (row(followed="Berlin"), row(), False),
    (row(prompt="q"), row(), False),
    (row(layer=4), row(), False),
])
def test_each_tolerance_lets_through_what_is_just_inside_it_and_stops_what_is_just_outside(new, old, match):
    assert rows_match([new], [old]) is match
    assert rows_match([old], [new]) is match  # the comparison is symmetric


def test_a_near_tie_that_swaps_order_and_membership_passes():
    # Another device or dtype: the top three move by 0.001, the 4th and 5th swap, d drops out for a tied e.
    swapped = [["a", 0.301], ["b", 0.199], [" Berlin", 0.101], ["e", 0.0104], ["c", 0.0101]]
    assert rows_match([row(top=swapped, logp=-2.296)], [row()])


def test_drift_is_counted_per_layer_of_the_old_rows():
    old = [row(), row(layer=4), row(prompt="q"), row(prompt="q", layer=4)]
    new = [row(logp=-2.5), row(layer=4), row(prompt="q", rank=6), row(prompt="q", layer=4)]
    assert drifted_layers(new, old) == {3: 2}
    assert drifted_layers([row(), row(layer=4)], old[:2]) == {}
    # Rows that no longer line up (a prompt more or fewer): every old row counts, once per layer.
    assert drifted_layers(old[:3], old) == {3: 1, 4: 1}
    assert not rows_match(old[:3], old)
