"""`tuneloop demo --quick` runs the whole loop, and what it leaves behind is real."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_quick_demo_runs_the_whole_loop_and_leaves_real_artifacts(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    env = {"TUNELOOP_DATABASE_URL": "", "TUNELOOP_API_KEY": ""}
    result = run_cli("demo", "--quick", str(target), env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout

    # The Tier 2 refusal came before the approval, which another person granted.
    assert "refused:" in out and "approvals request --scope source:tickets" in out
    assert "granted by priya" in out

    db = sqlite3.connect(target / ".tuneloop" / "tuneloop.db")
    first = db.execute("SELECT version_id, path FROM dataset_versions WHERE name = 'support' "
                       "ORDER BY id").fetchall()
    assert first, "no dataset version was written"

    # The dataset: redacted records, and every bad line kept with file, line and reason.
    version_dir = Path(first[0][1])
    version_dir = version_dir if version_dir.is_absolute() else target / version_dir
    train = [json.loads(x) for x in (version_dir / "train.jsonl").read_text().splitlines()]
    assert len(train) > 200
    text = json.dumps(train)
    assert "<PERSON_1>" in text
    assert "mbrown@long.io" not in text and "Monique Brown" not in text  # ticket T-10001
    rejects = [json.loads(x) for x in (version_dir / "rejects.jsonl").read_text().splitlines()]
    broken = [r for r in rejects if r["reason"] == "broken JSON"]
    assert broken and broken[0]["path"] == "data/tickets.jsonl" and broken[0]["line"] > 0
    assert sum(r["step"] == "exact_dedup" for r in rejects) == 9

    # The evaluation: the four variants in a self-contained report with its charts.
    run_id, summary = db.execute("SELECT id, summary FROM eval_runs ORDER BY id").fetchone()
    per_variant = json.loads(summary)["per_variant"]
    assert set(per_variant) == {"base", "base-rag", "tuned", "tuned-rag"}
    report = target / ".tuneloop" / "artifacts" / "evals" / f"run-{run_id}" / "report.html"
    html = report.read_text()
    assert html.count("<svg") >= 3 and "tuned-rag" in html and "<script" not in html

    # Routing: a router learned the ticket categories, and the routed combination was judged
    # against the best single variant from the evaluation's stored answers.
    assert db.execute("SELECT COUNT(*) FROM query_routers").fetchone()[0] == 1
    assert "router support-router@v1" in out and "accuracy" in out and "95% CI" in out

    # Serving: every simulated request answered and logged, redacted, with feedback attached.
    assert db.execute("SELECT COUNT(*) FROM request_logs WHERE status = 200").fetchone()[0] == 6
    assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 6
    prompts = " ".join(r[0] for r in db.execute("SELECT prompt FROM request_logs"))
    assert "<PERSON_" in prompts

    # Enrichment: a new version of the dataset whose records point back to request ids.
    versions = db.execute("SELECT path FROM dataset_versions WHERE name = 'support' ORDER BY id"
                          ).fetchall()
    assert len(versions) == 2, "enrich did not write a new version"
    newest = Path(versions[-1][0])
    newest = newest if newest.is_absolute() else target / newest
    manifest = json.loads((newest / "manifest.json").read_text())
    logged = {r[0] for r in db.execute("SELECT id FROM request_logs")}
    assert set(manifest["lineage"]["request_ids"]) <= logged
    assert manifest["lineage"]["request_ids"]

    # The audit chain is whole.
    verify = run_cli("audit", "verify", cwd=target, env=env)
    assert verify.returncode == 0 and "no tampering" in verify.stdout
