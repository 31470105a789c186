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


def test_named_endpoints_exist_and_are_typed(ui):
    api = ui["client"].view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    assert {"/chat", "/ask", "/feedback", "/retrieve", "/conversations", "/conversation", "/handover"} <= names
    hidden = {"/like", "/select", "/restore", "/new_conversation", "/send_feedback"}
    assert not hidden & names and not api["unnamed_endpoints"]  # UI-internal events are not in the listing
    ask = api["named_endpoints"]["/ask"]
    out = ask["returns"][0]["type"]
    assert out["type"] == "object" and out["properties"]["turn_id"] == {"oneOf": [{"type": "null"},
                                                                                  {"type": "integer"}]}
    assert out["properties"]["confidence"]["properties"]["level"]["type"] == "string"
    feedback = api["named_endpoints"]["/feedback"]["parameters"][0]
    assert feedback["parameter_name"] == "turn_id" and feedback["type"]["type"] == "integer"
    # every endpoint but the chat tab's is typed from its handler (no component values, no "Any")
    typed = {"/ask", "/ask_stream", "/retrieve", "/feedback", "/conversations", "/conversation", "/handover",
             "/review_search", "/review_rate", "/review_export", "/review_explain"}
    assert names == typed | {"/chat"}
    for name in typed:
        endpoint = api["named_endpoints"][name]
        assert endpoint["description"], name  # the handler's docstring documents it
        for value in endpoint["parameters"] + endpoint["returns"]:
            assert value["component"] == "Api" and value["type"], (name, value)
    props = out["properties"]
    assert props["answer_method"] == {"type": "string"}
    origin = props["sentence_origins"]["items"]["properties"]
    assert set(origin) == {"text", "origin", "passage"} and origin["passage"] == {"oneOf": [{"type": "null"},
                                                                                           {"type": "integer"}]}
    explanation = props["explanation"]["oneOf"][1]["properties"]
    assert {"method", "estimator", "confidence", "passages", "sentences", "tokens"} <= set(explanation)
    turns = api["named_endpoints"]["/conversation"]["returns"][0]["type"]["properties"]["turns"]["items"]
    assert {"answer_method", "sentence_origins"} <= set(turns["properties"])
    assert set(turns["properties"]["feedback"]["items"]["properties"]) == {"rating", "reasons", "comment", "source",
                                                                          "corrected_answer"}
    review = api["named_endpoints"]["/review_search"]["returns"][0]["type"]["properties"]
    assert set(review) == {"total", "page", "pages", "summary", "items"}
    rate = api["named_endpoints"]["/review_rate"]
    assert rate["parameters"][0]["type"] == {"type": "integer"} and rate["returns"][0]["type"]["properties"]
    export = api["named_endpoints"]["/review_export"]["returns"][0]
    assert export["python_type"]["type"] == "filepath"  # a file the client downloads, not a server path
    assert export["type"]["properties"]["meta"]["properties"]["_type"] == {"const": "gradio.FileData"}


def test_ask_returns_grounded_json_and_continues_conversation(ui):
    client, store = ui["client"], ui["store"]
    out = client.predict(QUESTION, "", False, api_name="/ask")
    assert out["question"] == QUESTION and out["answer"] and out["status"] == "ok"
    assert "return-policy" in [p["doc_id"] for p in out["passages"]]
    assert [p["n"] for p in out["passages"]] == list(range(1, len(out["passages"]) + 1))
    assert isinstance(out["turn_id"], int) and out["explanation"] is None
    assert out["confidence"] == {"level": "unknown", "value": None, "warning": "", "offer_handover": False}
    cid = out["conversation_id"]
    follow = client.predict("Do they expire?", cid, False, api_name="/ask")
    alone = client.predict("Do they expire?", "", False, api_name="/ask")
    assert follow["conversation_id"] == cid and alone["conversation_id"] != cid
    conv = store.get_conversation(__import__("uuid").UUID(cid))
    assert [t.role for t in sorted(conv.turns, key=lambda t: t.index)] == ["user", "assistant"] * 2
    # The stored history reached the prompt: the earlier exchange makes it longer than the question alone.
    assert store.get_result(follow["turn_id"]).prompt_tokens > store.get_result(alone["turn_id"]).prompt_tokens + 10


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
    assert res["rating"] == "down" and res["turn_id"] == out["turn_id"] and isinstance(res["feedback_id"], int)
    conv = store.get_conversation(__import__("uuid").UUID(out["conversation_id"]))
    feedback = [f for t in conv.turns for f in t.feedback]
    assert feedback and feedback[0].rating == "down" and "wrong source" in feedback[0].reasons
    with pytest.raises(Exception, match="rating must be"):
        client.predict(out["turn_id"], "meh", "", "", "", api_name="/feedback")


def test_explained_ask_is_compact_at_each_detail_level(ui):
    client = ui["client"]
    summary = client.predict(QUESTION, "", True, "summary", api_name="/ask")
    exp = summary["explanation"]
    assert exp["detail"] == "summary" and "tokens" not in exp
    assert exp["method"] == exp["estimator"] == "learned"  # the instant estimate; the exact one follows (#15)
    assert summary["confidence"]["level"] in ("high", "check", "low")
    assert summary["confidence"]["value"] == exp["confidence"]
    full = client.predict(summary["conversation_id"], "full", api_name="/conversation")
    answer = [t for t in full["turns"] if t["role"] == "assistant"][-1]
    tokens = answer["explanation"]["tokens"]
    assert tokens and {"text", "p", "grounding", "flag", "top", "credit", "alternatives"} <= set(tokens[0])
    assert "shapley" not in tokens[0]  # exact Shapley values are the credit: not sent twice
    floats = [v for t in tokens for v in [t["p"], t["grounding"], *t["credit"]] if v is not None]
    assert floats and all(v == float(f"{v:.4g}") for v in floats)  # rounded to 4 significant digits
    with pytest.raises(Exception, match="detail must be one of"):
        client.predict(QUESTION, "", False, "everything", api_name="/ask")


def test_retrieve_returns_ranked_passages_without_answering(ui):
    client, store = ui["client"], ui["store"]
    before = store.count_conversations()
    hits = client.predict("Do gift cards expire?", 2, api_name="/retrieve")
    assert len(hits) == 2 and hits[0]["doc_id"] == "gift-cards" and hits[0]["score"] >= hits[1]["score"]
    assert store.count_conversations() == before


def test_conversations_page_and_handover(ui):
    client, store = ui["client"], ui["store"]
    out = client.predict("How much does express shipping cost?", "", False, api_name="/ask")
    cid = out["conversation_id"]
    page = client.predict("", "api", "", "", "express shipping", 5, 0, api_name="/conversations")
    assert page["total"] >= 1 and cid in [c["conversation_id"] for c in page["items"]]
    none = client.predict("", "", "2001-01-01", "2001-01-02", "", 5, 0, api_name="/conversations")
    assert none["total"] == 0 and none["items"] == []
    with pytest.raises(Exception, match="since must be a date"):
        client.predict("", "", "yesterday", "", "", 5, 0, api_name="/conversations")
    hand = client.predict(cid, "customer wants a refund", api_name="/handover")
    assert hand["status"] == "escalated" and "express shipping" in hand["summary"]
    assert "refund" in hand["summary"] and "Passages it had:" in hand["summary"]
    assert store.get_conversation(__import__("uuid").UUID(cid)).status == "escalated"
    escalated = client.predict("escalated", "", "", "", "", 50, 0, api_name="/conversations")
    assert cid in [c["conversation_id"] for c in escalated["items"]]
    with pytest.raises(Exception, match="no conversation id starts with"):
        client.predict("ffffffff-0000", "", api_name="/handover")


def test_ask_stream_yields_tokens_then_the_ask_object(ui):
    client = ui["client"]
    returns = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask_stream"]["returns"]
    assert set(returns[0]["type"]["properties"]) == {"kind", "text", "result"}
    job = client.submit("Do gift cards expire?", "", False, "summary", api_name="/ask_stream")
    events = list(job)
    tokens = [e["text"] for e in events if e["kind"] == "token"]
    assert len(tokens) >= 3 and events[-1]["kind"] == "done"
    final = events[-1]["result"]
    assert final["answer"] == "".join(tokens).strip() and isinstance(final["turn_id"], int)
    assert final["passages"][0]["doc_id"] == "gift-cards"


def test_review_endpoints_search_rate_and_export(ui):
    """The review desk's named endpoints: a page of conversations (sorted), a reviewer's rating landing in the store,
    an export file of the filtered set."""
    import json
    import uuid
    from datetime import UTC, datetime
    from pathlib import Path

    client, store = ui["client"], ui["store"]
    out = client.predict("Do gift cards expire?", "", False, api_name="/ask")
    today = datetime.now(UTC).date().isoformat()
    page = client.predict("gift cards", "any", "api", "any", "any", None, today, today, "", 1, 10,
                          "lowest_confidence", api_name="/review_search")
    assert out["conversation_id"] in [c["conversation_id"] for c in page["items"]]
    assert (page["page"], page["pages"]) == (1, 1) and page["total"] == len(page["items"])
    assert "page 1 of 1" in page["summary"]
    saved = client.predict(out["turn_id"], "down", ["wrong fact"], "stale", "They never expire.", "rita",
                           api_name="/review_rate")
    assert saved["turn_id"] == out["turn_id"] and saved["message"] == f"Saved review of reply {out['turn_id']}."
    reviewed = [f for f in store.get_turn(out["turn_id"]).feedback if f.source == "reviewer"]
    assert [f.id for f in reviewed] == [saved["feedback_id"]]
    assert reviewed[0].reasons == ["wrong fact"] and reviewed[0].corrected_answer == "They never expire."
    with pytest.raises(Exception, match="Nothing to save"):  # an empty review records nothing
        client.predict(out["turn_id"], "", [], "", "", "rita", api_name="/review_rate")
    assert len([f for f in store.get_turn(out["turn_id"]).feedback if f.source == "reviewer"]) == 1
    path = client.predict("JSONL (everything)", "gift cards", "any", "api", "any", "yes", None, today, today, "",
                          api_name="/review_export")
    assert "moments-export-" not in path  # the client's downloaded copy, not the server's file
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert out["conversation_id"] in [json.loads(line)["id"] for line in lines]
    assert all(store.get_conversation(uuid.UUID(json.loads(line)["id"])).channel == "api" for line in lines)


def test_ask_says_how_the_reply_was_written_sentence_by_sentence(ui):
    """The default answer method quotes the help centre: /ask, the streamed variant and /conversation say so, and
    every sentence names the passage it was taken from word for word."""
    import re

    client = ui["client"]
    out = client.predict(QUESTION, "", False, "summary", api_name="/ask")
    assert out["status"] == "ok" and out["answer_method"] == "quote"
    origins = out["sentence_origins"]
    assert len(origins) >= 1 and {o["origin"] for o in origins} == {"quoted"}
    assert " ".join(o["text"] for o in origins) == " ".join(out["answer"].split())
    for o in origins:  # the words of each sentence, in order, in the passage it names
        words = re.findall(r"[^\W_]+", re.sub(r"\[\d+\]", " ", o["text"]).lower())
        passage = re.findall(r"[^\W_]+", out["passages"][o["passage"] - 1]["text"].lower())
        assert any(passage[i:i + len(words)] == words for i in range(len(passage))), (o, passage)
    events = list(client.submit(QUESTION, "", False, "summary", api_name="/ask_stream"))
    done = events[-1]["result"]
    assert done["answer_method"] == "quote" and done["sentence_origins"] == origins
    stored = client.predict(out["conversation_id"], "summary", api_name="/conversation")
    answer = [t for t in stored["turns"] if t["role"] == "assistant"][-1]
    assert answer["answer_method"] == "quote" and answer["sentence_origins"] == origins
    assert [t["answer_method"] for t in stored["turns"] if t["role"] == "user"] == [None]
    handed = client.predict("What is the airspeed velocity of an unladen swallow?", "", False, api_name="/ask")
    assert handed["status"] == "abstained" and handed["answer_method"] == "none" and handed["sentence_origins"] == []
