"""From a trained adapter to something serving can use: register it, merge it into the base,
export to GGUF, check the export answers like the adapter (parity), register the export.

Every registered model records its lineage: base model, dataset version, run, approvals relied
on, tier and Tier 2 roots. A parity check below the threshold fails loudly and the export is not
registered: a merged or quantised model that answers differently from what was evaluated must
not reach users.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.engines.registry import register_model
from tuneloop.errors import TrainingError
from tuneloop.governance import derived_roots, derived_tier
from tuneloop.train.callbacks import record_metrics
from tuneloop.train.parity import ParityReport, check_parity, prompt_messages

if TYPE_CHECKING:
    from tuneloop.data.versions import DatasetVersion
    from tuneloop.project import Project
    from tuneloop.train.base import BaseModel

@dataclass
class PublishReport:
    """The export of one run: its file, its registered name and its parity with the adapter."""

    gguf_path: Path
    model_name: str
    agreement: float
    parity: ParityReport


def lineage(run_id: int, version: DatasetVersion, model: BaseModel,
            approvals: list[str] | None = None,
            params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a model trained in this run was made from."""
    return {"base_model": model.name, "dataset_versions": [version.ref], "run_id": run_id,
            "approvals": approvals or [], "roots": sorted(_roots(version, model, params)),
            **({"retrieval": params["retrieval_report"]}
               if params and params.get("retrieval_report") else {})}


def adapter_name(params: dict[str, Any], version: DatasetVersion, run_id: int) -> str:
    """The adapter's registered name. A chosen `model_name` goes to what serves: the GGUF export
    when there is one (the adapter is then `NAME-adapter`), else the adapter itself."""
    chosen = params.get("model_name")
    if not chosen:
        return f"{version.name}-run{run_id}"
    return f"{chosen}-adapter" if params.get("export", True) else chosen


def register_adapter(project: Project, run_id: int, version: DatasetVersion, model: BaseModel,
                     params: dict[str, Any], adapter_dir: Path, tier: int) -> str:
    """Register the adapter (or the fully fine-tuned model) under `NAME-runID`; its name."""
    kind = "adapter" if params["method"] == "lora" else "merged"
    name = adapter_name(params, version, run_id)
    register_model(project, name=name, kind=kind, path=str(adapter_dir), format="safetensors",
                   tier=tier, roots=sorted(_roots(version, model, params)),
                   base_model=model.name,
                   lineage=lineage(run_id, version, model, _approvals(project, run_id), params))
    return name


def export_and_check(project: Project, run_id: int, version: DatasetVersion, model: BaseModel,
                     params: dict[str, Any], adapter_dir: Path, tier: int) -> PublishReport:
    """Merge, export to GGUF, run the parity check, and register the export if it passes."""
    from tuneloop.engines.export import export_gguf

    out = adapter_dir.parent
    lora = params["method"] == "lora"
    merged = _merge(model.hf_dir, adapter_dir, out / "merged") if lora else adapter_dir
    quant = params["export_quantization"]
    gguf_path = out / f"model-{quant}.gguf"
    export_gguf(merged, gguf_path, quantization=quant)
    split = next((s for s in ("test", "validation", "train")
                  if version.split_path(s).is_file() and version.split_path(s).stat().st_size),
                 "train")
    from tuneloop.train.examples import read_records

    count = int(params.get("parity_prompts") or 8)
    records = []
    for record in read_records(version.split_path(split)):
        records.append(record)
        if len(records) >= count:
            break
    prompts = prompt_messages(records, project.config.task.system_prompt, count)
    report = check_parity(model.hf_dir, adapter_dir, gguf_path, prompts, lora=lora)
    record_metrics(project.store, run_id, -1, {"parity_agreement": report.agreement,
                                               "parity_exact": report.exact})
    threshold = float(params["parity_threshold"])
    if report.agreement < threshold:
        raise TrainingError(
            f"parity check failed for run {run_id}: the {quant} GGUF export agrees with the "
            f"trained adapter on {report.agreement:.0%} of greedy answer tokens over "
            f"{report.prompts} prompts, below the threshold {threshold:.0%}; the export was not "
            f"registered",
            hint="export with less quantisation (training.export_quantization: f16) and "
                 f"retry, or inspect {gguf_path}")
    name = params.get("model_name") or f"{version.name}-run{run_id}-{quant}"
    register_model(project, name=name, kind="gguf", path=str(gguf_path), format="gguf",
                   tier=tier, roots=sorted(_roots(version, model, params)),
                   base_model=model.name,
                   lineage={**lineage(run_id, version, model, _approvals(project, run_id),
                                      params),
                            "parity_agreement": report.agreement, "quantization": quant})
    return PublishReport(gguf_path, name, report.agreement, report)


def _merge(base_dir: Path, adapter_dir: Path, target: Path) -> Path:
    """Fold the LoRA weights into the base model and save it as a plain model folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _roots(version: DatasetVersion, model: BaseModel,
           params: dict[str, Any] | None = None) -> frozenset[str]:
    return taint(version, model, params or {})[1]


def taint(version: DatasetVersion, model: BaseModel,
          params: dict[str, Any]) -> tuple[int, frozenset[str]]:
    """The tier and Tier 2 roots of what a run trains on: the dataset, the base model and, with
    retrieval-aware training, the knowledge-base sources whose text fills its prompts."""
    tier = derived_tier(version.tier, model.tier, int(params.get("knowledge_tier") or 1))
    roots = derived_roots(version.resource) | model.roots
    return tier, roots | frozenset(params.get("knowledge_roots") or ())


def _approvals(project: Project, run_id: int) -> list[str]:
    from tuneloop.store.runs import Run

    with project.store.session(write=False) as session:
        run = session.get(Run, run_id)
        return list(run.approvals) if run else []
