"""Query-type routing: send each request to the variant that is best for its kind of question.

`train.train_router` fits a router (features of the user's message, `features`: the MiniLM
embedding, int8 or fp32, and/or TF-IDF n-grams; logistic regression) on a dataset's slice field
and registers a version of it with lineage (`registry`); `evaluate.evaluate_routed` turns an
evaluation run's `best_per_slice` into a routed variant (`routed`) and measures it against every
single variant from the outputs the run stored, with a gate; rollout and serving then treat the
routed variant like any other. For the demo, `tuneloop.rollout.routed.route_queries` does all
three and rolls out to internal users.
"""

from __future__ import annotations

from tuneloop.router.evaluate import RoutedEvaluation, evaluate_routed
from tuneloop.router.model import Prediction, QueryRouter, message_text
from tuneloop.router.registry import RouterRecord, get_router, list_routers
from tuneloop.router.routed import (
    RoutedVariant,
    define,
    find_routed,
    get_routed,
    list_routed,
)
from tuneloop.router.train import TrainedRouter, train_router

__all__ = [
    "Prediction", "QueryRouter", "RoutedEvaluation", "RoutedVariant", "RouterRecord",
    "TrainedRouter", "define", "evaluate_routed", "find_routed", "get_routed", "get_router",
    "list_routed", "list_routers", "message_text", "train_router",
]
