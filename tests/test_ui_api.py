"""The real Gradio app, launched on localhost and called through gradio_client (named endpoints)."""

from __future__ import annotations

import pytest
from gradio_client import Client

from tests.conftest import make_settings

pytestmark = [pytest.mark.slow]

QUESTION = "How long do I have to return an item?"


@pytest.fixture(scope="module")
def ui(session_home, generator, kb_index, tmp_path_factory):
    from agent.pipeline import Agent
    from agent.store import Store
    from ui.app import build_app
    from ui.render import CSS

    db = tmp_path_factory.mktemp("ui-db") / "ui.db"
    settings = make_settings(session_home, max_new_tokens=40, database_url=f"sqlite:///{db}")
    agent = Agent(settings, generator=generator, index=kb_index)
    store = Store(settings.db_url)
    demo = build_app(settings, agent=agent, store=store)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True)
    try:
        yield {"url": url, "store": store, "client": Client(url, verbose=False)}
    finally:
        demo.close()


def test_named_endpoints_exist(ui):
    api = ui["client"].view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    assert {"/chat", "/ask", "/feedback"} <= names


def test_ask_returns_grounded_json_and_continues_conversation(ui):
    client, store = ui["client"], ui["store"]
    out = client.predict(QUESTION, "", False, api_name="/ask")
    assert out["question"] == QUESTION and out["answer"] and not out["abstained"]
    assert "return-policy" in [p["doc_id"] for p in out["passages"]]
    assert out["versions"]["base_model"] == "smollm2-135m" and out["versions"]["index_version"]
    cid = out["conversation_id"]
    follow = client.predict("Do they expire?", cid, False, api_name="/ask")
    alone = client.predict("Do they expire?", "", False, api_name="/ask")
    assert follow["conversation_id"] == cid and alone["conversation_id"] != cid
    # The stored history reached the prompt: the earlier exchange makes it longer than the question alone.
    assert follow["prompt_tokens"] > alone["prompt_tokens"] + 10
    conv = store.get_conversation(__import__("uuid").UUID(cid))
    assert [t.role for t in sorted(conv.turns, key=lambda t: t.index)] == ["user", "assistant"] * 2


def test_bad_input_gets_clear_error(ui):
    client = ui["client"]
    with pytest.raises(Exception, match="empty"):
        client.predict("   ", "", False, api_name="/ask")
    with pytest.raises(Exception, match="limit is 4,000"):
        client.predict("x" * 5000, "", False, api_name="/ask")


def test_chat_streams_and_escapes_html(ui):
    client = ui["client"]
    job = client.submit("<b>bold</b> how much is express shipping?", [], False, api_name="/chat")
    outputs = list(job)
    assert len(outputs) >= 3  # streamed: several updates before the final one
    final = job.result()
    textbox, history, passages_html, _explanation_html = final[:4]
    assert textbox == ""
    user = history[0]["content"]
    user_text = user if isinstance(user, str) else str(user)
    assert "&lt;b&gt;bold&lt;/b&gt;" in user_text and "<b>bold</b>" not in user_text
    assert history[-1]["content"]
    assert "Shipping" in passages_html


def test_feedback_endpoint_stores_rating(ui):
    client, store = ui["client"], ui["store"]
    out = client.predict("Do gift cards expire?", "", False, api_name="/ask")
    res = client.predict(out["turn_id"], "down", "wrong source, incomplete", "not helpful", "", api_name="/feedback")
    assert res["rating"] == "down"
    conv = store.get_conversation(__import__("uuid").UUID(out["conversation_id"]))
    feedback = [f for t in conv.turns for f in t.feedback]
    assert feedback and feedback[0].rating == "down" and "wrong source" in feedback[0].reasons
    with pytest.raises(Exception, match="rating must be"):
        client.predict(out["turn_id"], "meh", "", "", "", api_name="/feedback")
