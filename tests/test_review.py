"""The review tab's handlers on a real store: the summary line (typed statistics) and the replay of a stored turn."""

from __future__ import annotations

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
    assert summary == "3 conversations, 6 turns · abstain 0% · escalation 0% · thumbs up 67%"
    _, nothing = Review(store).search("no such words", ANY, ANY, ANY, ANY, None)
    assert nothing.endswith("thumbs up –")  # no thumbs at all: nothing to divide by


def test_a_stored_answer_replays_like_a_live_one(store):
    from ui import render
    from ui.review import Review

    cid = _reviewed_store(store)
    html = Review(store).show(str(cid))
    live = explained_turn()
    assert render.explanation_html(live) in html  # the same rendering as the chat tab's
    assert render.passages_html(live.hits) in html
    assert "feedback: up by operator" in html
