"""Each quality metric on small cases checked by hand."""

from __future__ import annotations

import pytest

from tuneloop.config import MetricConfig, TaskConfig
from tuneloop.errors import ConfigError
from tuneloop.evaluate import metrics
from tuneloop.evaluate.metrics import Metric, MetricContext, register
from tuneloop.evaluate.metrics.judge import judge_messages, parse_score


def score(name: str, prediction: str, reference: str = "", record: dict | None = None,
          context: MetricContext | None = None, **params) -> float | None:
    metric = metrics.create(MetricConfig(name=name, params=params))
    return metric.score(prediction, reference, record or {}, context or MetricContext())


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert score("exact_match", "The Answer.", "answer") == 1.0
    assert score("exact_match", "Paris", "London") == 0.0
    assert score("exact_match", "The Answer.", "answer", normalize=False) == 0.0


def test_token_f1_counts_shared_words() -> None:
    # normalised: [cat, sat, on, mat] vs [cat, is, on, mat] -> 3 shared, P = R = 3/4
    value = score("token_f1", "the cat sat on the mat", "the cat is on the mat")
    assert value == pytest.approx(0.75)
    assert score("token_f1", "completely different", "nothing shared") == 0.0
    assert score("token_f1", "", "") == 1.0


def test_rouge_l_is_the_longest_common_subsequence_f_measure() -> None:
    # LCS of 6 words; precision 6/6, recall 6/7 -> F = 12/13
    value = score("rouge_l", "the cat was under the bed", "the cat was found under the bed")
    assert value == pytest.approx(12 / 13, abs=1e-6)
    # stemming makes "kill" and "killed" the same word; without it LCS = 3 of 4
    assert score("rouge_l", "police killed the gunman", "police kill the gunman") == 1.0
    assert score("rouge_l", "police killed the gunman", "police kill the gunman",
                 stemmer=False) == pytest.approx(0.75)


def test_regex_matches_pattern_from_params_or_reference() -> None:
    assert score("regex", "the error code is E404 here", pattern=r"\bE\d{3}\b") == 1.0
    assert score("regex", "no code at all", pattern=r"\bE\d{3}\b") == 0.0
    assert score("regex", "E404", pattern=r"E\d{3}", full_match=True) == 1.0
    assert score("regex", "code E404", pattern=r"E\d{3}", full_match=True) == 0.0
    assert score("regex", "Answer: 42", r"\d+") == 1.0  # the reference is the pattern


def test_invalid_regex_is_a_config_error_naming_the_pattern() -> None:
    with pytest.raises(ConfigError, match=r"metrics\[2\]\.params.*not a valid regular"):
        metrics.create(MetricConfig(name="regex", params={"pattern": "("}), index=2)


def test_key_facts_counts_the_facts_the_answer_states() -> None:
    record = {"metadata": {"key_facts": ["Settings > Security", "30 days"]}}
    both = "Open Security in Settings; the links expire after 30 days."
    assert score("key_facts", both, record=record) == 1.0
    assert score("key_facts", "Links expire after 30 days.", record=record) == 0.5
    assert score("key_facts", "Open Settings.", record=record) == 0.0
    assert score("key_facts", "anything", record={"metadata": {}}) is None


SCHEMA = {"type": "object", "required": ["category"],
          "properties": {"category": {"enum": ["billing", "bug"]}, "priority": {"type": "integer"}}}


def test_json_valid_checks_the_task_schema() -> None:
    task = TaskConfig(name="t", format="json", json_schema=SCHEMA)
    ctx = MetricContext(task=task)
    assert score("json_valid", '{"category": "billing", "priority": 2}', context=ctx) == 1.0
    assert score("json_valid", '{"category": "other"}', context=ctx) == 0.0
    assert score("json_valid", '{"priority": 2}', context=ctx) == 0.0
    assert score("json_valid", "not json at all", context=ctx) == 0.0
    fenced = '```json\n{"category": "bug"}\n```'
    assert score("json_valid", fenced, context=ctx) == 1.0
    assert score("json_valid", fenced, context=ctx, strict=True) == 0.0


def test_json_valid_without_a_schema_only_parses() -> None:
    assert score("json_valid", "[1, 2]") == 1.0
    assert score("json_valid", "{oops") == 0.0


def test_json_fields_scores_each_reference_leaf() -> None:
    reference = '{"category": "billing", "priority": 2, "tags": ["a", "b"]}'
    answer = '{"category": "Billing", "priority": 3, "tags": ["a", "c"]}'
    # category right (normalised), priority wrong, tags[0] right, tags[1] wrong
    assert score("json_fields", answer, reference) == 0.5
    assert score("json_fields", answer, reference, fields=["category"]) == 1.0
    assert score("json_fields", "no json", reference) == 0.0
    assert score("json_fields", answer, "plain text reference") is None


def test_retrieval_recall_matches_gold_sources_by_name() -> None:
    record = {"metadata": {"kb_refs": ["password-reset.md", "two-factor-authentication"]}}
    hits = [{"doc_id": "kb:guides/password-reset.md", "text": "..."}, {"doc_id": "kb:sso.md"},
            {"source": "kb", "doc_id": "kb:two-factor-authentication.md"}]
    rag = MetricContext(retrieved=hits, retrieval_enabled=True)
    assert score("retrieval_recall", "", record=record, context=rag) == 1.0
    assert score("retrieval_recall", "", record=record, context=rag, k=2) == 0.5
    assert score("retrieval_recall", "", record=record, context=MetricContext()) is None
    assert score("retrieval_recall", "", record={"metadata": {}}, context=rag) is None


def test_groundedness_counts_sentences_supported_by_retrieved_text() -> None:
    hits = [{"text": "Reset links expire after 30 minutes. Admins can force a reset."}]
    rag = MetricContext(retrieved=hits, retrieval_enabled=True)
    answer = "Reset links expire after 30 minutes. You will receive a free pony."
    assert score("groundedness", answer, context=rag) == 0.5
    assert score("groundedness", "Admins can force a reset.", context=rag) == 1.0
    assert score("groundedness", answer, context=MetricContext()) is None
    nothing = MetricContext(retrieved=[], retrieval_enabled=True)
    assert score("groundedness", answer, context=nothing) == 0.0


@pytest.mark.slow
def test_semantic_similarity_ranks_a_paraphrase_above_an_unrelated_answer() -> None:
    metric = metrics.create(MetricConfig(name="semantic_similarity"))
    ref = "To reset your password, open Settings and choose Security."
    samples = [metrics.Sample(p, ref, {}, MetricContext()) for p in (
        ref, "Go to Settings, then Security, to change your password.",
        "Invoices are emailed on the first day of every month.")]
    same, paraphrase, unrelated = metric.score_batch(samples)
    assert same == pytest.approx(1.0, abs=1e-3)
    assert paraphrase > unrelated + 0.2
    assert 0.0 <= unrelated < 0.5


@pytest.mark.parametrize(("reply", "expected"), [
    ("Score: 4", 4.0),
    ("The answer is correct but terse.\n**Score:** 5", 5.0),
    ('{"score": 2, "reason": "wrong"}', 2.0),
    ("I would rate it 3/5.", 3.0),
    ("3 out of 5", 3.0),
    ("Good answer. 4", 4.0),
    ("It lists 2 steps and 3 options", None),
    ("Score: 9", None),
    ("no grade here", None),
])
def test_judge_score_parser_accepts_common_formats(reply: str, expected: float | None) -> None:
    assert parse_score(reply, scale=5) == expected


def test_judge_prompt_holds_question_reference_answer_and_rubric() -> None:
    chat = judge_messages("How do I reset?", "Use Settings.", "Settings > Security", "be strict", 5)
    text = chat[-1]["content"]
    for part in ("How do I reset?", "Use Settings.", "Settings > Security", "be strict",
                 "Score: N"):
        assert part in text
    without = judge_messages("q", "a", None, "r", 5)[-1]["content"]
    assert "Reference answer" not in without


@pytest.mark.slow
def test_llm_judge_grades_answers_with_a_real_engine(tmp_path) -> None:
    from tuneloop.engines.testing import fixed_answer_llama
    from tuneloop.engines.transformers import TransformersEngine
    from tuneloop.evaluate.metrics import Sample
    from tuneloop.evaluate.metrics.judge import LLMJudge

    samples = [Sample(answer, "Settings > Security",
                      {"messages": [{"role": "user", "content": "How do I reset?"}]},
                      MetricContext()) for answer in ("Use Settings.", "Bananas.", "")]
    # a real tiny model that replies "4" to anything: graded 4 on 1..5, i.e. (4 - 1) / 4
    grader = LLMJudge(engine=TransformersEngine(fixed_answer_llama(tmp_path, "4")),
                      max_tokens=1)
    assert grader.score_batch(samples) == [0.75, 0.75, 0.75]
    assert grader.unparsed == 0
    # one that replies "?" gives no usable grade: not scored, and counted
    mute = LLMJudge(engine=TransformersEngine(fixed_answer_llama(tmp_path, "?")), max_tokens=1)
    assert mute.score_batch(samples) == [None, None, None]
    assert mute.unparsed == 3


def test_a_registered_plugin_metric_is_created_by_name() -> None:
    @register
    class Shouting(Metric):
        name = "shouting_test"

        def __init__(self, *, min_length: int = 1) -> None:
            self.min_length = min_length

        def score(self, prediction, reference, record, context):
            return float(prediction.isupper() and len(prediction) >= self.min_length)

    assert score("shouting_test", "HELLO") == 1.0
    assert score("shouting_test", "HI", min_length=3) == 0.0


def test_unknown_metric_or_parameter_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'rouge_x'.*rouge_l"):
        metrics.create(MetricConfig(name="rouge_x"))
    with pytest.raises(ConfigError, match=r"no parameter 'stemming'.*allowed: stemmer"):
        metrics.create(MetricConfig(name="rouge_l", params={"stemming": True}))
