"""Statistics a version records about itself: the token-length histogram, kept in the manifest."""

from __future__ import annotations

import bisect
from typing import Any

# Upper bounds of the histogram's bins, in tokens (the last bin is open-ended).
EDGES = (16, 32, 64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


class Histogram:
    """A streaming histogram of token lengths with fixed bins, plus min, max and mean."""

    def __init__(self) -> None:
        self.bins = [0] * (len(EDGES) + 1)
        self.count = 0
        self.total = 0
        self.low: int | None = None
        self.high: int | None = None

    def add(self, tokens: int) -> None:
        """Count one record of `tokens` tokens."""
        self.bins[bisect.bisect_left(EDGES, tokens)] += 1
        self.count += 1
        self.total += tokens
        self.low = tokens if self.low is None else min(self.low, tokens)
        self.high = tokens if self.high is None else max(self.high, tokens)

    def as_dict(self) -> dict[str, Any]:
        """The histogram as JSON: labelled bins (`["129-192", 12]`) and summary figures."""
        labels = []
        lower = 0
        for edge in EDGES:
            labels.append(f"{lower}-{edge}")
            lower = edge + 1
        labels.append(f">{EDGES[-1]}")
        # A list of pairs, not a mapping: the manifest's keys are sorted, the bins must not be.
        return {"bins": [[label, n] for label, n in zip(labels, self.bins, strict=True)],
                "count": self.count,
                "min": self.low, "max": self.high,
                "mean": round(self.total / self.count, 1) if self.count else None}
