"""The evaluation report: one self-contained HTML file with every chart, plus Markdown and JSON;
rendered in headless Chromium with a screenshot kept under tests/artifacts/."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tuneloop.config import LatencyConfig, MetricConfig
from tuneloop.evaluate.report import write_report
from tuneloop.evaluate.run import EvalResult
from tuneloop.evaluate.summary import Output, summarize

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHARTS = ("quality-vs-latency", "latency-distributions", "slices", "ci-quality", "ci-latency")
VARIANTS = ("base", "base-rag", "tuned", "tuned-rag")


def make_result(n: int = 24) -> EvalResult:
    """Four variants on `n` examples in three categories; 'tuned' is clearly better than 'base'."""
    rng = random.Random(0)
    quality = {"base": 0.2, "base-rag": 0.35, "tuned": 0.5, "tuned-rag": 0.6}
    speed = {"base": 0.4, "base-rag": 0.9, "tuned": 0.45, "tuned-rag": 1.0}
    outputs = []
    for i in range(n):
        category = ("billing", "sync", "security")[i % 3]
        for variant in VARIANTS:
            score = min(1.0, max(0.0, quality[variant] + rng.uniform(-0.1, 0.1)))
            total = speed[variant] * rng.uniform(0.8, 1.4)
            outputs.append(Output(
                variant=variant, record_id=f"r{i}", slice=category,
                prompt=[{"role": "user", "content": f"Question {i} about <{category}> & more?"}],
                reference=f"Reference answer {i}.", output=f"{variant} says {i}",
                ttft_s=total / 5, total_s=total, prompt_tokens=40, completion_tokens=30,
                finish_reason="stop", scores={"rouge_l": score, "token_f1": score / 2}))
    metrics = [MetricConfig(name="rouge_l", threshold=0.3, primary=True),
               MetricConfig(name="token_f1", threshold=0.2, required=False)]
    slo = LatencyConfig(p95_ms=1200, ttft_ms=300)
    summary = summarize(outputs, VARIANTS, metrics, slo, concurrency=2,
                        wall_s=dict.fromkeys(VARIANTS, 10.0), slice_field="category",
                        resamples=2000)
    summary.update({"run_id": 7, "dataset": "support@abc", "split": "test", "tier": 1})
    return EvalResult(7, "support@abc", list(VARIANTS), summary, outputs)


def test_report_writes_html_markdown_and_json_with_the_figures(tmp_path: Path) -> None:
    paths = write_report(make_result(), tmp_path / "report")
    html = paths["html"].read_text()
    for chart in CHARTS:
        assert f'data-chart="{chart}"' in html
    assert html.count("<svg") >= len(CHARTS)
    # self-contained: no scripts, nothing fetched from anywhere
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']https?://""", html)
    # user text is escaped, never interpreted as markup
    assert "&lt;billing&gt; &amp; more?" in html
    data = json.loads(paths["json"].read_text())
    assert data["per_variant"]["tuned"]["passed"] is True
    assert data["per_variant"]["base"]["passed"] is False
    comp = next(c for c in data["comparisons"]
                if (c["a"], c["b"], c["metric"]) == ("base", "tuned", "rouge_l"))
    assert comp["verdict"] == "better"
    assert data["best_per_slice"] == dict.fromkeys(("billing", "security", "sync"), "tuned-rag")
    markdown = paths["markdown"].read_text()
    assert "| tuned-rag |" in markdown and "**FAIL**" in markdown
    assert "base: rouge_l" in markdown  # the failed gate is listed


def test_report_lists_the_worst_examples_beside_their_reference(tmp_path: Path) -> None:
    result = make_result()
    worst_base = min((o for o in result.outputs if o.variant == "base"),
                     key=lambda o: o.scores["rouge_l"])
    html = write_report(result, tmp_path)["html"].read_text()
    section = html[html.index('id="worst"'):]
    assert worst_base.output in section
    assert worst_base.reference in section


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_renders_in_headless_chromium_with_every_chart(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    paths = write_report(make_result(), tmp_path / "report")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "eval_report.png"
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(paths["html"].as_uri())
            sizes = {}
            for chart in CHARTS:
                box = page.locator(f'figure[data-chart="{chart}"] svg').bounding_box()
                sizes[chart] = box
            page.screenshot(path=str(shot), full_page=True)
            title = page.title()
            rows = page.locator("#variant-table tr").count()
        finally:
            browser.close()
    for chart, box in sizes.items():
        assert box is not None and box["width"] > 200 and box["height"] > 100, chart
    assert title == "tuneloop evaluation run 7"
    assert rows == 1 + len(VARIANTS)
    assert [u for u in requests if not u.startswith("file://")] == []
    assert shot.stat().st_size > 20_000
