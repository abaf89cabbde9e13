"""The one number formatter every shell uses (CLI tables, dashboard, report, demo)."""

from __future__ import annotations

import pytest

from tuneloop.numbers import fmt


@pytest.mark.parametrize(("value", "digits", "expected"), [
    (None, 3, "–"),
    (float("nan"), 3, "–"),
    (float("inf"), 3, "–"),
    (0.0, 3, "0.000"),
    (0.12345, 3, "0.123"),
    (0.5, 2, "0.50"),
    (95.3, 0, "95"),
    (1234.5, 0, "1,234"),  # from 100 on: grouped, no decimals
    (150.2, 1, "150"),
    (0.0002, 3, "0.0002"),  # a learning rate never reads 0.000
    (-0.0001, 3, "-0.0001"),
    (2.34567, 4, "2.3457"),
    (5, 3, "5"),  # integers as they are
    ("n/a", 3, "n/a"),
])
def test_figures_read_the_same_everywhere(value: object, digits: int, expected: str) -> None:
    assert fmt(value, digits) == expected
