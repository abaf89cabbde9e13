"""The loop closed on a tiny model: serve -> requests with ratings and corrections -> enrich ->
train -> eval, with lineage from the trained model back to the served request ids."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.test_flywheel_support import open_project, person
from tests.test_serve_support import live_server

QUESTIONS = [
    ("How do I reset my password?", "Use the reset link on the sign-in page."),
    ("Where are my invoices?", "Under Billing, then Invoices."),
    ("Does the app run on Linux?", "Yes: install the .deb or .rpm package."),
    ("How do I share a folder?", "Open it, choose Share and add people."),
    ("What does error 429 mean?", "Too many requests: wait a minute and retry."),
    ("Is there a dark mode?", "Yes, under Settings, Appearance."),
    ("How do I add a device?", "Sign in on it with the same account."),
    ("Can I undo a delete?", "Yes: deleted files stay in Trash for 30 days."),
]


def config(model_dir: Path) -> str:
    return f"""\
version: 1
task:
  name: e2e
  system_prompt: You answer support questions briefly.
base_model: {{name: tiny, path: {model_dir}, engine: transformers}}
training: {{epochs: 1, batch_size: 4, max_seq_length: 128, eval_steps: 1000, save_steps: 1000,
           early_stopping_patience: null, packing: false}}
variants:
  - name: base
    generation: {{max_tokens: 8, temperature: 0}}
  - name: tuned
    model: from-logs-run1
    generation: {{max_tokens: 8, temperature: 0}}
server: {{app_alias: assistant}}
"""


@pytest.mark.slow
def test_served_feedback_becomes_a_trained_and_evaluated_model_with_lineage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneloop.engines import registry, testing
    from tuneloop.evaluate.run import evaluate
    from tuneloop.flywheel.enrich import enrich
    from tuneloop.governance import principals
    from tuneloop.serve.app import create_app
    from tuneloop.train.run import train

    model_dir = testing.tiny_llama(tmp_path / "models")
    project = open_project(tmp_path / "proj", "sqlite", monkeypatch, config(model_dir))
    ivy = person(project, "ivy")
    key = principals.create_key(project.store, project.actor(), "ivy",
                                audience="internal").secret
    served: list[str] = []
    with live_server(create_app(project)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)
        for i, (question, good) in enumerate(QUESTIONS):
            raw = api.chat.completions.with_raw_response.create(
                model="assistant", user=f"customer{i}@example.com",
                messages=[{"role": "user", "content": question}])
            rid = raw.headers["x-request-id"]
            served.append(rid)
            # Half are corrected (the tiny model's answers are noise), one is only rated down.
            body = ({"request_id": rid, "rating": -1, "corrected_answer": good} if i % 2 == 0
                    else {"request_id": rid, "rating": -1} if i == 1
                    else {"request_id": rid, "rating": 1})
            given = httpx.post(url + "/v1/feedback", json=body, timeout=60,
                               headers={"authorization": f"Bearer {key}"})
            assert given.status_code == 200, given.text

    report = enrich(project, ivy, "from-logs")
    version = report.version
    assert version is not None and report.queued == [served[1]]
    assert sorted(version.manifest["lineage"]["request_ids"]) == sorted(
        r for i, r in enumerate(served) if i != 1)

    result = train(project, ivy, version.ref, export=False)
    model = registry.get_model(project, result.model_name or "from-logs-run1")
    assert model.lineage["dataset_versions"] == [version.ref]

    evaluated = evaluate(project, ivy, ["tuned"], dataset=version.ref, split="train",
                         report=False)
    assert evaluated.dataset == version.ref and evaluated.outputs

    # Lineage: model -> dataset version -> request ids that are in the log.
    from tuneloop.data.versions import get_version
    from tuneloop.serve import requestlog

    back = get_version(project, model.lineage["dataset_versions"][0])
    for rid in back.manifest["lineage"]["request_ids"]:
        assert requestlog.get(project.store, rid) is not None

    # Erasing one customer marks the model trained on their request, and the variant serving it.
    from tuneloop.flywheel.erasure import erase
    from tuneloop.rollout import withdraw_from_public

    erased = erase(project, project.actor(), "customer0@example.com",
                   withdraw=withdraw_from_public)
    assert erased.counts["request_logs"] == 1 and erased.counts["dataset_records"] == 1
    assert model.name in erased.models and erased.variants == ["tuned"]
    assert erased.residue == []
    project.close()
