"""The perturbation summary: mean AUC beside the log-ratio area, medians, paired win rates.

No model: the item records are built from perplexity curves through the same
``curve_numbers`` the evaluation uses, so each number can be worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dexar_core.errors import InputError
from dexar_core.evaluation.records import ItemResult
from dexar_core.evaluation.summary import summarise
from dexar_core.metrics.perturbation import FRACTIONS, curve_numbers

CLEAN = 2.0


ANSWERED = {"kind": "color", "question": "q", "expected": "red", "answer": "red", "correct": True}


def item_result(index, aucs, areas):
    """An explained item that was scored by perturbation only."""
    return ItemResult(index=index, **ANSWERED, perturbation=aucs, perturbation_log_ratio=areas)


def scored(index, curves):
    """An item whose ``curves[line][order]`` are perplexities at FRACTIONS (clean CLEAN)."""
    numbers = {
        line: {order: curve_numbers(FRACTIONS, ppl, CLEAN) for order, ppl in orders.items()}
        for line, orders in curves.items()
    }
    aucs, areas = (
        {line: {order: n[key] for order, n in orders.items()} for line, orders in numbers.items()}
        for key in ("auc", "log_ratio_area")
    )
    return item_result(index, aucs, areas)


def rising(factor):
    """Perplexities that rise from CLEAN to ``CLEAN * factor`` at r = 0.9, geometrically."""
    return [CLEAN * factor ** (r / 0.9) for r in FRACTIONS]


def summary_of(results, **options):
    defaults = {"dataset": "d", "split": "test", "model_id": "m", "method": "dexar"}
    return summarise(
        results, options={}, seed=0, metrics=("perturbation",), **{**defaults, **options}
    )


def items(count, rng):
    results = []
    for index in range(count):
        up, down, chance = rng.uniform(2, 6), rng.uniform(1, 1.5), rng.uniform(1, 3)
        curves = {
            "method": {"positive": rising(up), "negative": rising(down)},
            "random_smooth": {"positive": rising(chance), "negative": rising(chance)},
        }
        results.append(scored(index, curves))
    return results


def test_one_exploding_item_moves_the_mean_auc_a_lot_and_the_log_ratio_little():
    count = 20
    calm = items(count, np.random.default_rng(0))
    exploded = list(calm)
    # item 0's perturbed perplexities all grow a million-fold (r > 0; r = 0 is the clean image)
    curve = [CLEAN] + [CLEAN * 1e6 * (1 + r) for r in FRACTIONS[1:]]
    exploded[0] = scored(0, {"method": {"positive": curve, "negative": rising(1.2)}})
    before, after = summary_of(calm), summary_of(exploded)
    auc_shift = after.perturbation["method"]["positive"] - before.perturbation["method"]["positive"]
    log_shift = abs(
        after.perturbation_log_ratio["method"]["positive"]
        - before.perturbation_log_ratio["method"]["positive"]
    )
    assert auc_shift > 1e4
    # The bound: an item's log-ratio area lies between 0.9 min_r and 0.9 max_r of
    # ln(PPL_r / PPL_0) (the fractions span 0.9), here 0 and ln(1.9e6), so replacing one
    # item moves the mean by at most 0.9 ln(1.9e6) / count = 0.65 nats, whereas the
    # nPPL AUC of that item grows by about a million.
    assert log_shift <= 0.9 * math.log(1.9e6) / count
    assert log_shift < 1e-4 * auc_shift
    # the median hardly moves: one item of twenty
    medians = (before.perturbation_median, after.perturbation_median)
    assert (
        abs(medians[1]["auc"]["method"]["positive"] - medians[0]["auc"]["method"]["positive"]) < 1
    )


def test_every_perturbation_interval_brackets_its_number():
    summary = summary_of(items(15, np.random.default_rng(1)), resamples=200)
    for field in ("perturbation", "perturbation_log_ratio"):
        for line, orders in getattr(summary, field).items():
            for order, value in orders.items():
                low, high = summary.confidence[field][line][order]
                assert low <= value <= high, (field, line, order)
                assert low < high
    for field in ("perturbation_median", "perturbation_win_rate"):
        for form, lines in getattr(summary, field).items():
            for line, orders in lines.items():
                for order, value in orders.items():
                    low, high = summary.confidence[field][form][line][order]
                    assert low - 1e-12 <= value <= high + 1e-12, (field, form, line, order)


def with_areas(index, method, baseline):
    """An item whose AUCs and log-ratio areas are given directly (positive, negative)."""
    lines = {
        "method": dict(zip(("positive", "negative"), method, strict=True)),
        "random_smooth": dict(zip(("positive", "negative"), baseline, strict=True)),
    }
    return item_result(index, lines, lines)


def test_win_rates_count_ties_half_and_follow_each_orders_better_side():
    results = [
        with_areas(0, (3.0, 1.0), (2.0, 2.0)),  # positive: win; negative: win (lower)
        with_areas(1, (1.0, 3.0), (2.0, 2.0)),  # loss; loss
        with_areas(2, (2.0, 2.0), (2.0, 2.0)),  # tie; tie
        with_areas(3, (5.0, 0.5), (2.0, 2.0)),  # win; win
        with_areas(4, (math.nan, 1.0), (2.0, math.nan)),  # undefined: left out
    ]
    summary = summary_of(results, resamples=50)
    for form in ("auc", "log_ratio"):
        rates = summary.perturbation_win_rate[form]["random_smooth"]
        assert rates == {"positive": pytest.approx(2.5 / 4), "negative": pytest.approx(2.5 / 4)}
    assert summary.perturbation_median["log_ratio"]["method"]["positive"] == 2.5
    # a similarity falls when its patches go: a lower positive AUC wins
    similarity = summary_of(results, resamples=0, perturbation_measure="similarity")
    assert similarity.perturbation_win_rate["auc"]["random_smooth"]["positive"] == 1.5 / 4
    assert math.isnan(
        similarity.confidence["perturbation_win_rate"]["auc"]["random_smooth"]["positive"][0]
    )
    with pytest.raises(InputError, match="perturbation_measure"):
        summary_of(results, perturbation_measure="accuracy")


def test_records_written_before_the_log_ratio_load_and_summarise():
    new = with_areas(0, (3.0, 1.0), (2.0, 2.0))
    old_record = new.to_dict()
    del old_record["perturbation_log_ratio"]
    old = ItemResult.from_dict(old_record)
    assert old.perturbation_log_ratio == {} and old.perturbation == new.perturbation
    alone = summary_of([old, old], resamples=20)
    assert alone.perturbation["method"]["positive"] == 3.0
    assert math.isnan(alone.perturbation_log_ratio["method"]["positive"])
    assert math.isnan(alone.perturbation_win_rate["log_ratio"]["random_smooth"]["positive"])
    assert alone.perturbation_win_rate["auc"]["random_smooth"]["positive"] == 1.0
    assert alone.to_dict()["perturbation_log_ratio"]["method"]["positive"] is None
    # a resumed run that mixes old and new records: the log-ratio rests on the new ones
    mixed = summary_of([old, with_areas(1, (5.0, 1.0), (2.0, 2.0))], resamples=0)
    assert mixed.perturbation["method"]["positive"] == 4.0
    assert mixed.perturbation_log_ratio["method"]["positive"] == 5.0
    assert ItemResult.from_dict(new.to_dict()) == new
