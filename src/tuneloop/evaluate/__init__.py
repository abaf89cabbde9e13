"""Evaluation: run variants over a dataset's test split, score quality and latency, compare with
paired bootstrap confidence intervals, apply the gates of `tuneloop.yaml`, and write a report.

    from tuneloop.evaluate import evaluate
    result = evaluate(project, actor, variants=["base", "base-rag"], dataset="support@3")

Modules: `metrics` (plug-ins), `runner` (concurrent requests through real engines), `scoring`,
`latency`, `compare` (bootstrap and verdicts), `gates`, `summary`, `report` and `charts`, `online`
(the same figures over the request log), `run` (the whole recipe and the stored runs).
"""

from tuneloop.evaluate.run import EvalResult, compare_runs, evaluate, list_runs, load_run

__all__ = ["EvalResult", "compare_runs", "evaluate", "list_runs", "load_run"]
