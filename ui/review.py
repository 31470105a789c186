"""The review tab: search stored conversations, replay one with its passages and explanations, rate answers.

Handlers are methods of :class:`Review`, bound to one store; they return plain values (rows, escaped HTML) so the
tab and tests share them. A stored answer is read back as the :class:`~agent.turn.TurnResult` it was
(:func:`agent.store.turns.turn_result`) and renders through :mod:`ui.render`, exactly like a live one.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from agent.errors import MomentsError
from agent.store import StatsPublic, TurnPublic
from agent.store.turns import turn_result
from agent.vocabulary import CHANNELS, CONVERSATION_STATUSES, RATINGS, REASONS
from ui import render

log = logging.getLogger(__name__)

COLUMNS = ["id", "updated (UTC)", "channel", "status", "turns", "title", "last confidence"]
ANY = "any"


class Review:
    """Review handlers over a conversation store (or a message saying there is none)."""

    def __init__(self, store=None, store_error: str | None = None) -> None:
        self.store = store
        self.store_error = store_error

    def _need_store(self):
        if self.store is None:
            raise gr.Error(f"No conversation store: {self.store_error or 'none configured'}.")
        return self.store

    def search(self, text: str, status: str, channel: str, rating: str, reviewed: str,
               confidence_below: float | None) -> tuple[list[list[Any]], str]:
        """Conversations matching the filters, newest first (at most 200), and a summary line."""
        store = self._need_store()
        filters: dict[str, Any] = {}
        if text and text.strip():
            filters["text"] = text.strip()
        for key, value in (("status", status), ("channel", channel), ("rating", rating)):
            if value and value != ANY:
                filters[key] = value
        if reviewed in ("yes", "no"):
            filters["reviewed"] = reviewed == "yes"
        if confidence_below:
            filters["confidence_below"] = float(confidence_below)
        try:
            rows = store.list_conversations(limit=200, **filters)
            stats = store.stats(**filters)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        table = [[str(c.id), c.updated_at.strftime("%Y-%m-%d %H:%M"), c.channel, c.status, c.turn_count,
                  c.title or "", "" if c.last_confidence is None else round(c.last_confidence, 2)] for c in rows]
        return table, self.summary(stats)

    @staticmethod
    def summary(stats: StatsPublic) -> str:
        def pct(value: float | None) -> str:
            return "–" if value is None else f"{value:.0%}"

        return (f"{stats.conversations} conversations, {stats.turns} turns · abstain {pct(stats.abstain_rate)} · "
                f"escalation {pct(stats.escalation_rate)} · thumbs up {pct(stats.thumbs_ratio)}")

    def show(self, conversation_id: str) -> str:
        """HTML replay of one conversation: every turn, with the passages it saw and its explanation."""
        store = self._need_store()
        if not conversation_id or not conversation_id.strip():
            return "<i>Pick a conversation (paste or click its id).</i>"
        try:
            cid = store.resolve_conversation_id(conversation_id.strip())
            conv = store.get_conversation(cid)
        except (MomentsError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        if conv is None:
            raise gr.Error(f"No conversation {conversation_id!r}.")
        parts = [(f"<h3>{render.esc(conv.title)}</h3><div class='mo-legend'>{render.esc(conv.id)} · "
                  f"{render.esc(conv.channel)} · {render.esc(conv.status)}</div>")]
        questions = {t.id: t.text for t in conv.turns if t.role == "user"}
        for t in sorted(conv.turns, key=lambda t: t.index):
            if t.role == "user":
                parts.append(f"<p><b>Customer:</b> {render.esc(t.text)}</p>")
            else:
                parts.append(self._answer_html(t, questions.get(t.reply_to_id, "")))
        return "\n".join(parts)

    @staticmethod
    def _answer_html(t: TurnPublic, question: str) -> str:
        """One stored answer, rendered from the same :class:`~agent.turn.TurnResult` a live turn is."""
        result = turn_result(t, question)
        head = f"<p><b>Moments</b> (turn {t.id}, {render.esc(t.status)})"
        if t.error:
            head += f" <span class='mo-error'>{render.esc(t.error)}</span>"
        parts = [head + "</p>", render.explanation_html(result) if t.status != "error" else ""]
        for f in t.feedback:
            parts.append(f"<div class='mo-legend'>feedback: {render.esc(f.rating)} by {render.esc(f.source)}"
                         f"{' (' + render.esc(', '.join(f.reasons)) + ')' if f.reasons else ''}"
                         f"{' — ' + render.esc(f.comment) if f.comment else ''}"
                         f"{' · reviewed by ' + render.esc(f.reviewer) if f.reviewed else ''}</div>")
        parts.append(f"<details><summary>Passages</summary>{render.passages_html(result.hits)}</details>")
        return "\n".join(parts)

    def rate(self, turn_id: float | None, rating: str, reasons: list[str], comment: str, corrected: str,
             reviewer: str) -> str:
        """Store a reviewer's rating of one answer turn."""
        store = self._need_store()
        if not turn_id:
            raise gr.Error("Give the turn number shown in the replay (\"turn N\").")
        try:
            store.add_feedback(int(turn_id), source="reviewer", rating=rating if rating in RATINGS else None,
                               reasons=reasons or [], comment=comment or None, corrected_answer=corrected or None,
                               reviewed=True, reviewer=reviewer or None)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return f"Saved review of turn {int(turn_id)}."


def build_review_tab(review: Review) -> None:
    """Lay out the review tab inside the current ``gr.Blocks`` context."""
    with gr.Row():
        text = gr.Textbox(label="Search questions and answers", scale=3)
        status = gr.Dropdown([ANY, *CONVERSATION_STATUSES], value=ANY, label="Status")
        channel = gr.Dropdown([ANY, *CHANNELS], value=ANY, label="Channel")
        rating = gr.Dropdown([ANY, *RATINGS], value=ANY, label="Rating")
        reviewed = gr.Dropdown([ANY, "yes", "no"], value=ANY, label="Reviewed")
        conf = gr.Number(label="Confidence below", value=None)
    search = gr.Button("Search", elem_id="mo-review-search")
    summary = gr.Markdown()
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True)
    with gr.Row():
        cid = gr.Textbox(label="Conversation id (or prefix)", scale=3)
        show = gr.Button("Replay")
    replay = gr.HTML()
    with gr.Accordion("Rate an answer", open=False):
        with gr.Row():
            turn = gr.Number(label="Turn", precision=0)
            rate_value = gr.Radio(list(RATINGS), label="Rating")
            reasons = gr.CheckboxGroup(list(REASONS), label="Reasons")
        comment = gr.Textbox(label="Comment")
        corrected = gr.Textbox(label="Corrected answer (feeds retraining)", lines=2)
        reviewer = gr.Textbox(label="Reviewer")
        save = gr.Button("Save review")
        saved = gr.Markdown()
    search.click(review.search, [text, status, channel, rating, reviewed, conf], [table, summary],
                 api_name="review_search")

    def pick(evt: gr.SelectData, rows):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return str(rows.iloc[row, 0]) if hasattr(rows, "iloc") else str(rows[row][0])
        except (IndexError, KeyError):
            return ""

    table.select(pick, [table], [cid], api_visibility="private")
    show.click(review.show, [cid], [replay], api_name="review_show")
    save.click(review.rate, [turn, rate_value, reasons, comment, corrected, reviewer], [saved], api_name="review_rate")
