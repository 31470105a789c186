"""Knowledge-base loading: files on disk → :class:`Document` values.

Contract
--------
``load_documents(path)`` accepts a folder (searched recursively, files in sorted relative-path order) or a
single file, and returns one :class:`Document` per article or FAQ entry:

* ``.md``  — an article; the first ``# Title`` heading is the title (else the file stem). A leading YAML front
  matter block (``---`` … ``---``) is skipped.
* ``.txt`` — an article; the first non-empty line is the title.
* ``.json`` — a FAQ: a list of objects with ``question``/``answer`` keys (``title``/``body`` and ``q``/``a``
  are accepted too), or an object holding such a list under ``faqs`` or ``items``.
* ``.jsonl`` — a FAQ, one such object per line (blank lines are ignored).
* ``.csv`` — a FAQ with ``question``/``answer`` columns (header matched case-insensitively; the same aliases).

FAQ entries get ``doc_id = "<stem>:<n>"`` (``n`` = 1-based entry number) and ``title`` = the question;
articles get ``doc_id = <stem>`` (the relative path without suffix if two files share a stem).
``Document.line`` is the 1-based file line where ``text`` starts (FAQ: where the entry is).

Files with other extensions, and hidden files, are skipped with a logged warning; ``README.md`` is an article
like any other. Any malformed file (empty, not UTF-8, bad JSON, missing columns or fields) raises
:class:`retrieval.errors.KnowledgeBaseError` naming the file and line and saying what to do; so does a path
that does not exist or holds no loadable file. Nothing is cached: call again to re-read.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import KnowledgeBaseError

log = logging.getLogger(__name__)

#: File suffixes the loader understands.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".md", ".txt", ".json", ".jsonl", ".csv")

#: Accepted (question, answer) key pairs of FAQ entries, in order of preference.
FAQ_KEY_PAIRS: tuple[tuple[str, str], ...] = (("question", "answer"), ("title", "body"), ("q", "a"))
#: Keys of a JSON object that may hold the list of FAQ entries.
FAQ_LIST_KEYS: tuple[str, ...] = ("faqs", "items")

_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Document:
    """One article or FAQ entry of the knowledge base, before chunking."""

    doc_id: str
    title: str
    text: str
    source: str
    line: int = 1


def iter_kb_files(path: Path) -> list[Path]:
    """The files under ``path`` that :func:`load_documents` reads, in a stable (sorted) order.

    Raises :class:`KnowledgeBaseError` when ``path`` does not exist. Unknown suffixes are skipped
    (logged at warning level); hidden files and folders are skipped silently.
    """
    path = Path(path)
    if not path.exists():
        raise KnowledgeBaseError(
            f"Knowledge base {path} does not exist. Create it, or point kb_path (MOMENTS_KB_PATH) at "
            "a folder or file of .md, .txt, .json, .jsonl or .csv documents."
        )
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise KnowledgeBaseError(
                f"{path}: unsupported knowledge-base file type {path.suffix or '(none)'!r}; "
                f"use one of {', '.join(SUPPORTED_SUFFIXES)}."
            )
        return [path]
    files: list[Path] = []
    for p in sorted(path.rglob("*"), key=lambda q: q.relative_to(path).as_posix()):
        rel = p.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix.lower() not in SUPPORTED_SUFFIXES:
            log.warning("Skipping %s: unsupported file type (use %s)", p, ", ".join(SUPPORTED_SUFFIXES))
            continue
        files.append(p)
    return files


def kb_files(path: Path) -> list[tuple[Path, str]]:
    """Every supported file under ``path`` with its base doc id: its stem, or its path relative to the folder (no
    suffix) when two files share a stem. ``KnowledgeBaseError`` when there is none."""
    path = Path(path)
    files = iter_kb_files(path)
    if not files:
        raise KnowledgeBaseError(
            f"Knowledge base {path} holds no .md, .txt, .json, .jsonl or .csv file. Add documents to it, "
            "or point kb_path (MOMENTS_KB_PATH) at the folder that has them."
        )
    root = path if path.is_dir() else path.parent
    stems = Counter(f.stem for f in files)
    return [(f, f.stem if stems[f.stem] == 1 else f.relative_to(root).with_suffix("").as_posix()) for f in files]


def load_documents(path: Path) -> list[Document]:
    """Load every supported document under ``path`` (a folder, recursively, or a single file)."""
    files = kb_files(path)
    docs: list[Document] = []
    for f, base_id in files:
        docs.extend(load_file(f, base_id=base_id))
    log.info("Loaded %d documents from %d files under %s", len(docs), len(files), path)
    return docs


def load_file(path: Path, base_id: str | None = None) -> list[Document]:
    """Load one file; ``base_id`` (default: the stem) prefixes its doc ids."""
    path = Path(path)
    base_id = base_id or path.stem
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".md":
        return [_parse_markdown(path, text, base_id)]
    if suffix == ".txt":
        return [_parse_text(path, text, base_id)]
    if suffix == ".json":
        return _faq_documents(path, base_id, _parse_json(path, text))
    if suffix == ".jsonl":
        return _faq_documents(path, base_id, _parse_jsonl(path, text))
    if suffix == ".csv":
        return _faq_documents(path, base_id, _parse_csv(path, text))
    raise KnowledgeBaseError(f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}.")


# --------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise KnowledgeBaseError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}). "
            "Re-save the file as UTF-8."
        ) from None
    if not text.strip():
        raise KnowledgeBaseError(f"{path}, line 1: the file is empty. Add content to it or delete it.")
    return text


# ------------------------------------------------------------------------------------------ articles


def _skip_front_matter(lines: list[str]) -> int:
    """Index of the first line after a leading ``---`` YAML block (0 when there is none)."""
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return i + 1
    return 0


def _parse_markdown(path: Path, text: str, doc_id: str) -> Document:
    lines = text.splitlines()
    start = _skip_front_matter(lines)
    lines[:start] = [""] * start
    title = path.stem
    in_fence = False
    for i in range(start, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or not stripped.startswith("#"):
            continue
        m = _H1.match(stripped)
        if m:  # the first heading is the title: blank its line so that line numbers stay true
            title, lines[i] = m.group(1).strip(), ""
        break
    return _body_document(doc_id, title, lines, path)


def _body_document(doc_id: str, title: str, lines: list[str], path: Path) -> Document:
    """A document whose text is ``lines`` without leading/trailing blank lines; ``line`` = where it starts."""
    lead = 0
    while lead < len(lines) and not lines[lead].strip():
        lead += 1
    return Document(doc_id, title, "\n".join(lines[lead:]).rstrip(), str(path), lead + 1)


def _parse_text(path: Path, text: str, doc_id: str) -> Document:
    lines = text.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.strip())  # the file is not blank (checked on read)
    title = lines[first].strip()
    lines[: first + 1] = [""] * (first + 1)
    return _body_document(doc_id, title, lines, path)


# -------------------------------------------------------------------------------------------- FAQs

# A FAQ entry as parsed: (question, answer, line).
_Entry = tuple[str, str, int]


def _faq_documents(path: Path, base_id: str, entries: list[_Entry]) -> list[Document]:
    if not entries:
        raise KnowledgeBaseError(f"{path}, line 1: no FAQ entries found. Add question/answer entries.")
    return [Document(f"{base_id}:{n}", q, a, str(path), line) for n, (q, a, line) in enumerate(entries, 1)]


def _entry_from_object(path: Path, obj: object, line: int, what: str) -> _Entry:
    """Turn one JSON object into (question, answer, line), or raise naming ``what`` and ``line``."""
    if not isinstance(obj, dict):
        raise KnowledgeBaseError(
            f"{path}, line {line}: {what} is a {type(obj).__name__}, expected an object with "
            '"question" and "answer" keys.'
        )
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for qk, ak in FAQ_KEY_PAIRS:
        if qk in lowered or ak in lowered:
            q, a = lowered.get(qk), lowered.get(ak)
            for key, val in ((qk, q), (ak, a)):
                if not isinstance(val, str) or not val.strip():
                    raise KnowledgeBaseError(
                        f'{path}, line {line}: {what} has no non-empty "{key}" string. '
                        f'Give every entry both "{qk}" and "{ak}".'
                    )
            return q.strip(), a.strip(), line
    raise KnowledgeBaseError(
        f"{path}, line {line}: {what} has keys {sorted(obj)}; expected "
        + " or ".join(f'"{q}"/"{a}"' for q, a in FAQ_KEY_PAIRS)
        + "."
    )


def _json_error(path: Path, e: json.JSONDecodeError, line_offset: int = 0) -> KnowledgeBaseError:
    return KnowledgeBaseError(
        f"{path}, line {e.lineno + line_offset}, column {e.colno}: invalid JSON ({e.msg}). "
        "Fix the syntax there (a missing comma or quote is the usual cause)."
    )


def _parse_json(path: Path, text: str) -> list[_Entry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _json_error(path, e) from None
    items = data
    if isinstance(data, dict):
        key = next((k for k in FAQ_LIST_KEYS if isinstance(data.get(k), list)), None)
        if key is None:
            raise KnowledgeBaseError(
                f"{path}, line 1: expected a list of question/answer objects, or an object with a "
                f"{' or '.join(repr(k) for k in FAQ_LIST_KEYS)} list; found keys {sorted(data)}."
            )
        items = data[key]
    if not isinstance(items, list):
        raise KnowledgeBaseError(
            f"{path}, line 1: expected a list of question/answer objects, found a {type(items).__name__}."
        )
    lines = _locate_items(text, items)
    return [_entry_from_object(path, obj, ln, f"entry {i}") for i, (obj, ln) in enumerate(zip(items, lines), 1)]


def _locate_items(text: str, items: list) -> list[int]:
    """Best-effort 1-based line of each item: where its first string value appears, searching in order."""
    lines, pos, line = [], 0, 1
    for obj in items:
        first = next((v for v in obj.values() if isinstance(v, str)), None) if isinstance(obj, dict) else None
        found = -1
        if first is not None:
            for enc in (json.dumps(first, ensure_ascii=False), json.dumps(first)):
                found = text.find(enc, pos)
                if found >= 0:
                    break
        if found >= 0:
            line += text.count("\n", pos, found)
            pos = found
        lines.append(line)
    return lines


def _parse_jsonl(path: Path, text: str) -> list[_Entry]:
    entries = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise KnowledgeBaseError(
                f"{path}, line {n}, column {e.colno}: invalid JSON ({e.msg}). Each line must be one "
                'JSON object such as {"question": "...", "answer": "..."}.'
            ) from None
        entries.append(_entry_from_object(path, obj, n, "the entry"))
    return entries


def _parse_csv(path: Path, text: str) -> list[_Entry]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as e:
        raise KnowledgeBaseError(f"{path}, line 1: unreadable CSV header ({e}).") from None
    cols = [h.strip().lower() for h in header]
    pair = next(((q, a) for q, a in FAQ_KEY_PAIRS if q in cols and a in cols), None)
    if pair is None:
        raise KnowledgeBaseError(
            f"{path}, line 1: the CSV header has columns {[h.strip() for h in header]}; it needs a "
            '"question" and an "answer" column (case-insensitive). Rename the header.'
        )
    qi, ai = cols.index(pair[0]), cols.index(pair[1])
    entries = []
    for row in _csv_rows(path, reader):
        line, cells = row
        if not any(c.strip() for c in cells):
            continue
        q = cells[qi].strip() if qi < len(cells) else ""
        a = cells[ai].strip() if ai < len(cells) else ""
        if not q or not a:
            missing = pair[0] if not q else pair[1]
            raise KnowledgeBaseError(
                f'{path}, line {line}: the row has no "{missing}". Fill it in or delete the row '
                "(quote values that contain commas)."
            )
        entries.append((q, a, line))
    return entries


def _csv_rows(path: Path, reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Rows with the file line each starts on (csv.reader's line_num is where a row ends)."""
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise KnowledgeBaseError(f"{path}, line {reader.line_num}: malformed CSV ({e}).") from None
        yield start, cells
        start = reader.line_num + 1
