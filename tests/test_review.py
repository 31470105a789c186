"""The review tab's handlers on a real store: the summary line (typed statistics), filters by date and paging, the
replay of a stored turn exactly as it was shown, rating a reply, exporting the filtered set, hand-over summaries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.turn import TurnResult
from tests.test_turns import explained_turn


def _reviewed_store(store):
    result = explained_turn()
    for rating in ("up", "down", "up"):
        cid = store.start_conversation(channel="ui")
        store.add_user_turn(cid, text=result.question)
        store.add_feedback(store.add_turn(cid, result), source="operator", rating=rating)
    return cid


def test_the_summary_line_shows_the_thumbs_up_ratio(store):
    """It read a key the statistics never had (``thumbs_up_ratio``) and always showed "thumbs up –"."""
    from ui.review import ANY, Review

    _reviewed_store(store)
    rows, summary = Review(store).search("", ANY, ANY, ANY, ANY, None)
    assert len(rows) == 3
    assert summary == "3 conversations, 6 turns · abstain 0% · escalation 0% · thumbs up 67% · page 1 of 1"
    _, nothing = Review(store).search("no such words", ANY, ANY, ANY, ANY, None)
    assert "thumbs up – ·" in nothing  # no thumbs at all: nothing to divide by


def test_figures_show_rates_cited_documents_and_knowledge_base_gaps(store):
    from ui.review import ANY, Review

    _reviewed_store(store)
    html = Review(store).figures("", ANY, ANY, ANY, ANY, None)[0]
    assert "mean confidence 0.67" in html and "67% of 3 ratings" in html and "width:67%" in html
    assert "returns <span class='mo-dim'>3 answers" in html
    gaps = Review(store).figures("", ANY, ANY, ANY, ANY, None)[0]
    assert "Knowledge-base gaps" in gaps and "<li>" not in gaps  # every passage matched above 0.50


def test_date_filter_and_paging_cover_every_conversation(store):
    from ui.review import ANY, Review

    review = Review(store)
    ids = [str(store.start_conversation(channel="api", title=f"question {i}")) for i in range(7)]
    today = datetime.now(UTC).date()
    seen = []
    for page in (1, 2, 3):
        rows, summary = review.search("", ANY, ANY, ANY, ANY, None, str(today), str(today), "", page, 3)
        assert summary.endswith(f"page {page} of 3")
        seen += [r[0] for r in rows]
    assert sorted(seen) == sorted(ids)  # no cap, no overlap: every conversation exactly once
    rows, summary = review.search("", ANY, ANY, ANY, ANY, None, str(today), "", "", 99, 3)
    assert summary.endswith("page 3 of 3") and len(rows) == 1  # past the end: the last page
    tomorrow = str(today + timedelta(days=1))
    assert review.search("", ANY, ANY, ANY, ANY, None, tomorrow, "", "", 1, 3)[0] == []
    yesterday = str(today - timedelta(days=1))
    assert review.search("", ANY, ANY, ANY, ANY, None, "", yesterday, "", 1, 3)[0] == []
    import gradio as gr

    with pytest.raises(gr.Error, match="since must be a date like 2026-12-01"):
        review.search("", ANY, ANY, ANY, ANY, None, "last week", "", "", 1, 3)


def test_a_stored_answer_replays_as_it_was_shown(store):
    from ui import render
    from ui.review import Review

    cid = _reviewed_store(store)
    store.add_feedback(store.get_conversation(cid).turns[-1].id, source="reviewer", rating="down",
                       reasons=["wrong fact"], corrected_answer="Within <b>30</b> days.", reviewed=True,
                       reviewer="ann")
    html, choices = Review(store).replay(str(cid))
    live = explained_turn()
    assert render.explanation_html(live) in html  # the same rendering as the chat tab's, badge included
    assert render.turn_passages_html(live) in html  # with their credit
    assert "of the reply&#x27;s support" in html
    assert "feedback: up by operator" in html and "(wrong fact)" in html and "reviewed by ann" in html
    assert "Corrected answer:</b> Within &lt;b&gt;30&lt;/b&gt; days." in html  # shown, escaped
    assert [turn_id for _, turn_id in choices] == [t.id for t in store.get_conversation(cid).turns
                                                   if t.role == "assistant"]


def test_rating_a_picked_reply_is_stored_as_a_review(store):
    from ui.review import Review

    cid = _reviewed_store(store)
    review = Review(store)
    _, choices = review.replay(str(cid))
    assert review.rate(choices[0][1], "down", ["tone"], "too curt", "", "bob").startswith("Saved review of reply")
    feedback = [f for t in store.get_conversation(cid).turns for f in t.feedback if f.source == "reviewer"]
    assert feedback[0].reasons == ["tone"] and feedback[0].reviewed and feedback[0].reviewer == "bob"


def test_an_empty_review_is_refused_and_stores_nothing(store):
    """The form is cleared after a save: a second click on Save sends an empty review, which must not be stored."""
    import gradio as gr

    from ui.review import Review

    cid = _reviewed_store(store)
    review = Review(store)
    turn = review.replay(str(cid))[1][0][1]
    fid = review.save(turn, "up", [], "", "", "bob")
    for empty in ((None, [], "", "", "bob"), ("", None, "  ", "\n", "")):
        with pytest.raises(gr.Error, match="Nothing to save"):
            review.save(turn, *empty)
    with pytest.raises(gr.Error, match="rating must be"):
        review.save(turn, "meh", [], "", "", "bob")
    assert [f.id for f in store.get_turn(turn).feedback if f.source == "reviewer"] == [fid]
    second = review.save(turn, None, [], "", "Within 30 days.", "bob")  # a corrected answer alone is a review
    assert store.get_turn(turn).feedback[-1].id == second and second != fid


def test_export_writes_the_filtered_set(store):
    from ui.review import ANY, EXPORTS, Review

    _reviewed_store(store)
    store.start_conversation(channel="cli", title="other channel")
    review = Review(store)
    jsonl, csv_kind = list(EXPORTS)[:2]
    path = review.export(jsonl, "", ANY, "ui", ANY, ANY, None)
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(json.loads(line)["channel"] == "ui" for line in lines)
    rows = Path(review.export(csv_kind, "", ANY, ANY, ANY, ANY, None)).read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + 6  # header and one row per turn of the three conversations (the empty one has none)


def test_an_escalated_conversation_opens_with_its_handover_summary(store):
    from ui.handover import handover_summary
    from ui.review import Review

    cid = _reviewed_store(store)
    store.set_status(cid, "escalated")
    html = Review(store).show(str(cid))
    summary = handover_summary(store.get_conversation(cid))
    assert "mo-handover-summary" in html and summary.splitlines()[0] in html.replace("&#x27;", "'")
    assert summary.startswith("Customer asked: “How long can I return things?”")
    assert "Moments answered (confidence 0.67)" in summary and "Passages it had: Returns (0.71)" in summary


def _graded_store(store):
    """Three conversations: answers at confidence 0.9, 0.2 and 0.5 (oldest first), one escalated, one abstained."""
    import dataclasses

    ids = []
    for conf in (0.9, 0.2, 0.5):
        result = explained_turn()
        result.explanation = dataclasses.replace(result.explanation, confidence=conf)
        cid = store.start_conversation(channel="ui")
        store.add_user_turn(cid, text=f"question at {conf}")
        store.add_feedback(store.add_turn(cid, result), source="operator", rating="up" if conf > 0.4 else "down")
        ids.append(str(cid))
    store.add_user_turn(ids[1], text="and the weather?")
    abstained = TurnResult(question="and the weather?", answer="I can't tell.", status="abstained")
    store.add_turn(ids[1], abstained)
    store.set_status(ids[1], "escalated")
    return ids


def test_sort_orders_cover_the_store_orders_and_sort_the_table(store):
    from agent.store.queries import ORDERS as STORE_ORDERS
    from ui.review import ANY, ORDERS, Review

    assert [value for _, value in ORDERS] == list(STORE_ORDERS)
    ids = _graded_store(store)
    review = Review(store)

    def order(by):
        return [row[0] for row in review.search("", ANY, ANY, ANY, ANY, None, "", "", "", 1, 10, by)[0]]

    assert order("recent")[0] == ids[1]  # the conversation with the latest turn first
    assert order("lowest_confidence") == [ids[1], ids[2], ids[0]]  # 0.2, 0.5, 0.9
    assert order("most_turns")[0] == ids[1]
    assert order("oldest")[-1] == ids[1]
    with pytest.raises(Exception, match="Sort by one of"):
        review.search("", ANY, ANY, ANY, ANY, None, "", "", "", 1, 10, "alphabetical")


def test_plots_count_every_answer_rate_and_confidence(store):
    from ui.review import ANY, Review

    _graded_store(store)
    _, volume, rates, confidence, cited = Review(store).figures("", ANY, ANY, ANY, ANY, None)
    today = datetime.now(UTC).date().isoformat()
    assert dict(zip(volume["outcome"], volume["answers"], strict=True)) == {"answered": 3, "abstained": 1, "failed": 0}
    assert set(volume["day"]) == {today}
    got = dict(zip(rates["what"], rates["percent"], strict=True))
    assert got == {"abstained (of answers)": 25.0, "escalated (of conversations)": 33.3, "thumbs up (of thumbs)": 66.7}
    assert list(confidence["answers"]) == [0, 0, 1, 0, 0, 1, 0, 0, 0, 1]  # 0.2, 0.5 and 0.9 in their bins
    assert list(cited["document"]) == ["returns"] and list(cited["answers"]) == [3]
    # the date filter applies to the plots too: nothing before yesterday
    yesterday = str(datetime.now(UTC).date() - timedelta(days=1))
    _, volume, rates, confidence, _ = Review(store).figures("", ANY, ANY, ANY, ANY, None, "", yesterday)
    assert volume.empty and rates.empty and sum(confidence["answers"]) == 0


def test_each_export_button_writes_its_format_for_the_filtered_set(store):
    from ui.review import ANY, EXPORTS, Review
    from ui.review_tab import _export_as

    cid = _reviewed_store(store)
    answer = [t for t in store.get_conversation(cid).turns if t.role == "assistant"][-1]
    store.add_feedback(answer.id, source="reviewer", corrected_answer="Within 30 days.", reviewed=True,
                       reviewer="ann")
    review = Review(store)
    paths = {kind: _export_as(review, kind)("", ANY, ANY, ANY, ANY, None, "", "", "", None)["value"]
             for kind in EXPORTS}
    jsonl, csv_path, finetune = (Path(p) for p in paths.values())
    assert jsonl.suffix == ".jsonl" and len(jsonl.read_text(encoding="utf-8").splitlines()) == 3
    assert csv_path.suffix == ".csv" and len(csv_path.read_text(encoding="utf-8").splitlines()) == 1 + 6
    examples = [json.loads(line) for line in finetune.read_text(encoding="utf-8").splitlines()]
    assert len(examples) == 1 and "Within 30 days." in json.dumps(examples[0])
