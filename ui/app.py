"""The Gradio app: a chat tab for operators and named API endpoints for other apps.

:func:`build_app` wires an :class:`agent.pipeline.Agent` and an optional conversation store into a ``gr.Blocks``;
:func:`serve` builds the defaults and launches it. Handlers are plain (generator) functions; user-facing errors
become ``gr.Error`` so the browser shows a message and API callers get it as the error text.

Named endpoints (``gradio_client.Client(url).predict(..., api_name=...)``):

* ``/chat`` — the chat tab's streamed turn (message, chat history as displayed, state, explain);
* ``/ask`` — one turn as JSON: ``ask(question, conversation_id="", explain=False) -> dict``;
* ``/feedback`` — rate a stored turn: ``feedback(turn_id, rating, reasons="", comment="", corrected="") -> dict``;
* ``/review_search``, ``/review_show``, ``/review_rate`` — the review tab (see :mod:`ui.review`).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import gradio as gr

from agent.conversation import ConversationRunner, try_open_store
from agent.errors import MomentsError
from agent.pipeline import Agent
from agent.settings import Settings
from agent.vocabulary import RATINGS, Channel
from ui import render
from ui.review import Review, build_review_tab

log = logging.getLogger(__name__)

EXAMPLES = [
    "How long do I have to return an item?",
    "How much does express shipping cost?",
    "Do gift cards expire?",
]


def new_state() -> dict[str, Any]:
    """Per-browser-session chat state: the conversation id and the stored turn id of each bot message. The
    conversation's history is not kept here: every turn reads it from the store (``ConversationRunner.history``)."""
    return {"conversation_id": None, "turn_ids": {}}


def _conversation_id(value: str | None) -> uuid.UUID | None:
    """The ``/ask`` caller's conversation id as a UUID (None when not given); only this can blame the id."""
    if not value:
        return None
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise gr.Error(f"Invalid conversation id {value!r}: pass the conversation_id a previous /ask call returned, "
                       "or leave it empty to start a new conversation.") from None


class MomentsApp:
    """Handlers of the app, bound to one agent and store (so tests can build several apps)."""

    def __init__(self, settings: Settings, agent: Agent, store=None, store_error: str | None = None) -> None:
        self.settings = settings
        self.agent = agent
        self.store = store
        self.store_error = store_error
        self.runner = ConversationRunner(agent, store)

    # --------------------------------------------------------------------------------------- helpers
    def _conversation(self, state: dict, channel: Channel) -> uuid.UUID | None:
        if self.store is None:
            return None
        if state.get("conversation_id"):
            return uuid.UUID(state["conversation_id"])
        cid = self.runner.start(channel=channel)
        state["conversation_id"] = str(cid)
        return cid

    # --------------------------------------------------------------------------------------- chat tab
    def chat(self, message: str, messages: list[dict], state: dict, explain: bool):
        """Streamed chat turn: yields (textbox, chatbot, passages html, explanation html, state). ``messages`` is what
        the chatbot shows; the conversation's history comes from the store."""
        state = state or new_state()
        messages = list(messages or [])
        try:
            question = self.agent.validate(message)
            cid = self._conversation(state, channel="ui")
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        messages.append({"role": "user", "content": render.esc(question)})
        messages.append({"role": "assistant", "content": ""})
        passages_html, explanation_html, answer = "", "<i>Thinking…</i>", ""
        yield "", messages, passages_html, explanation_html, state
        try:
            for event in self.runner.stream(cid, question, explain=explain):
                if event.kind == "retrieved":
                    passages_html = render.passages_html(event.hits)
                    explanation_html = "<i>Writing the answer…</i>"
                elif event.kind == "token":
                    answer += event.text
                    messages[-1] = {"role": "assistant", "content": render.esc(answer)}
                elif event.kind == "explaining":
                    k = len(event.result.hits)
                    explanation_html = (f"<i>Explaining: re-scoring the reply under all {2 ** k} subsets of the "
                                        f"{k} passages…</i>")
                elif event.kind == "done":
                    result = event.result
                    explanation_html = render.explanation_html(result)
                    passages_html = render.passages_html(result.hits, render.passage_credits(result.explanation))
                    messages[-1] = {"role": "assistant", "content": render.esc(result.answer)}
                    if result.turn_id is not None:
                        state["turn_ids"][str(len(messages) - 1)] = result.turn_id
                yield "", messages, passages_html, explanation_html, state
        except MomentsError as exc:
            messages[-1] = {"role": "assistant", "content": render.esc(f"⚠ {exc}")}
            yield "", messages, passages_html, render.error_html(str(exc)), state
        except Exception as exc:
            log.exception("chat turn failed")
            msg = f"Something went wrong while answering ({type(exc).__name__}: {exc}). Your message was kept; " \
                  "try again or start a new conversation."
            messages[-1] = {"role": "assistant", "content": render.esc(f"⚠ {msg}")}
            yield "", messages, passages_html, render.error_html(msg), state

    def like(self, state: dict, data: gr.LikeData) -> str:
        """Thumbs on a bot message → feedback on its stored turn."""
        turn_id = (state or {}).get("turn_ids", {}).get(str(data.index if isinstance(data.index, int)
                                                               else data.index[0]))
        if turn_id is None or self.store is None:
            return "Feedback not recorded: this reply is not stored."
        rating = "up" if data.liked else "down"
        self.store.add_feedback(turn_id, source="operator", rating=rating)
        return f"Feedback recorded ({rating})."

    def new_conversation(self):
        return [], "", "", new_state(), ""

    # --------------------------------------------------------------------------------------- API
    def ask(self, question: str, conversation_id: str = "", explain: bool = False) -> dict:
        """One turn as JSON. Pass the returned ``conversation_id`` back to continue the conversation."""
        try:
            question = self.agent.validate(question)
            cid = _conversation_id(conversation_id)
            if self.store is not None and cid is None:
                cid = self.runner.start(channel="api")
            result = self.runner.ask(cid, question, explain=bool(explain))
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return result.to_dict()

    def feedback(self, turn_id: float, rating: str, reasons: str = "", comment: str = "",
                 corrected: str = "") -> dict:
        """Rate a stored turn (rating ``up`` or ``down``; reasons comma-separated)."""
        if self.store is None:
            raise gr.Error(f"Feedback cannot be stored: {self.store_error or 'no conversation store configured'}.")
        if rating not in RATINGS:
            raise gr.Error(f"rating must be {' or '.join(repr(r) for r in RATINGS)}.")
        try:
            fid = self.store.add_feedback(int(turn_id), source="api", rating=rating,
                                          reasons=[r.strip() for r in reasons.split(",") if r.strip()],
                                          comment=comment or None, corrected_answer=corrected or None)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return {"feedback_id": fid, "turn_id": int(turn_id), "rating": rating}


def build_app(settings: Settings, *, agent: Agent | None = None, store=None, open_store: bool = True) -> gr.Blocks:
    """Build the Blocks app. With ``open_store`` and no ``store``, the store at ``settings.db_url`` is opened;
    if that fails the app still answers, and says that turns are not being stored."""
    agent = agent or Agent(settings)
    store_error = None
    if store is None and open_store:
        store, store_error = try_open_store(settings)
    app = MomentsApp(settings, agent, store, store_error)

    with gr.Blocks(title="Moments") as demo:
        state = gr.State(new_state())
        gr.Markdown("## Moments — answers from the help centre, explained token by token")
        if store_error:
            gr.HTML(render.error_html(f"Conversations are NOT being stored: {store_error}"))
        with gr.Tab("Chat"):  # noqa: SIM117 - nesting mirrors the page layout
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="mo-chat",
                                         render_markdown=True, sanitize_html=True)
                    msg = gr.Textbox(label="Message", placeholder="Ask about orders, shipping, returns, accounts…",
                                     elem_id="mo-input", lines=1, max_lines=6)
                    with gr.Row():
                        send = gr.Button("Send", variant="primary", elem_id="mo-send")
                        new = gr.Button("New conversation", elem_id="mo-new")
                        explain = gr.Checkbox(value=True, label="Explain each reply", elem_id="mo-explain")
                    gr.Examples(EXAMPLES, inputs=msg)
                    status = gr.Markdown(elem_id="mo-status")
                with gr.Column(scale=2):
                    gr.Markdown("### Explanation")
                    explanation = gr.HTML(elem_id="mo-explanation")
                    gr.Markdown("### Passages")
                    passages = gr.HTML(elem_id="mo-passages")
        with gr.Tab("Review"):
            build_review_tab(Review(store, store_error))
        outputs = [msg, chatbot, passages, explanation, state]
        gr.on([send.click, msg.submit], app.chat, inputs=[msg, chatbot, state, explain], outputs=outputs,
              api_name="chat")
        new.click(app.new_conversation, outputs=[chatbot, passages, explanation, state, status],
                  api_visibility="private")
        chatbot.like(app.like, inputs=[state], outputs=[status], api_visibility="private")
        gr.api(app.ask, api_name="ask")
        gr.api(app.feedback, api_name="feedback")
    demo.moments = app  # handy for tests and embedding
    return demo


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          prevent_thread_lock: bool = False):
    """Load everything, then launch the app (blocking unless ``prevent_thread_lock``)."""
    agent = Agent(settings)
    agent.warm_up()
    demo = build_app(settings, agent=agent)
    demo.queue(default_concurrency_limit=1)
    return demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock,
                       css=render.CSS, footer_links=["api"], show_error=True)
