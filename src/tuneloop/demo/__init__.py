"""`tuneloop demo`: the whole loop on the bundled support-desk example, as a readable recipe.

Each step calls the same library functions the individual commands call; the only demo-only
parts are the cast of people and the simulated internal traffic (see `demo.traffic`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tuneloop.demo.recipe import (
    DemoOptions,
    DemoResult,
    Recipe,
    approve_tier2,
    create_project,
    demo_admin,
    ensure_people,
    people_table,
)
from tuneloop.errors import ApprovalRequired
from tuneloop.numbers import fmt

if TYPE_CHECKING:
    from tuneloop.governance.tiers import Actor
    from tuneloop.project import Project
    from tuneloop.train.callbacks import TrainProgress

__all__ = ["DemoOptions", "DemoResult", "run_demo"]

ALIAS = "assistant"


def _bar(console: Console) -> Progress:
    return Progress(TextColumn("   {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def run_demo(target: Path, options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the loop end to end in `target`; safe to run again in the same folder."""
    console = console or Console()
    result = DemoResult(project_dir=target.resolve())
    demo = _Demo(console, Recipe(console, result), result, options)
    create_project_step(demo, target)
    for step in (people_step, sources_step, approval_step, build_step, index_step, train_step,
                 evaluate_step, internal_step, routing_step, traffic_step, enrich_step):
        step(demo)
    _summary(console, result)
    return result


@dataclass
class _Demo:
    """What the steps share: where they print, what they found, and the project's cast."""

    console: Console
    r: Recipe
    result: DemoResult
    options: DemoOptions
    project: Project | None = None
    admin: Actor | None = None
    people: dict[str, tuple[Actor, str]] = field(default_factory=dict)

    @property
    def p(self) -> Project:
        assert self.project is not None, "the project step runs first"
        return self.project

    @property
    def dana(self) -> Actor:
        return self.people["dana"][0]


def create_project_step(demo: _Demo, target: Path) -> None:
    with demo.r.step("Create the project",
                     "Copy the bundled support desk of Quillstack (a file-sync SaaS) into "
                     f"{target}: 40 product documents (Tier 1) and 450 customer tickets with "
                     "personal data in them (Tier 2), plus tuneloop.yaml: the task, its metrics "
                     "and thresholds, the latency budget, the sources and four variants."):
        demo.project = create_project(target)
        demo.admin = demo_admin(demo.project)
        demo.console.print(f"   project at {demo.project.root}, store "
                           f"{demo.project.store.safe_url}")


def people_step(demo: _Demo) -> None:
    with demo.r.step("People and API keys",
                     "The admin creates a key for each person. Keys are stored only as hashes; "
                     "roles decide who may approve, audiences decide what is served."):
        assert demo.admin is not None
        demo.people = ensure_people(demo.p, demo.admin)
        demo.console.print(people_table(demo.people))


def sources_step(demo: _Demo) -> None:
    with demo.r.step("Register the sources",
                     "Each source is registered with its tier; registering reads no data."):
        from tuneloop.data.sources import list_sources, sync_sources

        sync_sources(demo.p)
        table = Table()
        for col in ("source", "kind", "tier", "path"):
            table.add_column(col)
        for s in list_sources(demo.p):
            table.add_row(s.name, s.kind, str(s.tier), str(s.path.relative_to(demo.p.root)))
        demo.console.print(table)


def approval_step(demo: _Demo) -> None:
    with demo.r.step("The privacy officer approves the Tier 2 use",
                     "Dana first tries to build the training set from the tickets without an "
                     "approval: the tool refuses and says what to request. Then she requests "
                     "it, and Priya (privacy team, a different person) grants it. Both are "
                     "audited."):
        from tuneloop.data.sources import get_source
        from tuneloop.governance import require

        tickets = get_source(demo.p, "tickets").resource
        try:
            # The same gate every use of data passes through, asked before any approval exists.
            require(demo.p.store, demo.dana, "train", [tickets], purpose="demo: before approval")
            demo.console.print("   (an approval from an earlier run is still live)")
        except ApprovalRequired as refusal:
            demo.console.print(f"   [red]refused:[/] {refusal.message}")
            demo.console.print(f"   [dim]{refusal.hint}[/]")
        approval_id = approve_tier2(demo.p, demo.dana, demo.people["priya"][0])
        demo.console.print(f"   [green]approval #{approval_id} granted by priya[/] for train, "
                           "evaluate and view of source:tickets")
        demo.result.facts["approval_id"] = approval_id


def build_step(demo: _Demo) -> None:
    with demo.r.step("Build the dataset",
                     "Validate every record (bad ones go to a rejects file with file:line and "
                     "reason), redact personal data, drop exact and near duplicates, filter by "
                     "length in the model's tokens, split without letting near duplicates "
                     "cross splits, and write an immutable version whose id is a content hash."):
        from tuneloop.data.build import build_dataset

        version = build_dataset(demo.p, demo.dana, "support")
        demo.result.facts["dataset"] = f"{version.name}@{version.id}"
        demo.result.paths["dataset"] = version.path
        _print_build(demo.console, version)


def index_step(demo: _Demo) -> None:
    with demo.r.step("Index the knowledge base",
                     "Chunk the documents along their headings within a token budget, embed "
                     "them with the bundled all-MiniLM-L6-v2, and index them for hybrid (BM25 + "
                     "vector) search with tier filters applied inside the query."):
        from tuneloop.rag.index import index_knowledge_base

        with _bar(demo.console) as bar:
            report = index_knowledge_base(demo.p, demo.dana, _stages(bar))
        demo.console.print(
            f"   {len(report.added)} documents added, {len(report.updated)} updated, "
            f"{len(report.removed)} removed, {report.unchanged} unchanged; "
            f"{report.chunks_embedded} chunks embedded, {report.chunks_total} in the index")
        demo.result.facts["chunks"] = report.chunks_total


def train_step(demo: _Demo) -> None:
    with demo.r.step("Fine-tune the bundled model with LoRA, on its RAG prompts",
                     "SmolLM2-135M-Instruct learns the support team's reply style from the "
                     "training split (loss on the assistant's tokens only, the sentences that "
                     "copy facts from the sources weighing more). Each training ticket is put in "
                     "the prompt the tuned-rag variant serves, with the sources its retriever "
                     "finds (the passage holding the answer put in where retrieval missed it), "
                     "so the model learns to take the facts from its sources. The adapter is "
                     "then merged, exported to GGUF for llama.cpp and parity-checked against "
                     "transformers."):
        from tuneloop.train.run import train

        overrides: dict[str, object] = {"model_name": "tuned", **demo.options.train_overrides}
        with _bar(demo.console) as bar:
            task = bar.add_task("training", total=None)

            def show_training(p: TrainProgress) -> None:
                loss = f"loss {p.loss:.3f}" if p.loss is not None else ""
                speed = f"{p.tokens_per_s:,.0f} tok/s" if p.tokens_per_s else ""
                bar.update(task, completed=p.step, total=p.total_steps,
                           description=f"{p.stage}  {loss}  {speed}")

            trained = train(demo.p, demo.dana, demo.result.facts["dataset"],
                            overrides=overrides, progress=show_training)
        served = trained.published.model_name if trained.published else trained.model_name
        demo.result.facts["model"] = served
        demo.result.facts["train_metrics"] = trained.metrics
        demo.console.print(f"   registered [bold]{served}[/] (GGUF for llama.cpp) and "
                           f"{trained.model_name} (LoRA adapter), tier {trained.tier}; "
                           f"{_fmt(trained.metrics)}")
        if trained.published is not None:
            demo.console.print(f"   parity check: the GGUF agrees with the adapter on "
                               f"{trained.published.agreement:.0%} of greedy answer tokens")


def evaluate_step(demo: _Demo) -> None:
    with demo.r.step("Evaluate four variants",
                     "base, base+RAG, fine-tuned and fine-tuned+RAG answer the held-out test "
                     "split through their real engines; quality metrics and latency are "
                     "measured, every pair is compared with paired-bootstrap 95% confidence "
                     "intervals, and the gates from tuneloop.yaml decide pass or fail."):
        from tuneloop.evaluate.run import evaluate

        with _bar(demo.console) as bar:
            evaluation = evaluate(demo.p, demo.dana, ["base", "base-rag", "tuned", "tuned-rag"],
                                  demo.result.facts["dataset"], limit=demo.options.eval_limit,
                                  progress=_stages(bar))
        facts = demo.result.facts
        facts["eval_run"] = evaluation.run_id
        facts["per_variant"] = evaluation.per_variant
        demo.result.paths.update({f"report_{k}": v for k, v in evaluation.report_paths.items()})
        facts["best_variant"] = _best_variant(demo.p, evaluation)
        _print_eval(demo.console, demo.p, evaluation, facts["best_variant"])


def internal_step(demo: _Demo) -> None:
    best = demo.result.facts["best_variant"]
    with demo.r.step("Serve the best variant to internal users first",
                     f"Roll '{best}' out to the internal audience under the alias '{ALIAS}'; "
                     "the public sees nothing until it passes the gates and the internal "
                     "stage."):
        from tuneloop import rollout

        assert demo.admin is not None
        rollout.set_stage(demo.p, demo.admin, ALIAS, best, "internal",
                          reason="demo: best variant of the evaluation")
        demo.console.print(f"   {rollout.state(demo.p, ALIAS)}")


def routing_step(demo: _Demo) -> None:
    with demo.r.step("Route each kind of ticket to its best variant",
                     "A query-type router (the bundled embedding model and a logistic "
                     "regression) learns the ticket category from the training split; the "
                     "evaluation's answers show which variant is best for each category, and "
                     "the routed combination is compared with the best single variant. It goes "
                     "to internal users only if it is shown not to be worse."):
        from tuneloop.rollout.routed import route_queries

        with _bar(demo.console) as bar:
            outcome = route_queries(demo.p, demo.dana, dataset="support",
                                    eval_run=demo.result.facts["eval_run"], alias=ALIAS,
                                    progress=_stages(bar))
        demo.result.facts["routing"] = outcome
        if outcome.report:
            demo.result.paths["routing_report"] = Path(outcome.report)
        demo.console.print(f"   {outcome.message}")


def traffic_step(demo: _Demo) -> None:
    with demo.r.step("Internal users ask questions and rate the answers",
                     "Support agents send new tickets (newer than the dataset) through the "
                     "OpenAI-compatible API; a simulated agent rates each answer and corrects "
                     "some bad ones. Every request is logged (redacted) with its timings, and "
                     "the feedback is attached to it."):
        from tuneloop.demo.recipe import incoming_tickets
        from tuneloop.demo.traffic import running_server, send_traffic

        records = incoming_tickets(demo.p)[: demo.options.traffic]
        users = [("ines", demo.people["ines"][1]), ("omar", demo.people["omar"][1])]
        with running_server(demo.p, demo.options.port) as base_url, _bar(demo.console) as bar:
            task = bar.add_task("requests", total=len(records))
            traffic = send_traffic(base_url, users, records, model=ALIAS,
                                   progress=lambda: bar.advance(task))
        demo.result.facts["traffic"] = traffic
        demo.console.print(f"   {traffic.ok}/{traffic.requests} answered; {traffic.thumbs_up} "
                           f"thumbs up, {traffic.thumbs_down} thumbs down, "
                           f"{traffic.corrections} corrected")


def enrich_step(demo: _Demo) -> None:
    with demo.r.step("Enrich the dataset from what users did",
                     "Corrected answers become new training examples (their lineage points to "
                     "the request ids); thumbs-down without a correction goes to the review "
                     "queue; near duplicates of existing examples are dropped."):
        from tuneloop.flywheel.enrich import enrich

        # Logs of internal traffic on a Tier 2 variant are Tier 2 themselves: one more approval,
        # for the logs of every variant that may have answered (routing picks one per ticket).
        scopes = [f"logs:{v.name}" for v in demo.p.config.variants]
        logs_approval = approve_tier2(demo.p, demo.dana, demo.people["priya"][0],
                                      scope=scopes, uses=("train", "view"))
        demo.console.print(f"   approval #{logs_approval} granted by priya for training on "
                           f"{', '.join(scopes)}")
        enriched = enrich(demo.p, demo.dana, "support")
        demo.result.facts["enriched"] = enriched
        if enriched.version is not None:
            demo.result.facts["enriched_version"] = enriched.version.ref
            demo.result.paths["new dataset"] = enriched.version.path
        counts = ", ".join(f"{v} {k}" for k, v in sorted(enriched.counts.items()))
        demo.console.print(f"   new version: "
                           f"{enriched.version.ref if enriched.version else 'none'}; {counts}; "
                           f"{len(enriched.queued)} sent to the review queue "
                           "(`tuneloop review list`)")


def _stages(bar: Progress) -> Callable[[str, int, int], None]:
    """A progress(stage, done, total) callback that shows one bar per stage."""
    tasks: dict[str, TaskID] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total or None)
        bar.update(tasks[stage], completed=done, total=total or None)

    return progress


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items() if isinstance(v, int | float))


def _print_build(console: Console, version) -> None:
    manifest = version.manifest
    steps = manifest.get("steps", {})
    table = Table(title=f"dataset {version.ref}")
    table.add_column("step")
    table.add_column("records", justify="right")
    table.add_row("read", str(steps.get("read", "?")))
    for step, reasons in (steps.get("removed") or {}).items():
        for reason, count in reasons.items():
            table.add_row(f"  removed by {step}: {reason}", f"-{count}")
    for split, count in (manifest.get("counts") or {}).items():
        table.add_row(f"kept in {split}", str(count))
    console.print(table)
    redacted = manifest.get("pii_redacted") or {}
    if redacted:
        console.print("   personal data redacted (counted, never kept): "
                      + ", ".join(f"{v} {k}" for k, v in redacted.items()))
    console.print(f"   rejects with file:line and reason: {version.rejects_path}")


def _primary(project) -> str:
    metric = project.config.primary_metric
    return metric.name if metric else "rouge_l"


def _best_variant(project, evaluation) -> str:
    """The variant with the best primary metric among those whose required gates passed
    (all variants when none passed: internal users are where a candidate is tried)."""
    primary = _primary(project)
    per_variant = evaluation.per_variant
    passed = [v for v, d in per_variant.items() if d.get("passed")]
    pool = passed or list(per_variant)
    return max(pool, key=lambda v: per_variant[v]["quality"].get(primary) or 0.0)


def _print_eval(console: Console, project, evaluation, best: str) -> None:
    primary = _primary(project)
    others = [m.name for m in project.config.metrics if m.name != primary]
    table = Table(title=f"evaluation run {evaluation.run_id} ({evaluation.dataset})")
    for col in ("variant", f"{primary} (primary)", *others, "p95 total ms", "p95 TTFT ms",
                "gates"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for name, data in evaluation.per_variant.items():
        quality, latency = data["quality"], data["latency"]
        failed = [g["gate"]
                  for g in data["gates"] if g.get("required") and g.get("status") == "fail"]
        table.add_row(
            name + (" ★" if name == best else ""),
            *(fmt(quality.get(m)) for m in (primary, *others)),
            fmt(latency.get("total_ms_p95"), 0), fmt(latency.get("ttft_ms_p95"), 0),
            "[green]pass[/]" if data.get("passed") else f"[red]fail: {', '.join(failed)}[/]",
        )
    console.print(table)
    for comp in evaluation.comparisons:
        if comp.get("slice") is not None:
            continue
        if (comp["metric"] == primary and comp["a"] == "base") or (
                comp["metric"] == "key_facts" and {comp["a"], comp["b"]} == {"tuned", "tuned-rag"}):
            console.print(f"   {comp['b']} vs {comp['a']} on {comp['metric']}: "
                          f"{comp['diff']:+.3f} (95% CI {comp['low']:+.3f} to "
                          f"{comp['high']:+.3f}) -> {comp['verdict']}")
    for name, data in evaluation.per_variant.items():
        g = data.get("grounding")
        if g:
            console.print(f"   {name}: its sources held the key facts for "
                          f"{g['context_holds_key']:.0%} of the questions, its answers stated "
                          f"{g['answer_states_key']:.0%}"
                          + (f" ({g['answer_states_key_in_context']:.0%} of those the sources "
                             "held)" if g.get("answer_states_key_in_context") is not None else ""))


def _summary(console: Console, result: DemoResult) -> None:
    console.print()
    table = Table(title="tuneloop demo: summary")
    table.add_column("step")
    table.add_column("time (s)", justify="right")
    for title, seconds in result.timings.items():
        table.add_row(title, f"{seconds:.1f}")
    table.add_row("[bold]total[/]", f"[bold]{sum(result.timings.values()):.1f}[/]")
    console.print(table)
    console.print("Open:")
    for name, path in result.paths.items():
        console.print(f"  {name:>14}: {path}")
    console.print(f"  {'project':>14}: {result.project_dir}  (try `tuneloop -C {result.project_dir}"
                  " eval show`, `tuneloop -C ... audit verify`, `tuneloop -C ... serve`)")
