"""Readers: every bad input comes out as a row with its file, line and reason, never dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneloop.data.readers import iter_documents, iter_rows
from tuneloop.data.records import RecordInvalid, to_messages
from tuneloop.errors import DataError

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_broken_json_is_reported_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", [json.dumps(GOOD).encode(), b"", b'{"messages": [',
                                         json.dumps(GOOD).encode()])
    rows = list(iter_rows(path))
    assert [(r.line, r.error is None) for r in rows] == [(1, True), (3, False), (4, True)]
    assert rows[1].error.startswith("broken JSON")
    assert rows[1].path == str(path)


def test_bad_utf8_is_reported_with_its_line_and_the_rest_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", [json.dumps(GOOD).encode(), b'{"input": "caf\xe9"}',
                                         json.dumps(GOOD).encode()])
    rows = list(iter_rows(path))
    assert rows[1].line == 2 and "not UTF-8" in rows[1].error and "0xe9" in rows[1].error
    assert rows[2].data == GOOD


def test_json_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", [b"[1, 2]"])
    (row,) = iter_rows(path)
    assert row.error == "expected a JSON object, found list"


def test_empty_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jsonl: the file is empty"):
        list(iter_rows(path))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        list(iter_rows(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize(("row", "reason"), [
    ({"input": "question"}, "field 'output' is missing"),
    ({"input": "q", "output": 42}, "field 'output' must be text, found int"),
    ({"messages": "not json"}, "field 'messages' is not valid JSON"),
    ({"messages": {"role": "user"}}, "field 'messages' must be a list, found dict"),
    ({"messages": []}, "field 'messages' is empty"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role is 'bot'"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content is int, not text"),
    ({"messages": [{"role": "user", "content": "only a question"}]},
     "the last message must be the assistant's answer"),
    ({"text": "no conversation"}, "found fields: text"),
])
def test_records_with_missing_fields_or_wrong_types_say_why(row: dict, reason: str) -> None:
    with pytest.raises(RecordInvalid) as info:
        to_messages(row)
    assert reason in str(info.value)


def test_input_output_records_become_a_conversation() -> None:
    assert to_messages({"input": "2+2?", "output": "4", "system": "Be brief."}) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]


def test_csv_rows_carry_their_line_and_bad_rows_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'input,output,category\n"How do I\nreset it?",Use the link,account\n'
                     b"only,two\n\xff\xfe,bad,x\nq,a,billing\n")
    rows = list(iter_rows(path))
    assert rows[0].line == 2 and rows[0].data == {"input": "How do I\nreset it?",
                                                  "output": "Use the link", "category": "account"}
    assert rows[1].line == 4 and rows[1].error == "row has 2 fields but the header names 3"
    assert rows[2].line == 5 and "not UTF-8" in rows[2].error
    assert rows[3].line == 6 and rows[3].data["category"] == "billing"


def test_parquet_rows_are_numbered_and_read_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"input": [f"q{i}" for i in range(3000)],
                             "output": [f"a{i}" for i in range(3000)]}), path)
    rows = list(iter_rows(path))
    assert len(rows) == 3000 and rows[-1].line == 3000 and rows[-1].data == {"input": "q2999",
                                                                            "output": "a2999"}


def test_a_file_that_is_not_parquet_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        list(iter_rows(path))


def test_documents_are_read_as_text_from_markdown_html_and_text(tmp_path: Path) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# Reset\n\nUse the link.")
    (tmp_path / "kb" / "b.html").write_text("<html><script>x()</script><h1>SSO</h1><p>Set up "
                                            "SAML.</p></html>")
    (tmp_path / "kb" / "c.txt").write_text("Plain notes")
    (tmp_path / "kb" / "skip.bin").write_bytes(b"\0")
    docs = list(iter_documents(tmp_path / "kb"))
    assert [(d.relpath, d.title) for d in docs] == [("a.md", "Reset"), ("b.html", "SSO"),
                                                    ("c.txt", "Plain notes")]
    assert "Set up" in docs[1].text and "x()" not in docs[1].text


def test_a_document_in_another_encoding_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "latin.md").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.md: not UTF-8"):
        list(iter_documents(tmp_path / "kb"))
