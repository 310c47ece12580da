"""suite.snapshots: a row moved just inside each tolerance matches, just outside it does not (the tolerances
written out here as numbers, not read from the module)."""

import pytest

from suite.snapshots import SnapshotTolerance, changed_replies, drifted_layers, rows_match

FLOAT32 = SnapshotTolerance(
    logp=0.05, deep=-30.0, rank=0.25, near_rank=0, unmoved=0.0002, tie=0.002, top=0.05, replies=0
)
LOOSER = SnapshotTolerance(logp=0.5, deep=-10.0, rank=0.5, near_rank=2, unmoved=0.0002, tie=0.01, top=0.1, replies=1)

TOP = [["a", 0.30], ["b", 0.20], [" Berlin", 0.10], ["c", 0.0105], ["d", 0.0100]]


def row(**changes) -> dict:
    """A snapshot row of layer 3 (a fresh one each call), with `changes` applied."""
    return {
        "prompt": "p",
        "layer": 3,
        "followed": " Berlin",
        "logp": -2.30,
        "rank": 4,
        "top": [list(pair) for pair in TOP],
        **changes,
    }


def top(**changes) -> list[list]:
    """TOP with some tokens' probabilities changed (None: the token left out) or tokens added."""
    found = dict(TOP) | changes
    return [[token, p] for token, p in found.items() if p is not None]


@pytest.mark.parametrize(
    "new, old, match",
    [
        # log p within 0.05 nats, at any p: 5% of p, so a tiny p is held as tightly as a large one.
        (row(logp=-2.349), row(), True),
        (row(logp=-2.351), row(), False),
        (row(logp=-2.251), row(), True),
        (row(logp=-2.249), row(), False),
        (row(logp=-12.049), row(logp=-12.0), True),
        (row(logp=-12.051), row(logp=-12.0), False),
        # A rank of 10 or better is exact where the followed token's log p moved (by more than 0.0002 nats)...
        (row(rank=5, logp=-2.3003), row(), False),
        (row(rank=3, logp=-2.2997), row(), False),
        (row(rank=10, logp=-2.301), row(rank=9), False),
        (row(rank=10, logp=-2.301), row(rank=12), False),  # out of the top 10 is not a deep rank's float error
        (row(rank=9, logp=-2.301), row(rank=11), False),
        # ... and may move one place where it did not: a token crossed it at a tie (measured: SmolLM2's " 7" and " 5"
        # 4.8e-6 apart in logit after "12 - 5?" at block 26, ranks 8 and 7 on two machines, log p -3.7124 on both).
        (row(rank=8, logp=-3.7124), row(rank=7, logp=-3.7124), True),
        (row(rank=5, logp=-2.3002), row(), True),
        (row(rank=6), row(), False),  # two places: no tie of two tokens at once
        (row(rank=10), row(rank=12), False),
        # Both ranks above 10: they may differ by 25% of the larger.
        (row(rank=100), row(rank=133), True),  # 33 <= 0.25 * 133 = 33.25
        (row(rank=100), row(rank=134), False),  # 34 >  0.25 * 134 = 33.5
        (row(rank=8000), row(rank=9000), True),
        # A token in both tops: p within 0.002 + 5% of the larger.
        (row(top=top(a=0.3176)), row(), True),  # |d| = 0.0176 <= 0.002 + 0.05 * 0.3176 = 0.01788
        (row(top=top(a=0.3180)), row(), False),  # |d| = 0.0180 >  0.002 + 0.05 * 0.3180 = 0.01790
        (row(top=top(c=0.0131)), row(), True),  # 0.0026 <= 0.002 + 0.05 * 0.0131 = 0.002655
        (row(top=top(c=0.0132)), row(), False),  # 0.0027 >  0.002 + 0.05 * 0.0132 = 0.00266
        # A token in one top only: it may be there only within 0.002 of the other top's lowest p (0.0100).
        (row(top=top(d=None, e=0.0119)), row(), True),
        (row(top=top(d=None, e=0.0121)), row(), False),
        (row(top=top(a=None, z=0.30)), row(), False),  # a new top token, far from a tie
        # Another token followed, another prompt or layer: the rows no longer describe the same reading.
        (row(followed="Berlin"), row(), False),
        (row(prompt="q"), row(), False),
        (row(layer=4), row(), False),
    ],
)
def test_each_tolerance_lets_through_what_is_just_inside_it_and_stops_what_is_just_outside(new, old, match):
    assert rows_match([new], [old], FLOAT32) is match
    assert rows_match([old], [new], FLOAT32) is match  # the comparison is symmetric


def test_a_near_tie_that_swaps_order_and_membership_passes():
    # Another device or dtype: the top three move by 0.001, the 4th and 5th swap, d drops out for a tied e.
    swapped = [["a", 0.301], ["b", 0.199], [" Berlin", 0.101], ["e", 0.0104], ["c", 0.0101]]
    assert rows_match([row(top=swapped, logp=-2.296)], [row()], FLOAT32)


def test_drift_is_counted_per_layer_of_the_old_rows():
    old = [row(), row(layer=4), row(prompt="q"), row(prompt="q", layer=4)]
    new = [row(logp=-2.5), row(layer=4), row(prompt="q", rank=6), row(prompt="q", layer=4)]
    assert drifted_layers(new, old, FLOAT32) == {3: 2}
    assert drifted_layers([row(), row(layer=4)], old[:2], FLOAT32) == {}
    # Rows that no longer line up (a prompt more or fewer): every old row counts, once per layer.
    assert drifted_layers(old[:3], old, FLOAT32) == {3: 1, 4: 1}
    assert not rows_match(old[:3], old, FLOAT32)


def test_a_looser_dtype_tolerance_lets_its_measured_noise_through_and_not_more():
    assert rows_match([row(logp=-2.7)], [row()], LOOSER)
    assert not rows_match([row(logp=-2.9)], [row()], LOOSER)
    assert rows_match([row(logp=-12.0)], [row(logp=-14.0)], LOOSER)  # both below `deep`: the rank only
    assert not rows_match([row(logp=-9.0)], [row(logp=-14.0)], LOOSER)  # one above it
    assert rows_match([row(rank=6)], [row()], LOOSER)  # two places in the top 10
    assert not rows_match([row(rank=7, logp=-2.31)], [row()], LOOSER)


def test_a_changed_reply_counts_against_the_allowance_and_keeps_what_still_compares():
    other = row(followed="Berlin", logp=-9.0, rank=40)  # another token followed: its own log p and rank
    assert changed_replies([other], [row()]) == ["p"]
    assert not rows_match([other], [row()], FLOAT32)  # float32 allows no changed reply
    assert rows_match([other], [row()], LOOSER)
    assert not rows_match([row(followed="Berlin", top=top(a=None, z=0.30))], [row()], LOOSER)  # the layer moved
    elsewhere = row(lead="\n", top=[["x", 0.99]], logp=-20.0)  # read after a line break: another position
    assert changed_replies([elsewhere], [row(lead="")]) == ["p"] and rows_match([elsewhere], [row(lead="")], LOOSER)
    assert not rows_match([elsewhere], [row()], LOOSER)  # a snapshot that kept no lead: the same place, moved
    two = [other, row(prompt="q", followed="x")]
    assert not rows_match(two, [row(), row(prompt="q")], LOOSER)  # one allowed, two changed


def test_the_tolerance_is_read_per_dtype_from_its_table():
    table = {
        "logp": 0.05,
        "deep": -30.0,
        "rank": 0.25,
        "near_rank": 0,
        "unmoved": 0.0002,
        "tie": 0.002,
        "top": 0.05,
        "replies": 0,
        "bfloat16": {"logp": 0.5, "replies": 2},
    }
    assert SnapshotTolerance.from_table(table, "float32") == FLOAT32
    assert SnapshotTolerance.from_table(table, "bfloat16") == SnapshotTolerance(
        logp=0.5, deep=-30.0, rank=0.25, near_rank=0, unmoved=0.0002, tie=0.002, top=0.05, replies=2
    )
    with pytest.raises(ValueError, match="lacks top"):
        SnapshotTolerance.from_table({k: v for k, v in table.items() if k != "top"})


def test_a_snapshot_is_stamped_with_every_library_of_the_list_and_the_codes_commit():
    from suite.provenance import LIBRARIES, code_commit
    from suite.snapshots import snapshot_data

    meta = snapshot_data([], {"model": "m", "dtype": "float32"})["meta"]
    assert meta["model"] == "m" and list(meta)[2:-1] == list(LIBRARIES) and meta["commit"] == code_commit().text
