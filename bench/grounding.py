"""Grounding benchmark: does the knowledge loop make a model answer from documents nobody here
wrote, on questions it never saw?

    .venv/bin/python bench/grounding.py            # the whole loop, about 20 minutes on 2 cores
    .venv/bin/python bench/grounding.py --quick    # a few documents and steps: checks the plumbing

The documentation set is the docstrings of five standard-library modules (json, pathlib,
argparse, datetime, collections), one Markdown file per class or function, read from the Python
that runs this script. The evaluation questions (`bench/data/stdlib_questions.jsonl`) were
written by hand from those docstrings, each with one key fact that a correct answer states; they
are published as a test split first, so the synthetic-data contamination check keeps them out
of training, and no step of the loop sees their answers.

The loop, through tuneloop's own functions: index the documents; synthesise grounded
question/answer records from them with the bundled model; build a dataset; fine-tune with
retrieval (`training.retrieval`); evaluate base+RAG and tuned+RAG on the held-out questions.

Figures:
- answer_over_context: for tuned+RAG, the share of key facts its answers state over the share its
  sources held (goal >= 0.7); the same for base+RAG beside it, as the baseline.
- key_facts_diff: tuned+RAG minus base+RAG on key facts, with its paired-bootstrap 95% CI
  (goal: lower bound > 0).
- loop_minutes: wall time of the whole loop (goal < 30).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console
from rich.table import Table

MODULES = ("json", "pathlib", "argparse", "datetime", "collections")
QUESTIONS = Path(__file__).parent / "data" / "stdlib_questions.jsonl"
CONFIG = """
version: 1
task:
  name: stdlib-qa
  description: Answer questions about Python's standard library from its documentation.
  system_prompt: You answer questions about Python's standard library in one or two sentences.
metrics:
  - {name: key_facts, threshold: 0.5, primary: true}
  - {name: token_f1, required: false}
latency: {p95_ms: 60000, ttft_ms: 30000}
sources:
  - {name: docs, path: docs, kind: documents, tier: 1}
  - {name: docs-qa, path: data/synth/docs-qa.jsonl, kind: records, format: jsonl, tier: 1}
knowledge_base: {sources: [docs], chunk_tokens: 160, overlap_tokens: 24}
base_model: {name: smollm2-135m, path: "bundled:smollm2-135m"}
datasets:
  - name: docs-qa
    sources: [docs-qa]
    split: {train: 0.9, validation: 0.1, test: 0.0}
    redact: false
    min_output_tokens: 2
training:
  retrieval: true
  retrieval_variant: tuned-rag
  epochs: EPOCHS
  retrieval_unanswerable: UNANSWERABLE
  learning_rate: 0.001
  batch_size: 2
  gradient_accumulation: 1
  max_seq_length: 768
  lora_layers: 8
  eval_steps: 1000
  save_steps: 1000
  export_quantization: f16
  parity_prompts: 4
variants:
  - name: base-rag
    model: base
    retrieval: {enabled: true, top_k: 3, context_tokens: 448, placement: user}
    generation: {max_tokens: 64, temperature: 0}
  - name: tuned-rag
    model: tuned
    retrieval: {enabled: true, top_k: 3, context_tokens: 448, placement: user}
    generation: {max_tokens: 64, temperature: 0}
"""


def write_docs(folder: Path, limit: int | None = None) -> int:
    """One Markdown file per documented public class or function of MODULES."""
    import importlib

    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(obj, "__module__", "").split(".")[0] not in (module_name, "_" + module_name):
                continue
            doc = inspect.getdoc(obj)
            if not doc or len(doc.split()) < 25:
                continue
            parts = [f"# {module_name}.{name}\n\n{doc}\n"]
            if inspect.isclass(obj):
                parts += [f"## {name}.{attr}\n\n{text}\n"
                          for attr, member in sorted(vars(obj).items())
                          if not attr.startswith("_") and (text := _member_doc(member, doc))]
            (folder / f"{module_name}.{name}.md").write_text("\n".join(parts), encoding="utf-8")
            written += 1
            if limit and written >= limit:
                return written
    return written


def _member_doc(member: object, class_doc: str) -> str | None:
    try:
        text = inspect.getdoc(member)
    except Exception:  # some descriptors refuse introspection
        return None
    return text if text and text != class_doc and text != inspect.getdoc(type(member)) else None


def held_out_records(limit: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    return [{"id": f"heldout-{i}", "subject": None,
             "metadata": {"key_facts": [r["fact"]], "kb_refs": [r["doc"]],
                          "module": r["doc"].split(".")[0]},
             "messages": [{"role": "user", "content": r["q"]},
                          {"role": "assistant", "content": r["a"]}]}
            for i, r in enumerate(rows[:limit] if limit else rows)]


def publish_held_out(project, records: list[dict]):
    """The hand-written questions as a test-only dataset version (published first, so the
    synthetic data's contamination check sees them)."""
    from tuneloop.data.versions import publish

    staging = project.state_dir / "staging-heldout"
    staging.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", []), ("validation", []), ("test", records)):
        (staging / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                                encoding="utf-8")
    (staging / "rejects.jsonl").write_text("", encoding="utf-8")
    (project.state_dir / "datasets" / "heldout").mkdir(parents=True, exist_ok=True)
    manifest = {"name": "heldout", "id": "handwritten", "tier": 1, "roots": [], "approvals": [],
                "counts": {"train": 0, "validation": 0, "test": len(records)},
                "recipe": {"from": str(QUESTIONS.name)}}
    return publish(project, staging, manifest, created_by="bench/grounding.py")


def run_loop(root: Path, quick: bool, console: Console, *, per_passage: int = 2,
             min_support: float = 0.6, epochs: float = 3.0,
             unanswerable: float = 0.1) -> tuple[dict, dict[str, float]]:
    from tuneloop import Project
    from tuneloop.data.build import build_dataset
    from tuneloop.data.synth import synthesise
    from tuneloop.evaluate.run import evaluate
    from tuneloop.rag.index import index_knowledge_base
    from tuneloop.train.run import train

    timings: dict[str, float] = {}

    def step(name: str, started: float) -> None:
        timings[name] = time.perf_counter() - started
        console.print(f"  {name}: {timings[name]:.0f} s")

    root.mkdir(parents=True, exist_ok=True)
    config = CONFIG.replace("EPOCHS", str(epochs)).replace("UNANSWERABLE", str(unanswerable))
    (root / "tuneloop.yaml").write_text(config, encoding="utf-8")
    documents = write_docs(root / "docs", limit=6 if quick else None)
    project = Project.init(root)
    actor = project.actor()
    t = time.perf_counter()
    heldout = publish_held_out(project, held_out_records(6 if quick else None))
    index_knowledge_base(project, actor)
    step(f"index {documents} documents", t)
    t = time.perf_counter()
    synth = synthesise(project, actor, "docs", name="docs-qa", limit=6 if quick else None,
                       per_passage=per_passage, min_support=min_support)
    step(f"synthesise ({synth.kept} kept of {synth.generated}; dropped {synth.dropped})", t)
    t = time.perf_counter()
    version = build_dataset(project, actor, "docs-qa")
    step(f"build {version.ref}", t)
    t = time.perf_counter()
    trained = train(project, actor, version.ref, overrides={
        "model_name": "tuned", **({"max_steps": 3} if quick else {})})
    step(f"train with retrieval ({trained.metrics.get('steps', 0):.0f} steps)", t)
    t = time.perf_counter()
    result = evaluate(project, actor, ["base-rag", "tuned-rag"], heldout.ref, report=True)
    step("evaluate on the held-out questions", t)
    summary = result.summary
    summary["report"] = str(result.report_paths.get("html", ""))
    summary["synth"] = {"kept": synth.kept, "generated": synth.generated,
                        "dropped": synth.dropped, "cloze": synth.cloze}
    abstain = project.config.training.retrieval_abstain.lower()
    summary["abstained"] = {v: sum(abstain in o.output.lower() for o in result.outputs
                                   if o.variant == v) for v in ("base-rag", "tuned-rag")}
    project.close()
    return summary, timings


def figures(summary: dict, timings: dict[str, float]) -> dict:
    per = summary["per_variant"]
    comp = next(c for c in summary["comparisons"] if c["metric"] == "key_facts"
                and c.get("slice") is None and {c["a"], c["b"]} == {"base-rag", "tuned-rag"})
    sign = 1 if comp["b"] == "tuned-rag" else -1
    low, high = sorted((sign * comp["low"], sign * comp["high"]))
    return {
        "answer_over_context_tuned_rag": per["tuned-rag"]["grounding"]["answer_over_context"],
        "answer_over_context_base_rag": per["base-rag"]["grounding"]["answer_over_context"],
        "context_holds_key": per["tuned-rag"]["grounding"]["context_holds_key"],
        "key_facts_tuned_rag": per["tuned-rag"]["quality"]["key_facts"],
        "key_facts_base_rag": per["base-rag"]["quality"]["key_facts"],
        "key_facts_diff": sign * comp["diff"], "key_facts_diff_low": low,
        "key_facts_diff_high": high,
        "loop_minutes": sum(timings.values()) / 60,
        "tuned_rag_abstained": summary["abstained"]["tuned-rag"],
        "synthetic_records": summary["synth"]["kept"],
        "questions": per["tuned-rag"]["n"],
        "goals": {"answer_over_context_tuned_rag": ">= 0.7", "key_facts_diff_low": "> 0",
                  "loop_minutes": "< 30"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few documents and steps")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it")
    parser.add_argument("--per-passage", type=int, default=2, help="questions per passage")
    parser.add_argument("--min-support", type=float, default=0.6,
                        help="share of a question's words that must occur in its passage")
    parser.add_argument("--epochs", type=float, default=3.0,
                        help="passes over the synthetic records (about 90: one pass is 29 steps)")
    parser.add_argument("--unanswerable", type=float, default=0.1,
                        help="share of training records whose gold passage is taken out and "
                             "whose answer abstains (training.retrieval_unanswerable)")
    args = parser.parse_args()
    console = Console()
    root = args.keep or Path(tempfile.mkdtemp(prefix="tuneloop-grounding-")) / "project"
    try:
        summary, timings = run_loop(root, args.quick, console, per_passage=args.per_passage,
                                    min_support=args.min_support, epochs=args.epochs,
                                    unanswerable=args.unanswerable)
    finally:
        if not args.keep:
            shutil.rmtree(root.parent, ignore_errors=True)
    result = figures(summary, timings)
    table = Table(title="Grounding on held-out questions about the standard library")
    for col in ("variant", "context holds key", "answer states key", "answer / context"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for name in ("base-rag", "tuned-rag"):
        g = summary["per_variant"][name]["grounding"]
        table.add_row(name, f"{g['context_holds_key']:.3f}", f"{g['answer_states_key']:.3f}",
                      f"{g['answer_over_context'] or 0:.3f}")
    console.print(table)
    console.print(f"tuned-rag − base-rag on key facts: {result['key_facts_diff']:+.3f} "
                  f"(95% CI {result['key_facts_diff_low']:+.3f} to "
                  f"{result['key_facts_diff_high']:+.3f}); loop {result['loop_minutes']:.1f} min; "
                  f"synthetic records kept {summary['synth']['kept']} of "
                  f"{summary['synth']['generated']} ({summary['synth']['cloze']} cloze); "
                  f"tuned-rag answered that its sources do not cover "
                  f"{summary['abstained']['tuned-rag']} of {result['questions']} questions")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
