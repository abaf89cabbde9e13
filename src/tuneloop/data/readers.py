"""Readers: rows from JSONL, CSV and Parquet files, documents from folders, one at a time.

A reader never loads a whole file. A row it cannot read comes out as a `Row` with `error` set and
its file and line, so the build can reject it with a reason instead of dropping it silently; a file
that cannot be read at all (missing, empty, not Parquet) raises `DataError` naming it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.errors import DataError

RECORD_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
                  ".parquet": "parquet", ".pq": "parquet"}
DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".html", ".htm", ".pdf")
EXCERPT_CHARS = 200
# Deeper than any real record (chat messages are 3 levels); every later step may recurse on it.
MAX_DEPTH = 64


@dataclass
class Row:
    """One row of a source: its data, or why it could not be read, and where it is."""

    path: str
    line: int
    data: dict[str, Any] | None = None
    error: str | None = None
    excerpt: str = ""


@dataclass(frozen=True)
class Document:
    """One knowledge-base document as plain text."""

    path: Path
    relpath: str
    title: str
    text: str
    format: str


def detect_format(path: Path, declared: str = "auto") -> str:
    """`jsonl`, `csv`, `parquet` or `documents` for a path (a folder holds documents)."""
    if declared != "auto":
        return declared
    if path.is_dir():
        return "documents"
    fmt = RECORD_FORMATS.get(path.suffix.lower())
    if fmt is None:
        if path.suffix.lower() in DOCUMENT_SUFFIXES:
            return "documents"
        raise DataError(f"cannot tell the format of {path.name!r} from its extension",
                        path=str(path), hint="use .jsonl, .csv, .parquet, or a folder of documents "
                        "(.md, .txt, .html, .pdf), or set `format:` on the source")
    return fmt


def iter_rows(path: Path, fmt: str = "auto") -> Iterator[Row]:
    """Every row of a records file, in file order, each with its line (Parquet: row) number."""
    if not path.exists():
        raise DataError("no such file", path=str(path), hint="check the source's path")
    if path.is_dir():
        raise DataError("is a folder, not a records file", path=str(path),
                        hint="add folders of documents with `--kind documents`")
    if path.stat().st_size == 0:
        raise DataError("the file is empty: there is nothing to build from", path=str(path))
    fmt = detect_format(path, fmt)
    readers = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}
    if fmt not in readers:
        raise DataError(f"format {fmt!r} holds documents, not records", path=str(path))
    yield from readers[fmt](path)


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, (f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} "
                      "(save the file as UTF-8)")


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _jsonl_rows(path: Path) -> Iterator[Row]:
    name = str(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            text, problem = _decode(raw)
            if text is None:
                yield Row(name, number, error=problem,
                          excerpt=_excerpt(raw.decode("utf-8", "replace")))
                continue
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Row(name, number, error=f"broken JSON: {exc.msg} (column {exc.colno})",
                          excerpt=_excerpt(text))
                continue
            except RecursionError:
                yield Row(name, number, error=_too_deep(), excerpt=_excerpt(text))
                continue
            if too_deep(data):
                yield Row(name, number, error=_too_deep(), excerpt=_excerpt(text))
                continue
            if not isinstance(data, dict):
                yield Row(name, number, error=f"expected a JSON object, found "
                          f"{type(data).__name__}", excerpt=_excerpt(text))
                continue
            yield Row(name, number, data=data)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects nest deeper than `limit` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list | tuple))
    return False


def _too_deep() -> str:
    return (f"nested more than {MAX_DEPTH} levels deep (a record is an object of messages or "
            "input/output text)")


def _csv_rows(path: Path) -> Iterator[Row]:
    name = str(path)
    bad_lines: dict[int, tuple[str, str]] = {}

    def lines() -> Iterator[str]:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                text, problem = _decode(raw)
                if text is None:
                    # Hand csv an empty line so it keeps counting; report the line ourselves.
                    bad_lines[number] = (problem or "", raw.decode("utf-8", "replace"))
                    yield "\n"
                else:
                    yield text

    reader = csv.reader(lines())
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise DataError(f"cannot read the CSV header: {exc}", path=name, line=1) from None
    if not any(h.strip() for h in header):
        raise DataError("the first line must name the columns (e.g. input,output)", path=name,
                        line=1)
    header = [h.strip() for h in header]
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield Row(name, start, error=f"unreadable CSV: {exc}")
            continue
        for number in sorted(n for n in bad_lines if n <= reader.line_num):
            problem, text = bad_lines.pop(number)
            yield Row(name, number, error=problem, excerpt=_excerpt(text))
        if not cells or not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield Row(name, start, error=f"row has {len(cells)} fields but the header names "
                      f"{len(header)}", excerpt=_excerpt(",".join(cells)))
            continue
        yield Row(name, start, data=dict(zip(header, cells, strict=True)))
    for number in sorted(bad_lines):
        problem, text = bad_lines.pop(number)
        yield Row(name, number, error=problem, excerpt=_excerpt(text))


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=name) from None
    number = 0
    for batch in parquet.iter_batches(batch_size=2048):
        for data in batch.to_pylist():
            number += 1
            if too_deep(data):
                yield Row(name, number, error=_too_deep())
                continue
            yield Row(name, number, data=data)


def iter_documents(path: Path) -> Iterator[Document]:
    """Every document (Markdown, text, HTML, PDF) under a folder, in path order, as plain text."""
    if not path.exists():
        raise DataError("no such file or folder", path=str(path))
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
    for file in files:
        relpath = file.name if path.is_file() else file.relative_to(path).as_posix()
        suffix = file.suffix.lower()
        if suffix == ".pdf":
            text, fmt = _pdf_text(file), "pdf"
        else:
            raw = file.read_bytes()
            decoded, problem = _decode(raw)
            if decoded is None:
                raise DataError(problem or "not UTF-8 text", path=str(file))
            if suffix in (".html", ".htm"):
                text, fmt = _html_text(decoded), "html"
            else:
                text, fmt = decoded, "markdown" if suffix in (".md", ".markdown") else "text"
        yield Document(path=file, relpath=relpath, title=_title(text, file), text=text, format=fmt)


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "footer"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _pdf_text(file: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(file))
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except (PdfReadError, OSError, ValueError) as exc:
        raise DataError(f"cannot read this PDF ({exc})", path=str(file)) from None


def _title(text: str, file: Path) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:120]
    return file.stem
