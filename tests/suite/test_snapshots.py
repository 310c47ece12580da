"""suite.snapshots: near-ties pass, real drift fails."""

import copy

from suite.snapshots import drifted_layers, rows_match

ROW = {"prompt": "p", "layer": 3, "followed": " Berlin", "logp": -2.30, "rank": 4,
       "top": [["a", 0.30], ["b", 0.20], [" Berlin", 0.10], ["c", 0.0105], ["d", 0.0100]]}


def changed(**updates):
    row = copy.deepcopy(ROW)
    row.update(updates)
    return [row]


def test_drift_is_counted_per_layer():
    moved = changed(logp=ROW["logp"] - 0.2)
    assert drifted_layers(moved + [ROW], [ROW, ROW]) == {ROW["layer"]: 1}
    assert drifted_layers(changed(logp=ROW["logp"] - 0.01), [ROW]) == {}  # within 0.05 nats
    assert drifted_layers([], [ROW]) == {ROW["layer"]: 1}  # the rows no longer line up


def test_near_ties_pass():
    # Another device or dtype: the 4th and 5th tokens swap and one drops out for a tied one; p moves 1%.
    swapped = [["a", 0.301], ["b", 0.199], [" Berlin", 0.101], ["d", 0.0104], ["e", 0.0101]]
    assert rows_match(changed(top=swapped, logp=-2.29), [ROW])
    assert rows_match(changed(rank=9000), changed(rank=8000))  # deep ranks move on float error


def test_real_drift_fails():
    assert not rows_match(changed(logp=-2.6), [ROW])  # p down 26%, although by 0.025 in absolute terms
    assert not rows_match(changed(logp=-12.0), changed(logp=-11.5))  # tiny p, 40% apart: a relative tolerance
    assert not rows_match(changed(rank=5), [ROW])  # a top-10 rank must be exact
    assert not rows_match(changed(top=[["z", 0.30], *ROW["top"][1:]]), [ROW])  # a new top token, far from a tie
    assert not rows_match(changed(followed="Berlin"), [ROW])  # another token followed
