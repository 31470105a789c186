"""Checks a knowledge-base question set: the articles' format and every question against its article.

Run: ``python -m bench.check_qsets [FOLDER ...]`` (default: every ``data/dev/*`` folder and ``data/eval/brightwave``).
A folder holds ``kb/`` (one Markdown article per file; the stem is the article id) and ``questions.jsonl``. For the
default store, whose questions live elsewhere, pass ``--kb data/kb --questions data/eval/kb_questions.jsonl``.

Contract: :func:`check_set` returns a list of problems (strings naming the file, line or question); an empty list
means the set is sound. It reads text only (no model, no index). The command prints one summary line per set, then
its problems, and exits 1 when any set has a problem. What is checked:

* every line of ``questions.jsonl`` is a JSON object with exactly the keys ``id``, ``question``, ``article``,
  ``answer``, ``facts``, ``answerable``, of the right types; ids are unique and look like a letter and three digits;
  no question is repeated;
* answerable: ``article`` names an existing ``kb/<article>.md``; ``answer`` is not empty; ``facts`` has
  ``min_facts``..``max_facts`` non-empty strings, each in the article's text and in the answer (case-insensitive
  substring, as the benches judge replies);
* unanswerable: ``article`` and ``answer`` are null and ``facts`` is empty;
* no question contains any article's title, or any multi-word section heading, verbatim (case-insensitive);
* every article has at least one question; each article starts with ``# Title``, has 3–5 ``## `` sections and no
  HTML tag outside a code span.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"id", "question", "article", "answer", "facts", "answerable"}
_ID = re.compile(r"^[a-z]\d{3}$")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?/?>")
_CODE = re.compile(r"`[^`]*`")


@dataclass
class Article:
    """One Markdown article: its id (file stem), title, section headings and full text."""

    id: str
    title: str
    headings: list[str]
    text: str


@dataclass
class Summary:
    """Counts of one checked set and the problems found (empty when sound)."""

    name: str
    articles: int = 0
    answerable: int = 0
    unanswerable: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "OK" if not self.problems else f"{len(self.problems)} problem(s)"
        return (f"{self.name}: {self.articles} articles, {self.answerable} answerable + {self.unanswerable} "
                f"unanswerable questions: {verdict}")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def read_article(path: Path) -> tuple[Article, list[str]]:
    """The article in ``path`` and the problems of its format."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    problems = []
    title = lines[0][2:].strip() if lines and lines[0].startswith("# ") else ""
    if not title:
        problems.append(f"{path.name}: the first line is not '# Title'")
    headings = [ln[3:].strip() for ln in lines if ln.startswith("## ")]
    if not 3 <= len(headings) <= 5:
        problems.append(f"{path.name}: {len(headings)} '## ' sections (want 3-5)")
    for n, ln in enumerate(lines, 1):
        if _TAG.search(_CODE.sub("", ln)):
            problems.append(f"{path.name}:{n}: HTML tag outside a code span")
    return Article(path.stem, title, headings, text), problems


def _check_question(q: object, n: int, articles: dict[str, Article], phrases: list[str],
                    min_facts: int, max_facts: int) -> list[str]:
    if not isinstance(q, dict):
        return [f"line {n}: not a JSON object"]
    where = f"line {n} ({q.get('id')})"
    if set(q) != KEYS:
        return [f"{where}: keys {sorted(q)} (want {sorted(KEYS)})"]
    out = []
    if not isinstance(q["id"], str) or not _ID.match(q["id"]):
        out.append(f"{where}: id should be a letter and three digits")
    if not isinstance(q["question"], str) or not q["question"].strip():
        return out + [f"{where}: empty question"]
    if not isinstance(q["answerable"], bool):
        return out + [f"{where}: answerable is not true/false"]
    nq = _norm(q["question"])
    out += [f"{where}: the question contains the title or heading {p!r}" for p in phrases if _norm(p) in nq]
    if not q["answerable"]:
        if q["article"] is not None or q["answer"] is not None or q["facts"] != []:
            out.append(f"{where}: unanswerable, so article and answer must be null and facts empty")
        return out
    article = articles.get(q["article"]) if isinstance(q["article"], str) else None
    if article is None:
        return out + [f"{where}: no article kb/{q['article']}.md"]
    if not isinstance(q["answer"], str) or not q["answer"].strip():
        return out + [f"{where}: empty answer"]
    facts = q["facts"]
    if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
        return out + [f"{where}: facts must be a list of non-empty strings"]
    if not min_facts <= len(facts) <= max_facts:
        out.append(f"{where}: {len(facts)} facts (want {min_facts}-{max_facts})")
    for f in facts:
        if _norm(f) not in _norm(article.text):
            out.append(f"{where}: fact {f!r} not in kb/{article.id}.md")
        if _norm(f) not in _norm(q["answer"]):
            out.append(f"{where}: fact {f!r} not in the answer")
    return out


def check_set(kb: Path, questions: Path, min_facts: int = 1, max_facts: int = 2) -> Summary:
    """Check the articles under ``kb`` and the questions in ``questions`` (JSON lines); see the module docstring."""
    shown = (questions.parent if questions.name == "questions.jsonl" else questions).resolve()
    s = Summary(name=str(shown.relative_to(ROOT)) if shown.is_relative_to(ROOT) else str(shown))
    articles: dict[str, Article] = {}
    for path in sorted(kb.glob("*.md")):
        article, problems = read_article(path)
        articles[article.id] = article
        s.problems += problems
    s.articles = len(articles)
    if not articles:
        s.problems.append(f"{kb}: no articles")
    if not questions.is_file():
        s.problems.append(f"{questions}: missing")
        return s
    phrases = sorted({a.title for a in articles.values() if a.title}
                     | {h for a in articles.values() for h in a.headings if len(h.split()) > 1})
    seen_ids: set[str] = set()
    seen_questions: set[str] = set()
    covered: set[str] = set()
    for n, line in enumerate(questions.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            s.problems.append(f"line {n}: not JSON ({e.msg})")
            continue
        s.problems += _check_question(q, n, articles, phrases, min_facts, max_facts)
        if not isinstance(q, dict):
            continue
        if q.get("id") in seen_ids:
            s.problems.append(f"line {n}: duplicate id {q.get('id')}")
        seen_ids.add(q.get("id"))
        text = _norm(str(q.get("question")))
        if text in seen_questions:
            s.problems.append(f"line {n}: repeated question")
        seen_questions.add(text)
        if q.get("answerable") is True:
            s.answerable += 1
            covered.add(q.get("article"))
        elif q.get("answerable") is False:
            s.unanswerable += 1
    s.problems += [f"kb/{a}.md: no question" for a in sorted(set(articles) - covered)]
    return s


def default_folders() -> list[Path]:
    """Every ``data/dev/*`` folder with a question set, and ``data/eval/brightwave``."""
    dev = sorted(p for p in (ROOT / "data" / "dev").glob("*") if (p / "questions.jsonl").is_file())
    return dev + [ROOT / "data" / "eval" / "brightwave"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="*", type=Path, help="folders holding kb/ and questions.jsonl")
    p.add_argument("--kb", type=Path, help="an article folder (with --questions), e.g. data/kb")
    p.add_argument("--questions", type=Path, help="the questions for --kb, e.g. data/eval/kb_questions.jsonl")
    p.add_argument("--min-facts", type=int, default=1)
    p.add_argument("--max-facts", type=int, default=2)
    args = p.parse_args(argv)
    sets = [(f / "kb", f / "questions.jsonl") for f in args.folders]
    if args.kb or args.questions:
        if not (args.kb and args.questions):
            p.error("--kb and --questions go together")
        sets.append((args.kb, args.questions))
    if not sets:
        sets = [(f / "kb", f / "questions.jsonl") for f in default_folders()]
    bad = False
    for kb, questions in sets:
        s = check_set(kb, questions, args.min_facts, args.max_facts)
        print(s.line())
        for problem in s.problems:
            print(f"  - {problem}")
        bad |= bool(s.problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
