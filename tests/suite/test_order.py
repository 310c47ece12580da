"""suite.order: the results' order comes from the data (claim number, prompt set, model, lens), never from the
order tests ran or finished in; on hand-built results."""

from dataclasses import replace

from lens.models.registry import registry
from suite.figures import DepthCurves
from suite.order import model_order, ordered
from suite.results import ClaimFigure, DataWarning
from tests.suite.built import result, results

REGISTERED = list(registry())[:2]


def test_models_come_in_the_registrys_order_then_others_as_first_seen():
    first, second = REGISTERED
    assert model_order(["mine", second], [first, "other", "mine"]) == (first, second, "mine", "other")


def test_every_part_of_the_results_is_in_the_datas_order_whatever_order_it_came_in():
    first, second = REGISTERED
    lensed = replace(result([first], "capitals"), lens="tuned")
    came = results(
        "mon",
        {
            "late": [result([second], "history"), result([first], "history")],
            "early": [
                lensed,
                result([second], "capitals"),
                result([first], "history"),
                result([first], "capitals"),
                result([first, second], "capitals"),
            ],
        },
        warnings=(
            DataWarning(second, "capitals", "b"),
            DataWarning(first, "history", "a"),
            DataWarning(first, "capitals", "z"),
        ),
    )
    came = replace(
        came,
        claims={"late": replace(came.claims["late"], number=9), "early": replace(came.claims["early"], number=2)},
        model_order=(second, first),
        figures=tuple(
            ClaimFigure(claim, DepthCurves(model=model, name="f", depth=[1.0], p={"c": [[0.5]]}))
            for claim, model in [("late", second), (None, first), ("early", second), ("early", first)]
        ),
    )
    done = ordered(came, prompt_sets=["capitals", "history"])
    assert list(done.claims) == ["early", "late"]
    assert [(r.models, r.prompt_set, r.lens) for r in done.claims["early"].results] == [
        ((first,), "capitals", "exact"),
        ((first,), "capitals", "tuned"),
        ((second,), "capitals", "exact"),
        ((first, second), "capitals", "exact"),
        ((first,), "history", "exact"),
    ]
    assert [r.models for r in done.claims["late"].results] == [(first,), (second,)]
    assert done.model_order == (first, second) and list(done.runs) == list(done.models) == [first, second]
    assert [(w.model, w.prompt_set) for w in done.warnings] == [
        (first, "capitals"),
        (first, "history"),
        (second, "capitals"),
    ]
    assert [(f.claim, f.figure.model) for f in done.figures] == [
        (None, first),
        ("early", first),
        ("early", second),
        ("late", second),
    ]
    assert ordered(replace(done, claims=dict(reversed(done.claims.items()))), ["capitals", "history"]) == done


def test_a_prompt_set_the_claims_do_not_name_keeps_its_place_from_the_earlier_results():
    first = REGISTERED[0]
    previous = results("mon", {"c": [result([first], "zeta"), result([first], "alpha")]})
    current = results("tue", {"c": [result([first], "alpha"), result([first], "zeta"), result([first], "capitals")]})
    done = ordered(current, prompt_sets=["capitals"], previous=previous)
    assert [r.prompt_set for r in done.claims["c"].results] == ["capitals", "zeta", "alpha"]
