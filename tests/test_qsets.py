"""The development question sets (data/dev/*) pass bench/check_qsets, and the checker catches each kind of fault.

Pure text: no model, no index, no network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.check_qsets import check_set, main

ROOT = Path(__file__).resolve().parents[1]
DEV_SETS = sorted(p for p in (ROOT / "data" / "dev").glob("*") if (p / "questions.jsonl").is_file())

ARTICLE = """# Parcel Lockers

Our lockers hold parcels for you.

## Opening hours

- **Lockers:** open 24/7. Parcels are held for 5 days.

## Collecting

Scan the code we email you.

## Fees

Collection is free.
"""


def _set(tmp_path: Path, questions: list[dict]) -> Path:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "lockers.md").write_text(ARTICLE, encoding="utf-8")
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    return tmp_path


def _good() -> list[dict]:
    return [{"id": "x001", "question": "how long will you keep my parcel?", "article": "lockers",
             "answer": "Parcels are held for 5 days.", "facts": ["5 days"], "answerable": True},
            {"id": "x002", "question": "what's the capital of peru?", "article": None, "answer": None, "facts": [],
             "answerable": False}]


@pytest.mark.parametrize("folder", DEV_SETS, ids=[p.name for p in DEV_SETS])
def test_dev_set_is_sound(folder):
    s = check_set(folder / "kb", folder / "questions.jsonl")
    assert s.problems == []
    assert s.articles >= 18 and s.answerable >= 3 * s.articles and s.unanswerable >= 10


def test_there_are_dev_sets():
    assert {p.name for p in DEV_SETS} >= {"ledgerly", "pawpost"}


def test_a_sound_set_passes(tmp_path):
    folder = _set(tmp_path, _good())
    s = check_set(folder / "kb", folder / "questions.jsonl")
    assert (s.problems, s.articles, s.answerable, s.unanswerable) == ([], 1, 1, 1)
    assert main([str(tmp_path)]) == 0


@pytest.mark.parametrize("change, expected", [
    (lambda q: q[0].update(facts=["6 days"]), "not in kb/lockers.md"),
    (lambda q: q[0].update(answer="We hold them for a while."), "not in the answer"),
    (lambda q: q[0].update(article="missing"), "no article kb/missing.md"),
    (lambda q: q[0].update(question="parcel lockers: how long do you keep it?"), "title or heading 'Parcel Lockers'"),
    (lambda q: q[0].update(question="what are your opening hours"), "title or heading 'Opening hours'"),
    (lambda q: q[0].update(facts=[]), "0 facts"),
    (lambda q: q[1].update(article="lockers"), "must be null"),
    (lambda q: q[0].pop("answerable"), "keys"),
    (lambda q: q[1].update(id="x001"), "duplicate id"),
    (lambda q: q[1].update(id="7"), "id should be"),
    (lambda q: q.append(dict(q[1], id="x003")), "repeated question"),
    (lambda q: q.__delitem__(0), "kb/lockers.md: no question"),
])
def test_each_fault_is_reported(tmp_path, change, expected):
    questions = _good()
    change(questions)
    folder = _set(tmp_path, questions)
    problems = check_set(folder / "kb", folder / "questions.jsonl").problems
    assert any(expected in p for p in problems), problems
    assert main([str(folder)]) == 1


def test_article_format_faults(tmp_path):
    folder = _set(tmp_path, _good())
    (folder / "kb" / "lockers.md").write_text("Lockers\n\n## Only one\n\n<b>bold</b> and `<ok>`\n", encoding="utf-8")
    problems = check_set(folder / "kb", folder / "questions.jsonl").problems
    assert any("not '# Title'" in p for p in problems)
    assert any("1 '## ' sections" in p for p in problems)
    assert sum("HTML tag" in p for p in problems) == 1  # the code span is allowed
