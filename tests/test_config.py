"""tuneloop.yaml validation: every mistake gets one message naming file, field, line and fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tuneloop.config import check_source_refs, load_config, parse_config
from tuneloop.errors import ConfigError
from tuneloop.project import starter_config

VALID = textwrap.dedent("""\
    version: 1
    task:
      name: support
      format: chat
    metrics:
      - name: rouge_l
        threshold: 0.3
        primary: true
    sources:
      - name: docs
        path: kb/
        kind: documents
        tier: 1
      - name: tickets
        path: tickets.jsonl
        tier: 2
    datasets:
      - name: support
        sources: [tickets]
    variants:
      - name: base
""")


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="tuneloop.yaml")
    return str(info.value)


def test_starter_config_is_valid() -> None:
    config = parse_config(starter_config())
    assert config.task.name == "my-task"
    assert config.primary_metric is not None and config.primary_metric.name == "rouge_l"


def test_valid_config_parses_to_typed_objects() -> None:
    config = parse_config(VALID)
    assert config.source("tickets").tier == 2
    assert config.dataset("support").split.train == 0.8
    assert config.privacy.retention_days == {1: 365, 2: 30}


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        # 1. a tier that does not exist, with its field path and line
        (
            VALID.replace("tier: 2", "tier: 3"),
            ["tuneloop.yaml:16:", "sources[1].tier", "found 3", "allowed: 1 or 2"],
        ),
        # 2. a typo in a field name, with a suggestion
        (
            VALID.replace("  format: chat", "  formt: chat"),
            ["task.formt", "unknown field 'formt'", "did you mean 'format'"],
        ),
        # 3. a required field missing
        (
            VALID.replace("  name: support\n  format", "  format"),
            ["task.name", "required field is missing"],
        ),
        # 5. a bad enum value
        (
            VALID.replace("format: chat", "format: xml"),
            ["task.format", "found 'xml'", "'chat', 'text' or 'json'"],
        ),
        # 6. json format without a schema
        (VALID.replace("format: chat", "format: json"), ["task", "needs a json_schema"]),
        # 7. a split that does not add up
        (
            VALID.replace(
                "sources: [tickets]",
                "sources: [tickets]\n    split: {train: 0.9, validation: 0.2, test: 0.1}",
            ),
            ["datasets[0].split", "must add up to 1.0", "found 1.2"],
        ),
        # 8. a name with characters that break paths and URLs
        (VALID.replace("name: base", "name: ../base"), ["variants[0].name", "found '../base'"]),
        # 9. a wrong type
        (
            VALID.replace("threshold: 0.3", "threshold: high"),
            ["metrics[0].threshold", "found 'high'"],
        ),
        # 10. the same source declared twice
        (VALID.replace("name: tickets", "name: docs"), ["sources[1].name", "declared twice"]),
        # 11. a negative latency budget
        (VALID + "latency:\n  p95_ms: -5\n", ["latency.p95_ms", "greater than 0", "found -5"]),
        # 12. two primary metrics
        (
            VALID.replace(
                "primary: true", "primary: true\n  - name: exact_match\n    primary: true"
            ),
            ["only one metric may be primary"],
        ),
        # 13. overlap not smaller than the chunk
        (
            VALID + "knowledge_base:\n  chunk_tokens: 64\n  overlap_tokens: 64\n",
            ["knowledge_base", "overlap_tokens must be smaller"],
        ),
        # 14. retention of zero days
        (
            VALID + "privacy:\n  retention_days: {2: 0}\n",
            ["privacy.retention_days", "at least 1 day"],
        ),
        # 15. an unknown top-level section
        (VALID + "trainer: {}\n", ["trainer", "unknown field", "did you mean 'training'"]),
    ],
)
def test_malformed_config_gets_one_clear_message(broken: str, expected: list[str]) -> None:
    message = error_of(broken)
    assert message.startswith("invalid configuration")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "Traceback" not in message


def test_unknown_source_names_field_line_and_both_registries() -> None:
    # Checked at use, not parse: `tuneloop data add` may have registered the name in the store.
    text = VALID.replace("sources: [tickets]", "sources: [tikets]")
    config = parse_config(text)
    with pytest.raises(ConfigError) as info:
        check_source_refs(config, ["faq"], text=text)
    message = str(info.value)
    for fragment in ("tuneloop.yaml:19:", "datasets[0].sources[0]", "unknown source 'tikets'",
                     "did you mean 'tickets'", "declared in tuneloop.yaml: docs, tickets",
                     "registered with `tuneloop data add`: faq"):
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    check_source_refs(config, ["tikets"], text=text)  # registered with `data add`: accepted


def test_yaml_syntax_error_names_line_and_column() -> None:
    message = error_of("task:\n  name: x\n  description: [unclosed\n")
    assert message.startswith("tuneloop.yaml:4:1: YAML syntax error") or message.startswith(
        "tuneloop.yaml:3:"
    ), message
    assert "YAML syntax error" in message


def test_top_level_list_is_refused() -> None:
    assert "top level must be a mapping" in error_of("- a\n- b\n")


def test_empty_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "tuneloop.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "is empty" in str(info.value) and "tuneloop init" in str(info.value)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml: no such file" in str(info.value)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tuneloop.yaml"
    path.write_bytes(b"task:\n  name: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not UTF-8" in str(info.value)


def test_several_problems_are_all_listed() -> None:
    message = error_of(VALID.replace("tier: 2", "tier: 7").replace("format: chat", "format: xml"))
    assert "2 problems" in message
    assert "sources[1].tier" in message and "task.format" in message
