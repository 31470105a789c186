"""The shipped default answers right: the fact is in the reply, the citation points at a passage holding it, and
questions the knowledge base cannot answer are handed over.

The 20 answerable questions are every fifth answerable question of ``data/eval/kb_questions.jsonl`` (a rule fixed
before the current adapter was evaluated, so the set is not picked to pass); the 5 unanswerable ones are the first 5
of that file. These questions are evaluation data: nothing is trained or tuned on them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.training.data import ABSTAIN_RE

pytestmark = pytest.mark.slow

QUESTIONS = Path(__file__).resolve().parent.parent / "data" / "eval" / "kb_questions.jsonl"


def _questions() -> tuple[list[dict], list[dict]]:
    qs = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    answerable = [q for q in qs if q["answerable"]]
    return [q for i, q in enumerate(answerable) if i % 5 == 0][:20], [q for q in qs if not q["answerable"]][:5]


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("–", "-").replace("—", "-").replace("**", "")).lower()


def _right_and_cited(result, facts: list[str]) -> bool:
    answer = _norm(result.answer)
    cited = [int(n) - 1 for n in re.findall(r"\[(\d+)\]", result.answer)]
    if not cited or not all(_norm(f) in answer for f in facts):
        return False
    return all(0 <= c < len(result.hits) and any(_norm(f) in _norm(result.hits[c].passage.text) for f in facts)
               for c in cited)


def test_the_default_states_the_fact_and_cites_its_passage(default_agent):
    answerable, _ = _questions()
    assert len(answerable) == 20
    results = {q["id"]: default_agent.ask(q["question"]) for q in answerable}
    right = [qid for qid, r in results.items()
             if _right_and_cited(r, next(q["facts"] for q in answerable if q["id"] == qid))]
    wrong = {qid: results[qid].answer for qid in results if qid not in right}
    # 17 with the shipped default (all-mpnet-base-v2 retrieval, two-sentence quotes picked by its answer selector),
    # 14 with the packaged MiniLM instead, 13 with the cosine pick before the selector, 2 with the v8 generator
    # (bench/results/answers.md, 2026-12-02; 17 again on 2026-12-03 with the selector refitted on five dev sets);
    # the goal is 15
    assert len(right) >= 15, f"{len(right)}/20 right and cited; wrong: {json.dumps(wrong, indent=1)}"


@pytest.mark.xfail(strict=True, reason=(
    "issue #10 is open: since quoting became the default (2026-12-02), 'who is the CEO of Northwind Goods?' gets "
    "a quote about business accounts (the store's name matches): above the retrieval threshold 0.35, and the answer "
    "selector's answerability model (fitted on data/dev) rates it above its threshold too; the other 4 are handed "
    "over. The previous default (v8) 'passed' it by writing 'A colleague ...'. strict: this marker must go once an "
    "answerability check catches it."))
def test_the_default_hands_over_when_the_knowledge_base_cannot_answer(default_agent):
    _, unanswerable = _questions()
    assert len(unanswerable) == 5
    replies = {q["question"]: default_agent.ask(q["question"]) for q in unanswerable}
    not_handed = {q: r.answer for q, r in replies.items() if not (r.abstained or ABSTAIN_RE.search(r.answer))}
    assert not not_handed, f"answered instead of handing over: {not_handed}"
