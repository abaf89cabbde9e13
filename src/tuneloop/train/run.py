"""`train` and `resume`: one fine-tuning run from a dataset version to a registered model.

The recipe: check the approval (Tier 2 data needs a live `train` approval), record the run,
tokenise and pack the data, train with checkpoints, save the adapter, then hand it to serving
(merge, export to GGUF, parity check, registration; see `train.publish`). A run killed at any
point is resumed from its last complete checkpoint with `resume(project, actor, run_id)`.

Under `torchrun`/`accelerate launch` every process runs this same code: the first process
checks approvals and records the run, the others receive the run id; Trainer shards the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.errors import NotFound, TrainingError, TuneloopError
from tuneloop.governance import Actor, Resource, derived_roots, derived_tier, require
from tuneloop.store import utcnow
from tuneloop.train.base import BaseModel, resolve_base
from tuneloop.train.params import resolve_params
from tuneloop.train.publish import taint

if TYPE_CHECKING:
    from tuneloop.data.versions import DatasetVersion
    from tuneloop.project import Project
    from tuneloop.train.callbacks import TrainProgress
    from tuneloop.train.publish import PublishReport


@dataclass
class TrainResult:
    """What a run produced: its id, the adapter, the registered models and the figures."""

    run_id: int
    output_dir: Path
    adapter_dir: Path
    tier: int
    metrics: dict[str, float] = field(default_factory=dict)
    model_name: str | None = None
    published: PublishReport | None = None


def train(project: Project, actor: Actor, dataset: str | DatasetVersion, *,
          base: str | None = None, overrides: dict[str, Any] | None = None,
          progress: Callable[[TrainProgress], None] | None = None, export: bool = True,
          register: bool = True, kind: str = "train",
          parent_id: int | None = None) -> TrainResult:
    """Fine-tune `base` (default: the config's base model) on `dataset` ("name[@id]").

    Raises `ApprovalRequired` when the data is Tier 2 and no live `train` approval covers it,
    `TrainingError` when training cannot run. With `export`, the adapter is merged, exported
    to GGUF and parity-checked before the GGUF model is registered.
    """
    version = dataset_version(project, dataset)
    model = resolve_base(project, base)
    params = resolve_params(project.config.training, overrides)
    params["base_dir"] = str(model.hf_dir)
    params["export"] = export
    if params.get("retrieval"):
        params.update(_knowledge_taint(project, params))

    def start() -> int:
        approvals = require(project.store, actor, "train",
                            run_resources(project, version, model, params),
                            purpose=f"fine-tune {model.name} on {version.ref}")
        run_id = create_run(project, actor, kind, parent_id, params, version, model, approvals)
        if params.get("retrieval"):
            _prepare_retrieval(project, actor, run_id, version, model, params, progress)
        return run_id

    run_id = _on_main_process(start)
    return _execute(project, run_id, version, model, params, progress, export, register,
                    resume=False)


def resume(project: Project, actor: Actor, run_id: int, *,
           progress: Callable[[TrainProgress], None] | None = None,
           export: bool = True) -> TrainResult:
    """Continue run `run_id` from its last complete checkpoint, with its recorded parameters.

    The approval is checked again: resuming is a new use of the data.
    """
    from tuneloop.store.runs import Run

    with project.store.session(write=False) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id}", hint="`tuneloop runs list` shows the runs")
        if run.status == "completed":
            raise TrainingError(f"run {run_id} has already completed; nothing to resume",
                                hint=f"`tuneloop runs show {run_id}` shows its results")
        params, dataset_ref, kind = dict(run.params), run.dataset_version, run.kind
    params["export"] = export
    version = dataset_version(project, dataset_ref)
    model = resolve_base(project, params.get("base_name"))
    if str(model.hf_dir) != params["base_dir"]:
        model = BaseModel(model.name, Path(params["base_dir"]), model.tier, model.roots)

    def check() -> int:
        approvals = require(project.store, actor, "train",
                            run_resources(project, version, model, params),
                            purpose=f"resume run {run_id}")
        update_run(project, run_id, status="running", error="", approvals_more=approvals)
        return run_id

    _on_main_process(check)
    return _execute(project, run_id, version, model, params, progress, export,
                    kind == "train", resume=True)


def run_dir(project: Project, run_id: int) -> Path:
    """Where a run keeps its checkpoints, adapter, merged model and export."""
    return project.artifacts_dir / "runs" / str(run_id)


def _execute(project: Project, run_id: int, version: DatasetVersion, model: BaseModel,
             params: dict[str, Any], progress: Callable[[TrainProgress], None] | None,
             export: bool, register: bool, *, resume: bool) -> TrainResult:
    from tuneloop.train import callbacks as cb
    from tuneloop.train.sft import build_trainer, load_model, load_tokenizer

    out = run_dir(project, run_id)
    checkpoints = out / "checkpoints"
    main = _is_main()
    try:
        tokenizer = load_tokenizer(model.hf_dir)
        rows = {split: _rows(project, out, version, params, tokenizer, split)
                for split in ("train", "validation")}
        net = load_model(model.hf_dir, params)
        trainer_ref: list[Any] = []
        callbacks: list[Any] = [cb.CheckpointMarkerCallback()]
        if main:
            def extra() -> dict[str, float]:
                return {"tokens_seen": float(trainer_ref[0].tokens_seen)} if trainer_ref else {}
            callbacks.append(cb.StoreMetricsCallback(project.store, run_id, extra))
            if progress is not None:
                callbacks.append(cb.ProgressCallback(
                    progress, lambda: trainer_ref[0].tokens_seen if trainer_ref else 0))
        params = {**params, "run_name": params.get("run_name") or f"tuneloop-run-{run_id}"}
        trainer = build_trainer(net, tokenizer, rows["train"], rows["validation"], params,
                                checkpoints, callbacks)
        trainer_ref.append(trainer)
        checkpoint = cb.last_complete_checkpoint(checkpoints) if resume else None
        outcome = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        metrics = {"train_loss": float(outcome.training_loss),
                   "steps": float(trainer.state.global_step),
                   "train_runtime_s": float(outcome.metrics.get("train_runtime", 0.0))}
        if trainer.state.max_steps and outcome.metrics.get("train_runtime"):
            metrics["tokens_per_s"] = (trainer.tokens_seen * trainer.args.world_size
                                       / outcome.metrics["train_runtime"])
        if rows["validation"]:
            metrics["eval_loss"] = _final_eval_loss(trainer)
        adapter_dir = out / "adapter"
        trainer.save_model(str(adapter_dir))
        if main:
            tokenizer.save_pretrained(adapter_dir)
    except TuneloopError as exc:
        _fail(project, run_id, str(exc), main)
        raise
    except Exception as exc:
        _fail(project, run_id, f"{type(exc).__name__}: {exc}", main)
        raise TrainingError(f"run {run_id} failed: {type(exc).__name__}: {exc}",
                            hint=f"fix the cause, then `tuneloop train --resume {run_id}` "
                                 "continues from the last checkpoint") from exc
    tier = taint(version, model, params)[0]
    result = TrainResult(run_id, out, adapter_dir, tier, metrics)
    if main:
        _finish(project, run_id, version, model, params, result, register=register,
                export=export)
    return result


def _rows(project: Project, out: Path, version: DatasetVersion, params: dict[str, Any],
          tokenizer: Any, split: str) -> list[dict]:
    """One split as training rows: read, tokenised in the task's framing (facts weighted by
    `copy_weight`), packed. A train split with no usable example is an error."""
    from tuneloop.train.examples import read_records, tokenize_records
    from tuneloop.train.packing import as_rows

    path = _split_path(out, version, params, split)
    records = list(read_records(path)) if path.is_file() else []
    if split == "validation" and params.get("max_eval_examples"):
        records = records[: int(params["max_eval_examples"])]
    examples, report = tokenize_records(tokenizer, records, max_length=params["max_seq_length"],
                                        system_prompt=project.config.task.system_prompt,
                                        copy_weight=params.get("copy_weight", 1.0))
    if split == "train" and not examples:
        raise TrainingError(f"dataset {version.ref} has no usable training example "
                            f"({len(report.dropped_no_assistant)} without an assistant "
                            "answer)", hint="check its train split")
    return as_rows(examples, params["max_seq_length"], params["packing"])


def _final_eval_loss(trainer: Any) -> float:
    """The validation loss of the weights training ended with, evaluated only if no evaluation
    of exactly those weights was logged (the best checkpoint's, with early stopping)."""
    state = trainer.state
    if trainer.args.load_best_model_at_end and state.best_metric is not None:
        return float(state.best_metric)
    for entry in reversed(state.log_history):
        if "eval_loss" in entry:
            if entry.get("step") == state.global_step:
                return float(entry["eval_loss"])
            break
    return float(trainer.evaluate()["eval_loss"])


def publish_run(project: Project, run_id: int, *, export: bool = True) -> TrainResult:
    """Register (and with `export`, export and parity-check) the adapter of a finished run."""
    from tuneloop.store.runs import Run

    with project.store.session(write=False) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id}", hint="`tuneloop runs list` shows the runs")
        params, ref, summary = dict(run.params), run.dataset_version, dict(run.summary)
    params["export"] = export
    version = dataset_version(project, ref)
    model = resolve_base(project, params.get("base_name"))
    model = BaseModel(model.name, Path(params["base_dir"]), model.tier, model.roots)
    out = run_dir(project, run_id)
    result = TrainResult(run_id, out, out / "adapter", taint(version, model, params)[0],
                         {k: float(v) for k, v in summary.items() if isinstance(v, int | float)})
    _finish(project, run_id, version, model, params, result, register=True, export=export)
    return result


def _finish(project: Project, run_id: int, version: DatasetVersion, model: BaseModel,
            params: dict[str, Any], result: TrainResult, *, register: bool,
            export: bool) -> None:
    from tuneloop.train import publish

    try:
        if register:
            result.model_name = publish.register_adapter(project, run_id, version, model,
                                                         params, result.adapter_dir, result.tier)
        if register and export:
            result.published = publish.export_and_check(project, run_id, version, model,
                                                        params, result.adapter_dir, result.tier)
    except TuneloopError as exc:
        _fail(project, run_id, str(exc), True, summary=result.metrics)
        raise
    summary: dict[str, Any] = {**result.metrics}
    if result.published is not None:
        summary["parity_agreement"] = result.published.agreement
    update_run(project, run_id, status="completed", summary=summary,
                output_model=result.published.model_name if result.published else
                result.model_name, finished=True)


def dataset_version(project: Project, dataset: str | DatasetVersion) -> DatasetVersion:
    """The dataset version named by `dataset` ("name" or "name@id"), or the one given."""
    if not isinstance(dataset, str):
        return dataset
    from tuneloop.data.versions import get_version

    return get_version(project, dataset)


def run_resources(project: Project, version: DatasetVersion, model: BaseModel,
               params: dict[str, Any]) -> list[Resource]:
    """What a run uses, for `require(..., "train", ...)`: its data, base and knowledge base."""
    resources = [version.resource]
    if model.tier >= 2:  # a base model fine-tuned on Tier 2 data carries that data too
        resources.append(Resource("model", model.name, model.tier, model.roots))
    if params.get("retrieval"):  # the knowledge base's text goes into the training prompts
        from tuneloop.train.retrieval import index_resources, retrieval_variant

        resources.extend(index_resources(retrieval_variant(project, params)))
    return resources


def _knowledge_taint(project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """The knowledge base's tier and Tier 2 roots: its text fills retrieval-aware training
    prompts, so a model trained on them carries them (taint propagates)."""
    from tuneloop.train.retrieval import index_resources, retrieval_variant

    resources = index_resources(retrieval_variant(project, params))
    return {"knowledge_tier": derived_tier([r.tier for r in resources] or [1]),
            "knowledge_roots": sorted({root for r in resources for root in derived_roots(r)})}


def _prepare_retrieval(project: Project, actor: Actor, run_id: int, version: DatasetVersion,
                       model: BaseModel, params: dict[str, Any],
                       progress: Callable[[TrainProgress], None] | None) -> None:
    """Write the run's retrieval-aware splits and record how they were made in its params."""
    from dataclasses import asdict

    from tuneloop.train.callbacks import TrainProgress
    from tuneloop.train.retrieval import prepare_splits
    from tuneloop.train.sft import load_tokenizer

    def prepared(done: int, total: int) -> None:
        if progress is not None:
            progress(TrainProgress(done, total, None, None, None, stage="RAG prompts"))

    report = prepare_splits(project, actor, version, load_tokenizer(model.hf_dir), params,
                            run_dir(project, run_id) / "retrieval", prepared)
    params["retrieval_report"] = asdict(report)
    with project.store.session() as session:
        from tuneloop.store.runs import Run

        run = session.get(Run, run_id)
        if run is not None:
            run.params = {**run.params, "retrieval_report": asdict(report)}


def _split_path(out: Path, version: DatasetVersion, params: dict[str, Any], split: str) -> Path:
    """Where a split's training records are: the run's retrieval-aware copy when training with
    retrieval (written before training started), else the dataset version's own file."""
    if params.get("retrieval"):
        return out / "retrieval" / f"{split}.jsonl"
    return version.split_path(split)


def create_run(project: Project, actor: Actor, kind: str, parent_id: int | None,
                params: dict[str, Any], version: DatasetVersion, model: BaseModel,
                approvals: list[int]) -> int:
    """Record a new running run (audited as `train.start`) and return its id."""
    from tuneloop.governance import audit
    from tuneloop.store.runs import Run

    tier, roots = taint(version, model, params)
    with project.store.session() as session:
        run = Run(kind=kind, status="running", parent_id=parent_id, actor=actor.name,
                  params={**params, "base_name": model.name}, dataset_version=version.ref,
                  base_model=model.name, tier=tier, approvals=[str(a) for a in approvals])
        session.add(run)
        session.flush()
        run.output_dir = str(run_dir(project, run.id))
        audit.record(session, actor=actor.name, action="train.start", target=f"run:{run.id}",
                     tier=tier, details={"dataset": version.ref, "base": model.name,
                                         "approvals": approvals,
                                         "roots": sorted(roots)})
        return run.id


def update_run(project: Project, run_id: int, *, approvals_more: list[int] | None = None,
                finished: bool = False, **values: Any) -> None:
    """Set columns of a run, add approvals it used, and stamp it updated (and finished)."""
    from tuneloop.store.runs import Run

    with project.store.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            return
        for key, value in values.items():
            setattr(run, key, value)
        if approvals_more:
            run.approvals = sorted({*run.approvals, *(str(a) for a in approvals_more)})
        run.updated_at = utcnow()
        if finished:
            run.finished_at = run.updated_at


def _fail(project: Project, run_id: int, error: str, main: bool,
          summary: dict[str, float] | None = None) -> None:
    if main:
        extra: dict[str, Any] = {"summary": summary} if summary else {}
        update_run(project, run_id, status="failed", error=error[:4000], **extra)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _on_main_process(step: Callable[[], int]) -> int:
    """Run `step` on the first process only and share its result (or its error) with all."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return step()
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # joins the process group (gloo on CPU) that Trainer will use too
    payload: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            payload = [("ok", step())]
        except TuneloopError as exc:
            payload = [("error", exc)]
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise value
    return int(value)
