"""The facts training recipe and prompt versions: targets copy the answering sentence, cite the passage holding it,
keep held-out entities out, and an adapter is run with the prompt it was trained on."""

from __future__ import annotations

import json
import re

import pytest

from agent.generation.loading import adapter_prompt_version
from agent.generation.prompt import (
    PROMPT_VERSION,
    SYSTEM_PROMPTS,
    build_messages,
    passage_content,
)
from agent.settings import SHARED_DATA
from agent.training.data import ABSTAIN_REPLIES, entities, strip_citations
from retrieval.types import Passage

needs_shared = pytest.mark.skipif(not (SHARED_DATA / "dstc9" / "knowledge.json").is_file(),
                                  reason="needs ../shared/data (DSTC9/DSTC11)")


@pytest.fixture(scope="module")
def facts():
    from agent.training.facts import FactConfig, build_facts

    return build_facts(FactConfig(shared_data=SHARED_DATA))


@needs_shared
def test_answerable_targets_copy_a_sentence_of_the_cited_gold_passage(facts):
    answerable = [e for e in facts.train if e.source in ("facts", "facts-dialogue")]
    assert len(answerable) > 1500
    for e in answerable[:500]:
        cited = [int(n) - 1 for n in re.findall(r"\[(\d+)\]", e.answer)]
        assert cited == e.gold, e.answer
        gold_text = e.passages[e.gold[0]].text
        assert strip_citations(e.answer).strip() in gold_text, (e.answer, gold_text)
        assert "Good to know" not in e.answer  # headings are never targets


@needs_shared
def test_unanswerable_variants_hand_over_and_hide_the_answer(facts):
    unans = [e for e in facts.train if e.source == "facts-unanswerable"]
    assert unans and all(e.answer in ABSTAIN_REPLIES for e in unans)
    answers = {(e.entity, e.question): e.reference for e in facts.train if e.source == "facts"}
    for e in unans[:200]:
        hidden = answers.get((e.entity, e.question))
        assert hidden is not None and all(hidden not in p.text for p in e.passages)


@needs_shared
def test_held_out_entities_never_reach_training(facts):
    assert entities(facts.eval) and not entities(facts.train) & entities(facts.eval)


@needs_shared
def test_no_evaluation_question_leaks_into_training(facts):
    from agent.settings import PROJECT_ROOT

    eval_files = [PROJECT_ROOT / "data" / "eval" / "kb_questions.jsonl",
                  PROJECT_ROOT / "data" / "eval" / "brightwave" / "questions.jsonl"]
    held = {json.loads(line)["question"].lower().strip() for f in eval_files for line in f.read_text().splitlines()
            if line.strip()}
    assert len(held) > 200
    assert not held & {e.question.lower().strip() for e in facts.train}


def test_prompt_versions_differ_as_documented():
    p = Passage(id="a#0", doc_id="a", title="Return Policy", text="Window\n- **Standard:** 30 days.")
    p1 = build_messages("How long?", [p], version="p1")
    p2 = build_messages("How long?", [p], version="p2")
    assert p1[0]["content"] == SYSTEM_PROMPTS["p1"] and p2[0]["content"] == SYSTEM_PROMPTS["p2"]
    assert p1[-1]["content"].count("How long?") == 1 and p2[-1]["content"].count("How long?") == 2
    assert "**" in passage_content(p, "p1") and "**" not in passage_content(p, "p2")
    with pytest.raises(ValueError, match="unknown prompt version"):
        build_messages("q", [p], version="p9")


def test_an_adapter_runs_with_the_prompt_it_was_trained_on(tmp_path):
    assert adapter_prompt_version(None) == PROMPT_VERSION
    assert adapter_prompt_version(tmp_path) == "p1"  # adapters from before moments.json: trained on p1
    (tmp_path / "moments.json").write_text(json.dumps({"prompt_version": "p2"}))
    assert adapter_prompt_version(tmp_path) == "p2"
