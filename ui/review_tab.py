"""The review tab's layout and events (the handlers are :class:`ui.review.Review`'s)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from agent.vocabulary import CHANNELS, CONVERSATION_STATUSES, RATINGS
from ui.review import ANY, COLUMNS, EXPORTS, REASON_ORDER, Review


def _filters() -> list[Any]:
    with gr.Row():
        text = gr.Textbox(label="Search questions and answers", scale=3, elem_id="mo-review-text")
        status = gr.Dropdown([ANY, *CONVERSATION_STATUSES], value=ANY, label="Status", elem_id="mo-review-status")
        channel = gr.Dropdown([ANY, *CHANNELS], value=ANY, label="Channel")
        rating = gr.Dropdown([ANY, *RATINGS], value=ANY, label="Rating")
        reviewed = gr.Dropdown([ANY, "yes", "no"], value=ANY, label="Reviewed")
        conf = gr.Number(label="Confidence below (0: any)", value=None, minimum=0, maximum=1)
    with gr.Row():
        since = gr.Textbox(label="From (YYYY-MM-DD, UTC)", elem_id="mo-review-since")
        until = gr.Textbox(label="To (YYYY-MM-DD, inclusive)", elem_id="mo-review-until")
        operator = gr.Textbox(label="Operator")
    return [text, status, channel, rating, reviewed, conf, since, until, operator]


def _replay_and_rate() -> dict[str, Any]:
    with gr.Row():
        cid = gr.Textbox(label="Conversation id (or prefix); clicking a row opens it", scale=3,
                         elem_id="mo-review-cid")
        show = gr.Button("Replay", elem_id="mo-review-replay")
    replay = gr.HTML(elem_id="mo-review-view")
    with gr.Accordion("Rate a reply of this conversation", open=True, elem_id="mo-review-rate"):
        with gr.Row():
            # custom values: /review_rate callers pass a turn id (the handler checks the caller and the turn)
            turn = gr.Dropdown([], label="Reply", elem_id="mo-review-turn", allow_custom_value=True)
            rate_value = gr.Radio(list(RATINGS), label="Rating", elem_id="mo-review-rating")
            reasons = gr.CheckboxGroup(REASON_ORDER, label="Reasons", elem_id="mo-review-reasons")
        comment = gr.Textbox(label="Comment")
        corrected = gr.Textbox(label="Corrected answer (feeds retraining)", lines=2)
        reviewer = gr.Textbox(label="Reviewer", elem_id="mo-review-reviewer")
        save = gr.Button("Save review", elem_id="mo-review-save")
        saved = gr.Markdown(elem_id="mo-review-saved")
    return {"cid": cid, "show": show, "replay": replay, "turn": turn, "save": save, "saved": saved,
            "rate": [turn, rate_value, reasons, comment, corrected, reviewer]}


def build_review_tab(review: Review) -> None:
    """Lay out the review tab inside the current ``gr.Blocks`` context and wire its events."""
    filters = _filters()
    with gr.Row():
        search = gr.Button("Search", variant="primary", elem_id="mo-review-search")
        prev = gr.Button("◀ Newer", size="sm", elem_id="mo-review-prev")
        page = gr.Number(value=1, precision=0, label="Page", minimum=1, elem_id="mo-review-page")
        nxt = gr.Button("Older ▶", size="sm", elem_id="mo-review-next")
    summary = gr.Markdown(elem_id="mo-review-summary")
    with gr.Accordion("Figures for these conversations", open=False, elem_id="mo-review-figures"):
        figures = gr.HTML()
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="mo-review-table")
    r = _replay_and_rate()
    with gr.Row():
        kind = gr.Dropdown(list(EXPORTS), value=next(iter(EXPORTS)), label="Export the filtered conversations as")
        export = gr.Button("Export", elem_id="mo-review-export")
        exported = gr.File(label="Download", elem_id="mo-review-file")

    search.click(lambda: 1, outputs=[page], api_visibility="private").then(
        review.search, [*filters, page], [table, summary], api_name="review_search").then(
        review.figures, filters, [figures], api_visibility="private")
    for button, step in ((prev, -1), (nxt, 1)):
        button.click(lambda p, s=step: max(1, int(p or 1) + s), [page], [page], api_visibility="private").then(
            review.search, [*filters, page], [table, summary], api_visibility="private")

    def pick(evt: gr.SelectData, rows):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return str(rows.iloc[row, 0]) if hasattr(rows, "iloc") else str(rows[row][0])
        except (IndexError, KeyError):
            return ""

    def open_replay(conversation_id: str, request: gr.Request):
        html, choices = review.replay(conversation_id, request)
        return html, gr.update(choices=choices, value=choices[-1][1] if choices else None)

    table.select(pick, [table], [r["cid"]], api_visibility="private").then(
        open_replay, [r["cid"]], [r["replay"], r["turn"]], api_visibility="private")
    r["show"].click(open_replay, [r["cid"]], [r["replay"], r["turn"]], api_visibility="private")
    r["save"].click(review.rate, r["rate"], [r["saved"]], api_name="review_rate").then(
        open_replay, [r["cid"]], [r["replay"], r["turn"]], api_visibility="private")
    export.click(review.export, [kind, *filters], [exported], api_name="review_export")
