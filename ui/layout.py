"""The page layout: the header, the chat tab's components (returned as a :class:`ChatTab` for wiring) and the review
tab. Layout only; the handlers live in :mod:`ui.app` and :mod:`ui.review`."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ui import render
from ui.review import REASON_ORDER, Review
from ui.review_tab import build_review_tab

#: Seconds between the chat tab's checks for a reply's exact explanation (only while one is being computed).
EXACT_POLL_S = 2.0

EXAMPLES = [
    "How long do I have to return an item?",
    "How much does express shipping cost?",
    "Do gift cards expire?",
]


@dataclass
class ChatTab:
    """The chat tab's components that events read or write."""

    state: gr.State
    chatbot: gr.Chatbot
    msg: gr.Textbox
    send: gr.Button
    new: gr.Button
    explain: gr.Checkbox
    status: gr.HTML
    handover: gr.Button
    cid: gr.Textbox
    reasons: gr.CheckboxGroup
    comment: gr.Textbox
    save_feedback: gr.Button
    explanation: gr.HTML
    passages: gr.HTML
    #: the signed-in user line, and the review tab (shown to reviewers only)
    who: gr.HTML
    review_tab: gr.Tab
    #: polls for the exact explanation of the last reply while it is computed in the background (off otherwise)
    exact_timer: gr.Timer


def _conversation_column(state: gr.State) -> dict:
    chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="mo-chat", render_markdown=True,
                         sanitize_html=True, feedback_options=("Like", "Dislike"))
    msg = gr.Textbox(label="Message", placeholder="Ask about orders, shipping, returns, accounts…",
                     elem_id="mo-input", lines=1, max_lines=6)
    status = gr.HTML(label="Status", elem_id="mo-status")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="mo-send")
        new = gr.Button("New conversation", elem_id="mo-new")
        handover = gr.Button("Hand over to a colleague", variant="stop", elem_id="mo-handover", visible=False)
        explain = gr.Checkbox(value=True, label="Explain each reply", elem_id="mo-explain")
    gr.Examples(EXAMPLES, inputs=msg)
    with gr.Accordion("Feedback on the reply (reasons, comment)", open=False, elem_id="mo-feedback"):
        reasons = gr.CheckboxGroup(REASON_ORDER, label="What was wrong", elem_id="mo-reasons")
        comment = gr.Textbox(label="Comment", lines=1, elem_id="mo-comment")
        save_feedback = gr.Button("Save feedback", elem_id="mo-save-feedback", size="sm")
    cid = gr.Textbox(label="Conversation id", visible="hidden", elem_id="mo-cid")
    return {"state": state, "chatbot": chatbot, "msg": msg, "send": send, "new": new, "explain": explain,
            "status": status, "handover": handover, "cid": cid, "reasons": reasons, "comment": comment,
            "save_feedback": save_feedback}


#: Shown on every page when ``MOMENTS_AUTH=none``.
AUTH_OFF = ("Authentication is off (MOMENTS_AUTH=none): anyone who can open this page uses it as an admin. Use this "
            "only for a single-user local run.")


def build_layout(store_error: str | None, review: Review, auth: bool = True) -> ChatTab:
    """Lay out the page inside the current ``gr.Blocks``; the chat tab's components (``auth``: whether users sign
    in; without it the page says so)."""
    state = gr.State({"conversation_id": None, "turn_ids": {}, "feedback": {}, "ratings": {}, "turn": None})
    gr.Markdown("## Moments — answers from the help centre, explained token by token")
    who = gr.HTML(elem_id="mo-who")
    if not auth:
        gr.HTML(f"<div class='mo-warn' id='mo-auth-off'>{render.esc(AUTH_OFF)}</div>")
    if store_error:
        gr.HTML(render.error_html(f"Conversations are NOT being stored: {store_error}"))
    with gr.Tab("Chat"):  # noqa: SIM117 - nesting mirrors the page layout
        with gr.Row():
            with gr.Column(scale=3):
                parts = _conversation_column(state)
            with gr.Column(scale=2):
                gr.Markdown("### Explanation")
                explanation = gr.HTML(label="Explanation", elem_id="mo-explanation", js_on_load=render.INSPECTOR_JS)
                gr.Markdown("### Passages")
                passages = gr.HTML(label="Passages", elem_id="mo-passages")
    exact_timer = gr.Timer(EXACT_POLL_S, active=False)
    with gr.Tab("Review", visible=not auth) as review_tab:
        build_review_tab(review)
    return ChatTab(explanation=explanation, passages=passages, who=who, review_tab=review_tab,
                   exact_timer=exact_timer, **parts)
