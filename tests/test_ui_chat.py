"""The chat tab's handlers on a real store (no model: the turns are stored ones): thumbs are idempotent and carry
reasons and a comment, a page reload (``?c=<id>``) restores the conversation with its explanation, and a message
the agent refuses changes nothing but the status line under the input."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from agent.store import Store
from tests.conftest import make_settings
from tests.test_input_validation import agent_without_model
from tests.test_turns import explained_turn


@pytest.fixture
def chat(tmp_path):
    from ui.app import MomentsApp, new_state

    settings = make_settings(tmp_path, threads=0, database_url=f"sqlite:///{tmp_path / 'chat.db'}")
    store = Store(settings.db_url)
    app = MomentsApp(settings, agent_without_model(tmp_path), store)
    result = explained_turn()
    cid = store.start_conversation(channel="ui")
    store.add_user_turn(cid, text=result.question)
    turn_id = store.add_turn(cid, result)
    state = new_state()
    state.update(conversation_id=str(cid), turn_ids={"1": turn_id}, turn=turn_id)
    yield SimpleNamespace(app=app, store=store, cid=cid, turn_id=turn_id, state=state)
    store.close()


def _operator_feedback(store, turn_id):
    return [(f.rating, f.reasons, f.comment) for f in store.get_turn(turn_id).feedback if f.source == "operator"]


def _like(chat, liked):
    return chat.app.like(chat.state, gr.LikeData(None, {"index": 1, "value": "", "liked": liked}))


def test_unliking_withdraws_the_rating_and_never_flips_it(chat):
    _like(chat, True)
    assert _operator_feedback(chat.store, chat.turn_id) == [("up", [], None)]
    _, status = _like(chat, "")  # the browser sends "" when the operator un-clicks the thumb
    assert _operator_feedback(chat.store, chat.turn_id) == [] and "rating withdrawn" in status
    _like(chat, False)
    _like(chat, False)  # the same click twice is still one rating
    assert _operator_feedback(chat.store, chat.turn_id) == [("down", [], None)]
    _like(chat, True)
    assert _operator_feedback(chat.store, chat.turn_id) == [("up", [], None)]


def test_reasons_and_comment_join_the_rating(chat):
    _like(chat, False)
    _, status, reasons, comment = chat.app.send_feedback(chat.state, ["wrong fact", "tone"], "  says 60 days ")
    assert "saved" in status and (reasons, comment) == ([], "")
    assert _operator_feedback(chat.store, chat.turn_id) == [("down", ["wrong fact", "tone"], "says 60 days")]
    assert chat.store.stats().thumbs_down == 1  # one rating, not two


def test_reload_restores_the_conversation_with_its_explanation(chat):
    from ui import render

    request = SimpleNamespace(query_params={"c": str(chat.cid)[:8]})  # a prefix works, as in `moments logs`
    messages, passages, explanation, state, status, _, cid = chat.app.restore(request)
    assert [m["role"] for m in messages] == ["user", "assistant"] and cid == str(chat.cid)
    assert "Check before sending · 0.67" in messages[1]["content"]  # the badge of the default (calibrated) bands
    live = explained_turn()
    assert explanation == render.explanation_html(live, chat.app.settings) and "mo-insp" in explanation
    assert passages == render.turn_passages_html(live)
    assert state["turn_ids"] == {"1": chat.turn_id} and state["conversation_id"] == str(chat.cid)
    messages, *_, status, _, cid = chat.app.restore(SimpleNamespace(query_params={"c": "nope"}))
    assert messages == [] and cid == "" and "Could not reopen conversation &#x27;nope&#x27;" in status


def test_a_refused_message_leaves_the_conversation_as_it_was(chat):
    outputs = list(chat.app.chat("   ", [{"role": "user", "content": "hi"}], chat.state, True))
    assert len(outputs) == 1
    textbox, chatbot, passages, explanation, state, status, handover, cid = outputs[0]
    unchanged = (textbox, chatbot, passages, explanation, state, handover, cid)
    assert all(isinstance(v, type(gr.skip())) for v in unchanged)
    assert "mo-error" in status and "empty" in status
    assert len(chat.store.get_conversation(chat.cid).turns) == 2  # nothing stored


def test_hand_over_escalates_with_a_summary(chat):
    status, button = chat.app.hand_over(chat.state)
    assert chat.store.get_conversation(chat.cid).status == "escalated"
    assert "Customer asked: “How long can I return things?”" in status and button["visible"] is False


def test_clicking_a_reply_shows_its_explanation_and_points_feedback_at_it(chat):
    from ui import render

    chat.state["turn"] = None
    explanation, passages, state = chat.app.select(chat.state, gr.SelectData(None, {"index": 1, "value": ""}))
    assert explanation == render.explanation_html(explained_turn(), chat.app.settings)
    assert "mo-p-1" in passages and state["turn"] == chat.turn_id
    unchanged = chat.app.select(chat.state, gr.SelectData(None, {"index": 0, "value": ""}))  # the question
    assert all(isinstance(v, type(gr.skip())) for v in unchanged[:2])


def _estimated_turn(chat):
    """A second reply stored with only an estimate, its exact explanation queued (as the default 'instant' leaves
    it); the chat's state as the turn left it."""
    from dataclasses import replace

    from agent.store.exactjobs import queue_exact

    live = explained_turn()
    estimate = replace(live, explanation=replace(live.explanation, method="learned", estimator="learned"))
    chat.store.add_user_turn(chat.cid, text="And for sale items?")
    turn = chat.store.add_turn(chat.cid, estimate)
    queue_exact(chat.store, turn, estimate_method="learned")
    chat.state["turn_ids"]["3"] = turn
    chat.state["turn"] = chat.state["last_turn"] = turn
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                {"role": "user", "content": "And for sale items?"}, {"role": "assistant", "content": "estimate"}]
    return live, turn, messages


def test_the_exact_explanation_replaces_the_estimate_in_the_chat_when_it_lands(chat):
    """The reply goes out with the instant estimate; the tab polls (a timer, on only while the job is pending) and
    swaps in the exact explanation the background worker stores, labelled as exact."""
    from agent.store.exactjobs import finish_exact, start_exact

    live, turn, messages = _estimated_turn(chat)
    state, timer = chat.app.arm_exact(chat.state)
    assert state["pending_exact"] == turn and timer.active is True
    explanation, passages, chatbot, state, status, timer = chat.app.refresh_exact(state, messages)
    assert all(isinstance(v, type(gr.skip())) for v in (explanation, passages, chatbot, timer))  # still queued
    assert start_exact(chat.store, turn, worker="w")
    explanation, *_ = chat.app.refresh_exact(state, messages)
    assert isinstance(explanation, type(gr.skip()))  # running: still the estimate
    finish_exact(chat.store, turn, explanation=live.explanation, table=None, agreement={}, worker="w", exact_ms=5.0)
    explanation, passages, chatbot, state, status, timer = chat.app.refresh_exact(state, messages)
    assert isinstance(status, type(gr.skip()))
    assert "data-estimator='exact'" in explanation and "data-estimator='learned'" not in explanation
    assert explanation == chat.app._explained(chat.store.get_result(turn))[0] and "mo-p-1" in passages
    assert chatbot[3]["content"] != "estimate" and "mo-badge" in chatbot[3]["content"]
    assert chatbot[:3] == messages[:3] and state["pending_exact"] is None and timer.active is False
    state, timer = chat.app.arm_exact(state)  # done: nothing left to poll for
    assert state["pending_exact"] is None and timer.active is False


def test_the_exact_explanation_leaves_the_panel_alone_when_another_reply_is_shown(chat):
    from agent.store.exactjobs import fail_exact, finish_exact

    live, turn, messages = _estimated_turn(chat)
    state, _ = chat.app.arm_exact(chat.state)
    state["turn"] = chat.turn_id  # the operator clicked the first reply meanwhile
    finish_exact(chat.store, turn, explanation=live.explanation, table=None, agreement={}, worker="w", exact_ms=5.0)
    explanation, passages, chatbot, state, status, timer = chat.app.refresh_exact(state, messages)
    assert isinstance(explanation, type(gr.skip())) and isinstance(passages, type(gr.skip()))
    assert "mo-badge" in chatbot[3]["content"] and timer.active is False
    # a failed job stops the polling and says so, keeping the estimate
    _, turn2, messages = _estimated_turn(chat)
    state, _ = chat.app.arm_exact(chat.state)
    fail_exact(chat.store, turn2, error="boom")
    explanation, _, chatbot, state, status, timer = chat.app.refresh_exact(state, messages)
    assert isinstance(chatbot, type(gr.skip())) and "failed" in status and timer.active is False


def test_withdrawn_feedback_is_gone_on_each_back_end(store):
    from agent.store import NotFoundError

    cid = store.start_conversation(channel="ui")
    store.add_user_turn(cid, text="q")
    turn = store.add_assistant_turn(cid, text="a")
    kept, withdrawn = (store.add_feedback(turn, source="operator", rating=r) for r in ("up", "down"))
    store.remove_feedback(withdrawn)
    assert [f.id for f in store.get_turn(turn).feedback] == [kept] and store.stats().thumbs_down == 0
    with pytest.raises(NotFoundError, match=f"no feedback {withdrawn}"):
        store.remove_feedback(withdrawn)
