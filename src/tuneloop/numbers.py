"""How every shell (CLI tables, the dashboard, the HTML report, the demo) writes a figure, so
the same number reads the same everywhere."""

from __future__ import annotations

import math

MISSING = "–"


def fmt(value: object, digits: int = 3) -> str:
    """A figure for people to read.

    Missing (None) and not-finite values are "–"; integers and other values are written as
    they are; a float has `digits` decimals, except from 100 on (grouped, no decimals: 1,234)
    and below 10**-digits (significant digits, so a learning rate of 0.0002 never reads 0.000).
    """
    if value is None:
        return MISSING
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return MISSING
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.{max(digits, 1)}g}"
    return f"{value:.{digits}f}"
