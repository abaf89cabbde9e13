"""Fine-tuning runs end to end on a tiny model: loss goes down, runs and lineage are recorded,
Tier 2 data is refused without an approval, a killed run resumes to the same weights, and the
same entry point trains on two processes (gloo)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuneloop import Project
from tuneloop.errors import ApprovalRequired

FAST = {"max_seq_length": 128, "batch_size": 2, "gradient_accumulation": 1, "learning_rate": 5e-3,
        "eval_steps": 4,
        "save_steps": 4, "warmup_ratio": 0.0, "lr_scheduler": "constant"}


def make_version(project: Project, name: str = "sums", tier: int = 1, n_train: int = 24):
    """A dataset version published through the data stage's own `publish`."""
    from tuneloop.data.versions import publish

    rnd = random.Random(0)

    def record(i: int) -> dict:
        a, b = rnd.randint(1, 9), rnd.randint(1, 9)
        return {"id": f"{name}-{i}", "metadata": {}, "subject": None, "messages": [
            {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}

    staging = project.state_dir / f"staging-{name}"
    staging.mkdir(parents=True)
    counts = {}
    for split, n in (("train", n_train), ("validation", 4), ("test", 4)):
        lines = [json.dumps(record(i)) for i in range(n)]
        (staging / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[split] = n
    (staging / "rejects.jsonl").write_text("", encoding="utf-8")
    (project.state_dir / "datasets" / name).mkdir(parents=True, exist_ok=True)
    roots = ["source:tickets"] if tier == 2 else []
    manifest = {"name": name, "id": f"v{tier}{n_train:04d}", "tier": tier, "roots": roots,
                "approvals": [], "counts": counts}
    return publish(project, staging, manifest, created_by="test")


@pytest.fixture
def sqlite_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = Project.init(tmp_path / "proj")
    yield project
    project.close()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneloop.engines.testing import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("models"))


def test_tier2_training_without_approval_is_refused(project_dir: Path, tiny_model: Path) -> None:
    from tuneloop.store.runs import Run
    from tuneloop.train.run import train

    project = Project.open(project_dir)
    version = make_version(project, "tickets", tier=2)
    with pytest.raises(ApprovalRequired) as caught:
        train(project, project.actor(), version.ref, base=str(tiny_model), overrides=FAST)
    assert caught.value.use == "train"
    assert "tuneloop approvals request --scope source:tickets --use train" in caught.value.hint
    with project.store.session(write=False) as session:
        assert session.query(Run).count() == 0  # refused before anything was recorded
    project.close()


@pytest.mark.slow
def test_training_lowers_loss_and_records_run_metrics_and_lineage(
        sqlite_project: Project, tiny_model: Path) -> None:
    from tuneloop.train.history import get_run, run_metrics
    from tuneloop.train.run import train

    version = make_version(sqlite_project)
    reports = []
    result = train(sqlite_project, sqlite_project.actor(), version.ref, base=str(tiny_model),
                   overrides={**FAST, "epochs": 4, "export_quantization": "f16",
                              "model_name": "tuned"},
                   progress=reports.append)
    curves = run_metrics(sqlite_project, result.run_id)
    losses = [v for _, v in curves["loss"]]
    assert len(losses) == result.metrics["steps"] >= 8
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    assert curves["eval_loss"][-1][1] < curves["eval_loss"][0][1]
    assert reports and reports[-1].step == reports[-1].total_steps
    assert reports[-1].tokens_per_s and reports[-1].tokens_per_s > 0
    run = get_run(sqlite_project, result.run_id)
    assert run.status == "completed" and run.kind == "train"
    assert run.dataset_version == version.ref and run.base_model == str(tiny_model)
    assert run.tier == 1 and run.params["epochs"] == 4
    assert (result.adapter_dir / "adapter_config.json").is_file()
    # the export was checked against the adapter and the figure stored
    assert result.published is not None and result.published.gguf_path.is_file()
    assert result.published.agreement >= 0.8
    assert curves["parity_agreement"][0][1] == pytest.approx(result.published.agreement)
    assert run.output_model == result.published.model_name == "tuned"
    # the registry knows what each model was made from
    from tuneloop.engines.registry import get_model

    served, adapter = get_model(sqlite_project, "tuned"), get_model(sqlite_project, "tuned-adapter")
    assert served.kind == "gguf" and adapter.kind == "adapter"
    for model in (served, adapter):
        assert model.lineage["run_id"] == result.run_id
        assert model.lineage["dataset_versions"] == [version.ref]
        assert model.base_model == str(tiny_model) and model.tier == 1


def _adapter_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(
        sqlite_project: Project, tiny_model: Path) -> None:
    import torch

    from tuneloop.train.history import get_run
    from tuneloop.train.run import resume, train

    version = make_version(sqlite_project, n_train=32)
    overrides = {**FAST, "max_steps": 12, "save_steps": 2, "eval_steps": 2,
                 "early_stopping_patience": None}
    whole = train(sqlite_project, sqlite_project.actor(), version.ref, base=str(tiny_model),
                  overrides=overrides, export=False)

    script = (
        "import sys; from tuneloop import Project; from tuneloop.train.run import train\n"
        "p = Project.open(sys.argv[1])\n"
        f"train(p, p.actor(), {version.ref!r}, base={str(tiny_model)!r}, "
        f"overrides={overrides!r}, export=False)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(sqlite_project.root)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = whole.run_id + 1
    checkpoints = sqlite_project.artifacts_dir / "runs" / str(run_id) / "checkpoints"
    deadline = time.monotonic() + 240
    while not (checkpoints / "checkpoint-6" / ".tuneloop-complete").is_file():
        assert child.poll() is None, "the training process ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert get_run(sqlite_project, run_id).status == "running"  # killed, not finished

    resumed = resume(sqlite_project, sqlite_project.actor(), run_id, export=False)
    assert get_run(sqlite_project, run_id).status == "completed"
    a, b = _adapter_weights(whole.adapter_dir), _adapter_weights(resumed.adapter_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    assert resumed.metrics["eval_loss"] == pytest.approx(whole.metrics["eval_loss"], rel=1e-4)


@pytest.mark.slow
def test_two_process_gloo_run_completes_and_produces_a_model(
        sqlite_project: Project, tiny_model: Path) -> None:
    from tuneloop.train.history import list_runs

    version = make_version(sqlite_project)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("TUNELOOP_DATABASE_URL", None)
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", "29581", "-m", "tuneloop",
         "-C", str(sqlite_project.root), "train", "--dataset", version.ref,
         "--base", str(tiny_model), "--max-seq-length", "128", "--batch-size", "2",
         "--max-steps", "4", "--save-steps", "2", "--eval-steps", "2", "--no-export"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list_runs(sqlite_project)
    assert len(runs) == 1, "only the first process records the run"
    run = runs[0]
    assert run.status == "completed" and run.summary["steps"] == 4
    assert (Path(run.output_dir) / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_approved_tier2_training_makes_a_tier2_model_with_its_approval_in_lineage(
        sqlite_project: Project, tiny_model: Path) -> None:
    from tuneloop.engines.registry import get_model
    from tuneloop.governance import approvals
    from tuneloop.governance.principals import actor_of, ensure_principal
    from tuneloop.train.history import get_run
    from tuneloop.train.run import train

    version = make_version(sqlite_project, "tickets", tier=2, n_train=8)
    with sqlite_project.store.session() as session:
        privacy = actor_of(ensure_principal(session, "pia", role="privacy"))
    me = sqlite_project.actor()
    approval = approvals.request(sqlite_project.store, me, scope=["source:tickets"],
                                 uses=["train"], purpose="fine-tune on tickets")
    approvals.grant(sqlite_project.store, privacy, approval)
    result = train(sqlite_project, me, version.ref, base=str(tiny_model), export=False,
                   overrides={**FAST, "max_steps": 2})
    assert result.tier == 2
    run = get_run(sqlite_project, result.run_id)
    assert run.tier == 2 and run.approvals == [str(approval)]
    model = get_model(sqlite_project, result.model_name)
    assert model.tier == 2 and list(model.roots) == ["source:tickets"]
    assert model.lineage["approvals"] == [str(approval)]
