"""The flywheel's command modules in one import for `cli/main.py`: enrich, review, erase,
retention, monitor."""

from tuneloop.cli import enrich, erase, monitor, retention, review

__all__ = ["enrich", "erase", "monitor", "retention", "review"]
