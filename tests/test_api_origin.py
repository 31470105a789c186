"""Where a reply came from: the answer method and each sentence's origin (:mod:`ui.origin`), on hand-built turns
(quotes of two sentences that are not next to each other, table rows, turns stored before the method was recorded)
and through a launched app whose model writes the replies (``answer_mode=generate``), called with gradio_client."""

from __future__ import annotations

import re

import pytest

from agent.turn import TurnResult
from retrieval.types import Hit, Passage
from tests.conftest import make_settings

FEES = ("Fees\nCard payments cost 2.9% + 30¢. Bank transfers are free. Payouts arrive in 2 business days. "
        "Instant payouts cost 1%.")
TABLE = "Plans\n| Plan | Price | Users |\n|---|---|---|\n| Starter | $0 | 1 |\n| Plus | $19 | 5 |"


def _turn(answer: str, method: str | None, mode: str = "quote", status: str = "ok") -> TurnResult:
    hits = [Hit(Passage(id="fees#0", doc_id="fees", title="Fees", text=FEES), score=0.7, rank=1),
            Hit(Passage(id="plans#0", doc_id="plans", title="Plans", text=TABLE), score=0.5, rank=2)]
    generation = {"answer_mode": mode, **({"answer_method": method} if method else {})}
    return TurnResult(question="q", answer=answer, status=status, hits=hits, versions={"generation": generation})


def test_a_quote_of_two_sentences_apart_is_quoted_sentence_by_sentence():
    from ui.origin import answer_method, origin, sentence_origins

    # the best sentence and the next best of the same passage, not next to each other, joined with a full stop
    turn = _turn("Card payments cost 2.9% + 30¢. Instant payouts cost 1% [1].", None)
    assert answer_method(turn) == "quote"  # inferred for a turn stored before the method was recorded
    assert [(s.text, s.kind, s.passage) for s in sentence_origins(turn)] == [
        ("Card payments cost 2.9% + 30¢.", "quoted", 0), ("Instant payouts cost 1% [1].", "quoted", 0)]
    assert (origin(turn).kind, origin(turn).passage) == ("quoted", 0)


def test_a_quoted_table_row_names_its_passage():
    from ui.origin import sentence_origins

    turn = _turn("Plan: Plus; Price: $19; Users: 5 [2].", "quote")
    assert [(s.kind, s.passage) for s in sentence_origins(turn)] == [("quoted", 1)]


def test_generated_sentences_name_a_passage_only_when_copied_word_for_word():
    from ui.origin import answer_method, origin, sentence_origins

    turn = _turn("Bank transfers are free [1]. Most cards cost about three percent.", "generate", mode="generate")
    assert answer_method(turn) == "generate" and origin(turn).kind == "generated"
    assert [(s.kind, s.passage) for s in sentence_origins(turn)] == [("generated", 0), ("generated", None)]
    # quote mode that fell back to the model (no sentence to quote): generated, whatever the mode says
    assert answer_method(_turn("Payouts are quick.", None)) == "generate"
    assert answer_method(_turn("Payouts are quick.", "generate")) == "generate"
    too_short = _turn("Yes. Bank transfers are free.", "generate", mode="generate")
    assert [s.passage for s in sentence_origins(too_short)] == [None, 0]  # "Yes" alone proves no copy


def test_no_reply_has_no_method_and_no_sentences():
    from ui.origin import answer_method, sentence_origins

    for turn in (_turn("I don't know.", None, status="abstained"), _turn("", "generate"),
                 _turn("boom", None, status="error")):
        assert answer_method(turn) == "none" and sentence_origins(turn) == []


@pytest.fixture(scope="module")
def written(session_home, generator, kb_index, tmp_path_factory):
    """The app with the model writing its replies."""
    from gradio_client import Client

    from agent.pipeline import Agent
    from agent.store import Store
    from ui.app import build_app
    from ui.render import CSS

    db = tmp_path_factory.mktemp("origin-db") / "o.db"
    settings = make_settings(session_home, max_new_tokens=40, answer_mode="generate", database_url=f"sqlite:///{db}")
    demo = build_app(settings, agent=Agent(settings, generator=generator, index=kb_index), store=Store(settings.db_url))
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        demo.close()


@pytest.mark.slow
def test_a_written_reply_is_generated_sentence_by_sentence(written):
    out = written.predict("How much does express shipping cost?", "", False, "summary", api_name="/ask")
    assert out["status"] == "ok" and out["answer_method"] == "generate"
    origins = out["sentence_origins"]
    assert origins and {o["origin"] for o in origins} == {"generated"}
    assert " ".join(o["text"] for o in origins) == " ".join(out["answer"].split())
    for o in origins:  # a named passage holds the sentence's words in order; an unnamed one is the model's own
        words = re.findall(r"[^\W_]+", re.sub(r"\[\d+\]", " ", o["text"]).lower())
        held = [any(p[i:i + len(words) - 1] == words[:-1] and p[i + len(words) - 1].startswith(words[-1])
                    for i in range(len(p) - len(words) + 1))
                for p in (re.findall(r"[^\W_]+", h["text"].lower()) for h in out["passages"])]
        if o["passage"] is None:
            assert len(words) < 3 or not any(held), o
        else:
            assert held[o["passage"] - 1], o
    events = list(written.submit("How much does express shipping cost?", "", False, "summary",
                                 api_name="/ask_stream"))
    assert events[-1]["result"]["answer_method"] == "generate"
