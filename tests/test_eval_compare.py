"""Paired bootstrap intervals and verdicts on data whose true difference is known."""

from __future__ import annotations

import numpy as np
import pytest

from tuneloop.evaluate.compare import compare_pair, paired_bootstrap, verdict


def test_interval_contains_a_known_improvement_and_calls_it_better() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, 400)
    b = a + 0.1 + rng.normal(0, 0.05, 400)  # true difference 0.1
    interval = paired_bootstrap(a, b, seed=0)
    assert interval.low < 0.1 < interval.high
    assert interval.low > 0
    assert interval.diff == pytest.approx(float(np.mean(b - a)))
    comp = compare_pair("rouge_l", "base", "tuned", a, b)
    assert comp.verdict == "better"
    assert comp.mean_b - comp.mean_a == pytest.approx(comp.diff)


def test_no_true_difference_gives_no_evidence() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 1, 300)
    b = a + rng.normal(0, 0.2, 300)  # true difference 0
    interval = paired_bootstrap(a, b, seed=0)
    assert interval.low < 0 < interval.high
    assert verdict(interval, higher_is_better=True) == "no evidence"


def test_lower_is_better_turns_a_rise_into_worse() -> None:
    a = np.full(50, 100.0) + np.arange(50)
    b = a + 30.0  # 30 ms slower on every example
    comp = compare_pair("total_ms", "a", "b", a, b, higher_is_better=False)
    assert comp.diff == pytest.approx(30.0)
    assert comp.low == pytest.approx(30.0) and comp.high == pytest.approx(30.0)
    assert comp.verdict == "worse"
    assert compare_pair("total_ms", "b", "a", b, a, higher_is_better=False).verdict == "better"


def test_pairing_removes_example_difficulty_that_an_unpaired_view_would_keep() -> None:
    rng = np.random.default_rng(3)
    difficulty = rng.uniform(0, 1, 200)  # large spread shared by both variants
    a = difficulty
    b = difficulty + 0.02 + rng.normal(0, 0.01, 200)
    interval = paired_bootstrap(a, b, seed=0)
    # Unpaired means would differ by 0.02 within a spread of ~0.3: hopeless; paired, it is clear.
    assert interval.low > 0.01 and interval.high < 0.03


def test_95_percent_intervals_cover_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(4)
    true_diff, covered, trials = 0.05, 0, 300
    for t in range(trials):
        a = rng.normal(0.5, 0.2, 80)
        b = a + rng.normal(true_diff, 0.15, 80)
        interval = paired_bootstrap(a, b, resamples=2000, seed=t)
        covered += interval.low <= true_diff <= interval.high
    assert 0.89 <= covered / trials <= 0.99


def test_percentile_statistic_compares_p95_latency() -> None:
    a = np.linspace(100, 200, 101)  # p95 = 195
    b = a * 2  # p95 = 390
    interval = paired_bootstrap(a, b, stat="p95", resamples=2000)
    assert interval.diff == pytest.approx(195.0)
    assert interval.low > 0


def test_examples_a_metric_does_not_apply_to_are_left_out_of_the_pairs() -> None:
    a = [0.2, 0.4, float("nan"), 0.6]
    b = [0.3, float("nan"), 0.9, 0.7]
    interval = paired_bootstrap(a, b, resamples=500)
    assert interval.n == 2
    assert interval.diff == pytest.approx(0.1)


def test_one_pair_or_none_is_never_evidence() -> None:
    assert compare_pair("m", "a", "b", [0.0], [1.0]).verdict == "no evidence"
    empty = paired_bootstrap([float("nan")], [1.0])
    assert empty.n == 0 and verdict(empty, True) == "no evidence"


def test_the_same_seed_gives_the_same_interval() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.uniform(size=60), rng.uniform(size=60)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)


def test_unequal_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0, 2.0], [1.0])
