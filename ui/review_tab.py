"""The review tab's layout and events (the handlers are :class:`ui.review.Review`'s)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from agent.vocabulary import CHANNELS, CONVERSATION_STATUSES, RATINGS
from ui.render import INSPECTOR_JS
from ui.review import ANY, COLUMNS, EXPORTS, ORDERS, PAGE_SIZE, REASON_ORDER, Review
from ui.review_api import register


def _filters() -> list[Any]:
    with gr.Row():
        text = gr.Textbox(label="Search questions and answers", scale=3, elem_id="mo-review-text")
        status = gr.Dropdown([ANY, *CONVERSATION_STATUSES], value=ANY, label="Status", elem_id="mo-review-status")
        channel = gr.Dropdown([ANY, *CHANNELS], value=ANY, label="Channel")
        rating = gr.Dropdown([ANY, *RATINGS], value=ANY, label="Rating")
        reviewed = gr.Dropdown([ANY, "yes", "no"], value=ANY, label="Reviewed")
        conf = gr.Number(label="Confidence below (0: any)", value=None, minimum=0, maximum=1)
    with gr.Row():
        since = gr.DateTime(label="From (UTC day)", include_time=False, type="string", elem_id="mo-review-since")
        until = gr.DateTime(label="To (UTC day, inclusive)", include_time=False, type="string",
                            elem_id="mo-review-until")
        operator = gr.Textbox(label="Operator", elem_id="mo-review-operator")
    return [text, status, channel, rating, reviewed, conf, since, until, operator]


def _plots() -> list[Any]:
    """The figures accordion: an HTML summary, then four native plots (see :mod:`ui.review_plots`)."""
    with gr.Accordion("Figures and plots for these conversations", open=True, elem_id="mo-review-figures"):
        summary = gr.HTML(elem_id="mo-review-figures-html")
        with gr.Row():
            volume = gr.BarPlot(x="day", y="answers", color="outcome", title="Answers per day", x_title="day (UTC)",
                                y_title="answers", y_lim=[0, None], elem_id="mo-plot-volume", height=260,
                                color_map={"answered": "#16a34a", "abstained": "#f59e0b", "failed": "#dc2626"})
            # points, not lines: a line needs two days, and one day of data is common on a fresh desk
            rates = gr.ScatterPlot(x="day", y="percent", color="what", title="Abstain, escalation and thumbs-up rates",
                                   x_title="day (UTC)", y_title="%", y_lim=[0, 100], elem_id="mo-plot-rates",
                                   height=260)
        with gr.Row():
            confidence = gr.BarPlot(x="confidence", y="answers", title="Answer confidence (explained answers)",
                                    sort=None, y_lim=[0, None], elem_id="mo-plot-confidence", height=260)
            cited = gr.BarPlot(x="document", y="answers", title="Most cited documents (answers crediting it most)",
                               sort="-y", y_lim=[0, None], elem_id="mo-plot-cited", height=260)
    return [summary, volume, rates, confidence, cited]


def _replay_and_rate() -> dict[str, Any]:
    with gr.Row():
        cid = gr.Textbox(label="Conversation id (or prefix); clicking a row opens it", scale=3,
                         elem_id="mo-review-cid")
        show = gr.Button("Replay", elem_id="mo-review-replay")
    replay = gr.HTML(elem_id="mo-review-view", js_on_load=INSPECTOR_JS)  # tokens and citations work as in chat
    with gr.Accordion("Rate a reply of this conversation", open=True, elem_id="mo-review-rate"):
        with gr.Row():
            # custom values: /review_rate callers pass a turn id (the handler checks the caller and the turn)
            turn = gr.Dropdown([], label="Reply", elem_id="mo-review-turn", allow_custom_value=True)
            rate_value = gr.Radio(list(RATINGS), label="Rating", elem_id="mo-review-rating")
            reasons = gr.CheckboxGroup(REASON_ORDER, label="Reasons", elem_id="mo-review-reasons")
        comment = gr.Textbox(label="Comment", elem_id="mo-review-comment")
        corrected = gr.Textbox(label="Corrected answer (feeds retraining)", lines=2, elem_id="mo-review-corrected")
        reviewer = gr.Textbox(label="Reviewer", elem_id="mo-review-reviewer")
        with gr.Row():
            save = gr.Button("Save review", elem_id="mo-review-save")
            # an answer with only the instant estimate (or none) gets its exact explanation in the background
            exact = gr.Button("Compute the exact explanation", elem_id="mo-review-exact")
        saved = gr.Markdown(elem_id="mo-review-saved")
    return {"cid": cid, "show": show, "replay": replay, "turn": turn, "save": save, "saved": saved, "exact": exact,
            "rate": [turn, rate_value, reasons, comment, corrected, reviewer]}


def _export_as(review: Review, kind: str):
    """The handler of one export button (the format fixed, the filters from the form)."""

    def export(text: str, status: str, channel: str, rating: str, reviewed: str, confidence_below: float | None,
               since: str, until: str, operator: str, request: gr.Request) -> Any:
        path = review.export(kind, text, status, channel, rating, reviewed, confidence_below, since, until, operator,
                             request=request)
        return gr.update(value=path, visible=True)

    return export


def _exports(review: Review, filters: list[Any]) -> None:
    """One button per export format, each writing the filtered set to a file offered for download."""
    with gr.Row():
        buttons = [gr.Button(f"Export {kind}", size="sm", elem_id=f"mo-review-export-{suffix}")
                   for kind, suffix in zip(EXPORTS, ("jsonl", "csv", "finetune"), strict=True)]
        exported = gr.File(label="Download", elem_id="mo-review-file", visible=False)  # shown once there is one
    for kind, button in zip(EXPORTS, buttons, strict=True):
        button.click(_export_as(review, kind), filters, [exported], api_visibility="private")


def _save_as(review: Review):
    """The Save button's handler: store the review, then clear the form (rating, reasons, comment, corrected answer)
    so that a second click cannot store it twice; a refused review (nothing in the form, no reply picked) is said
    under the button and leaves the form as it was."""

    def save(turn: float | None, rating: str | None, reasons: list[str], comment: str, corrected: str, reviewer: str,
             request: gr.Request) -> tuple[Any, ...]:
        try:
            message = review.rate(turn, rating, reasons, comment, corrected, reviewer, request)
        except gr.Error as exc:
            return (f"⚠ {exc.message}",) + (gr.skip(),) * 4
        return message, None, [], "", ""

    return save


def build_review_tab(review: Review) -> None:
    """Lay out the review tab inside the current ``gr.Blocks`` context and wire its events (the typed endpoints for
    scripts are :mod:`ui.review_api`'s)."""
    filters = _filters()
    with gr.Row():
        search = gr.Button("Search", variant="primary", elem_id="mo-review-search")
        order = gr.Dropdown(ORDERS, value="recent", label="Sort by", elem_id="mo-review-order")
        size = gr.Dropdown([10, 25, 50, 100], value=PAGE_SIZE, label="Per page", elem_id="mo-review-size")
        prev = gr.Button("◀ Previous page", size="sm", elem_id="mo-review-prev")
        page = gr.Number(value=1, precision=0, label="Page", minimum=1, elem_id="mo-review-page")
        nxt = gr.Button("Next page ▶", size="sm", elem_id="mo-review-next")
    summary = gr.Markdown(elem_id="mo-review-summary")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="mo-review-table",
                         column_widths=["24%", "13%", "7%", "9%", "6%", "31%", "10%"])
    r = _replay_and_rate()
    _exports(review, filters)
    figures = _plots()

    listing = [*filters, page, size, order]
    search.click(lambda: 1, outputs=[page], api_visibility="private").then(
        review.search, listing, [table, summary], api_visibility="private").then(
        review.figures, filters, figures, api_visibility="private")
    for control in (order, size):
        control.change(lambda: 1, outputs=[page], api_visibility="private").then(
            review.search, listing, [table, summary], api_visibility="private")
    for button, step in ((prev, -1), (nxt, 1)):
        button.click(lambda p, s=step: max(1, int(p or 1) + s), [page], [page], api_visibility="private").then(
            review.search, listing, [table, summary], api_visibility="private")

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
    _, rating, reasons, comment, corrected, _ = r["rate"]
    r["save"].click(_save_as(review), r["rate"], [r["saved"], rating, reasons, comment, corrected],
                    api_visibility="private").then(
        open_replay, [r["cid"]], [r["replay"], r["turn"]], api_visibility="private")

    def replay_keeping(conversation_id: str, turn: Any, request: gr.Request):
        html, choices = review.replay(conversation_id, request)
        return html, gr.update(choices=choices, value=turn)

    r["exact"].click(review.explain_later, [r["turn"]], [r["saved"]], api_visibility="private").then(
        replay_keeping, [r["cid"], r["turn"]], [r["replay"], r["turn"]], api_visibility="private")
    register(review)
