"""One step for the demo (or any recipe): route queries by type if the evidence allows it.

    outcome = route_queries(project, admin, dataset="support", eval_run=result.run_id)
    console.print(outcome.message)

It trains a router on the dataset's slice field, evaluates the routed combination from the
outputs the evaluation run already stored (nothing is generated again), and puts the routed
variant at the `internal` stage of the alias only when its routing gate passed (the interval
shows it is not worse than the best single variant; the internal stage needs no other gate, as
for any variant); the message says what happened and why, including when it did not pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.rollout.changes import set_stage


@dataclass(frozen=True)
class RoutingOutcome:
    """What `route_queries` did: the router, the routed variant, the gate, and a message."""

    router: str
    routed: str
    eval_run: int
    accuracy: float
    gate: dict[str, Any]
    rolled_out: bool
    alias: str
    message: str
    report: str | None = None


def route_queries(project: Project, actor: Actor, *, dataset: str = "support",
                  eval_run: int | None = None, alias: str | None = None,
                  margin: float | None = None,
                  progress: Callable[[str, int, int], Any] | None = None) -> RoutingOutcome:
    """Train a router on `dataset`, evaluate routing on `eval_run`'s outputs (default: the
    newest), roll out to internal users of `alias` (default: the app alias) if routing is not
    worse (`margin`: the routing gate's, default 0.02 on the primary metric). Raises like its
    steps do (a missing approval, no sliced test split)."""
    from tuneloop.evaluate.run import load_run
    from tuneloop.router import evaluate_routed, train_router
    from tuneloop.router.evaluate import DEFAULT_MARGIN, latest_completed_run

    alias = alias or project.config.server.app_alias
    eval_run = eval_run or latest_completed_run(project)
    evaluated = load_run(project, eval_run, with_outputs=False).dataset
    # The router learns from the same version the run tested, so its test split stays unseen.
    version = evaluated if evaluated.partition("@")[0] == dataset else dataset
    trained = train_router(project, actor, version, progress=progress)
    result = evaluate_routed(project, actor, router=trained.record.ref, run_id=eval_run,
                             margin=DEFAULT_MARGIN if margin is None else margin,
                             progress=progress)
    s, gate = result.summary, result.gate
    name = result.routed.name
    head = (f"router {trained.record.ref}: accuracy {s['router']['accuracy']:.3f} on "
            f"{s['router']['n']} test examples (routing p95 {s['router']['ms_p95']:.1f} ms); "
            f"{name} − {gate['best_single']} on {gate['metric']}: {gate['diff']:+.3f} "
            f"(95% CI {gate['low']:+.3f} to {gate['high']:+.3f})")
    failed = [g["gate"] for g in s["per_variant"][name]["gates"]
              if g.get("required") and g.get("status") == "fail"]
    rolled_out = gate["status"] == "pass"
    if rolled_out:  # the internal stage needs no quality gates; the routing gate is the evidence
        set_stage(project, actor, alias, name, "internal",
                  reason=f"routed evaluation #{result.run_id}: not worse than "
                         f"{gate['best_single']}")
        message = f"{head}; not worse, so {name} now serves internal users of {alias!r}"
        message += (f" (it cannot go public yet: failed {', '.join(failed)})." if failed
                    else ", and it passed every gate for the public.")
    else:
        message = (f"{head}; not rolled out: the interval does not show routing is not worse "
                   f"than {gate['best_single']} by more than {gate['margin']:g}.")
    report = str(result.report_paths["html"]) if result.report_paths else None
    return RoutingOutcome(trained.record.ref, name, result.run_id, s["router"]["accuracy"],
                          gate, rolled_out, alias, message, report)
