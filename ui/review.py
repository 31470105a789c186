"""The review tab: search stored conversations (filters, dates, paging), replay one exactly as the operator saw it,
rate its answers, export the filtered set.

Handlers are methods of :class:`Review`, bound to one store; they return plain values (rows, escaped HTML, file
paths) so the tab and tests share them. A stored answer is read back as the :class:`~agent.turn.TurnResult` it was
(:meth:`agent.store.Store.get_result`) and renders through :mod:`ui.render`, exactly like a live one: badge,
explanation, passages with their credit. An escalated conversation opens with its hand-over summary.

Each answer says where its exact explanation stands (:func:`exact_line`: only the instant estimate, queued with the
number of jobs pending, running, done with the estimate's agreement, failed); "Compute the exact explanation"
(:meth:`Review.explain_later`, API ``/review_explain``) queues it for an answer that has only the estimate, or none.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from agent.errors import MomentsError
from agent.settings import Settings
from agent.store import ConversationPublic, StatsPublic, TurnPublic
from agent.vocabulary import RATINGS, REASONS
from ui import render
from ui.access import Gate
from ui.api import parse_when
from ui.handover import handover_summary
from ui.review_plots import plots

log = logging.getLogger(__name__)

COLUMNS = ["id", "updated (UTC)", "channel", "status", "turns", "title", "last confidence"]
ANY = "any"
PAGE_SIZE = 25
#: The feedback reasons in the order a person scans them (all of :data:`agent.vocabulary.REASONS`).
REASON_ORDER = sorted(REASONS, key=lambda r: (r == "other", r not in ("wrong fact", "wrong source"), r))
#: The table's sort choices: (label, the store's order).
ORDERS = [("most recent activity", "recent"), ("oldest activity", "oldest"),
          ("lowest confidence first", "lowest_confidence"), ("most turns", "most_turns")]
EXPORTS = {"JSONL (everything)": ("export_jsonl", "jsonl"), "CSV (one row per turn)": ("export_csv", "csv"),
           "Fine-tune (corrected answers)": ("export_finetune", "jsonl")}


@dataclass(frozen=True)
class ReviewPage:
    """One page of the review table: the conversations on it, how many match in all, the page and its count, and
    the summary line."""

    rows: list[ConversationPublic]
    total: int
    page: int
    pages: int
    summary: str


@dataclass(frozen=True)
class Query:
    """The review tab's filters, as typed in the form."""

    text: str = ""
    status: str = ANY
    channel: str = ANY
    rating: str = ANY
    reviewed: str = ANY
    confidence_below: float | None = None
    since: str = ""
    until: str = ""
    operator: str = ""

    def filters(self) -> dict[str, Any]:
        """The store's filter keywords (empty fields and ``any`` left out)."""
        out: dict[str, Any] = {}
        if self.text and self.text.strip():
            out["text"] = self.text.strip()
        for key in ("status", "channel", "rating"):
            value = getattr(self, key)
            if value and value != ANY:
                out[key] = value
        if self.reviewed in ("yes", "no"):
            out["reviewed"] = self.reviewed == "yes"
        if self.confidence_below:
            out["confidence_below"] = float(self.confidence_below)
        if self.operator and self.operator.strip():
            out["operator"] = self.operator.strip()
        for key, end in (("since", False), ("until", True)):
            when = parse_when(getattr(self, key), key, end=end)
            if when is not None:
                out[key] = when
        return out


class Review:
    """Review handlers over a conversation store (or a message saying there is none)."""

    def __init__(self, store=None, store_error: str | None = None, settings: Settings | None = None,
                 gate: Gate | None = None, runner=None) -> None:
        self.store = store
        self.store_error = store_error
        self.settings = settings or Settings()
        self.gate = gate or Gate.disabled()
        #: the app's :class:`~agent.conversation.ConversationRunner` (its background worker computes exact
        #: explanations queued from here); None: "explain later" is unavailable
        self.runner = runner

    def _need_store(self, request: gr.Request | None = None):
        """The store, for a caller with the reviewer role (every review handler is for reviewers only)."""
        self.gate.require(request, "reviewer")
        if self.store is None:
            raise gr.Error(f"No conversation store: {self.store_error or 'none configured'}.")
        return self.store

    def search(self, text: str, status: str, channel: str, rating: str, reviewed: str,
               confidence_below: float | None, since: str = "", until: str = "", operator: str = "",
               page: float | None = 1, page_size: float | None = PAGE_SIZE, order: str = "recent",
               request: gr.Request = None) -> tuple[list[list[Any]], str]:
        """The table's rows for one page (see :meth:`page`) and its summary line."""
        found = self.page(text, status, channel, rating, reviewed, confidence_below, since, until, operator, page,
                          page_size, order, request=request)
        table = [[str(c.id), c.updated_at.strftime("%Y-%m-%d %H:%M"), c.channel, c.status, c.turn_count,
                  c.title or "", "" if c.last_confidence is None else round(c.last_confidence, 2)] for c in found.rows]
        return table, found.summary

    def page(self, text: str, status: str, channel: str, rating: str, reviewed: str,
             confidence_below: float | None, since: str = "", until: str = "", operator: str = "",
             page: float | None = 1, page_size: float | None = PAGE_SIZE, order: str = "recent",
             request: gr.Request = None) -> ReviewPage:
        """One page of the matching conversations in ``order`` (see :data:`ORDERS`; most recent activity first by
        default) and a summary line (figures over all matches). Every match is reachable: there is no cap."""
        store = self._need_store(request)
        filters = Query(text, status, channel, rating, reviewed, confidence_below, since, until, operator).filters()
        size = max(1, min(int(page_size or PAGE_SIZE), 500))
        if order not in dict(ORDERS).values():
            raise gr.Error(f"Sort by one of: {', '.join(v for _, v in ORDERS)} (got {order!r}).")
        try:
            total = store.count_conversations(**filters)
            pages = max(1, math.ceil(total / size))
            page_no = min(max(1, int(page or 1)), pages)
            rows = store.list_conversations(limit=size, offset=(page_no - 1) * size, order=order, **filters)
            stats = store.stats(**filters)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return ReviewPage(rows, total, page_no, pages, f"{self.summary(stats)} · page {page_no} of {pages}")

    @staticmethod
    def summary(stats: StatsPublic) -> str:
        def pct(value: float | None) -> str:
            return "–" if value is None else f"{value:.0%}"

        return (f"{stats.conversations} conversations, {stats.turns} turns · abstain {pct(stats.abstain_rate)} · "
                f"escalation {pct(stats.escalation_rate)} · thumbs up {pct(stats.thumbs_ratio)}")

    def figures(self, text: str, status: str, channel: str, rating: str, reviewed: str,
                confidence_below: float | None, since: str = "", until: str = "", operator: str = "",
                request: gr.Request = None) -> tuple[Any, ...]:
        """The figures over the matching conversations: an HTML summary (rates, mean confidence, the most cited
        documents, the questions with the weakest retrieval: knowledge-base gaps), then the plots' tables
        (:mod:`ui.review_plots`: volume and rates per day, confidence histogram, most cited documents)."""
        store = self._need_store(request)
        filters = Query(text, status, channel, rating, reviewed, confidence_below, since, until, operator).filters()
        try:
            stats, series = store.stats(**filters), store.series(**filters)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return (figures_html(stats), *plots(stats, series).as_tuple())

    def show(self, conversation_id: str, request: gr.Request = None) -> str:
        """HTML replay of one conversation: every turn as it was shown (badge, explanation, passages with their
        credit), its feedback and corrected answers; an escalated one starts with the hand-over summary."""
        return self.replay(conversation_id, request)[0]

    def replay(self, conversation_id: str, request: gr.Request = None) -> tuple[str, list[tuple[str, int]]]:
        """(replay HTML, the answer turns as (label, turn id) choices for rating)."""
        store = self._need_store(request)
        if not conversation_id or not conversation_id.strip():
            return "<i>Pick a conversation (click a row, or paste its id).</i>", []
        try:
            cid = store.resolve_conversation_id(conversation_id.strip())
            conv = store.get_conversation(cid)
        except (MomentsError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        if conv is None:
            raise gr.Error(f"No conversation {conversation_id!r}.")
        parts = [(f"<h3>{render.esc(conv.title)}</h3><div class='mo-legend'>{render.esc(conv.id)} · "
                  f"{render.esc(conv.channel)} · {render.esc(conv.status)}</div>")]
        if conv.status == "escalated":
            parts.append(f"<div class='mo-warn' id='mo-handover-summary'><b>Handed over.</b><pre>"
                         f"{render.esc(handover_summary(conv))}</pre></div>")
        choices = []
        for t in sorted(conv.turns, key=lambda t: t.index):
            if t.role == "user":
                parts.append(f"<p><b>Customer:</b> {render.esc(t.text)}</p>")
            else:
                parts.append(self._answer_html(t))
                choices.append((f"reply {t.id}: {t.text[:40]}", t.id))
        return "\n".join(parts), choices

    def _answer_html(self, t: TurnPublic) -> str:
        """One stored answer, rendered from the same :class:`~agent.turn.TurnResult` a live turn is."""
        result = self.store.get_result(t.id)
        head = f"<p><b>Moments</b> (reply {t.id}, {render.esc(t.status)})"
        if t.error:
            head += f" <span class='mo-error'>{render.esc(t.error)}</span>"
        parts = [head + "</p>", render.esc(t.text) if t.status == "error" else "",
                 render.explanation_html(result, self.settings) if t.status != "error" else "",
                 self._exact_html(t.id, result)]
        for f in t.feedback:
            parts.append(f"<div class='mo-legend'>feedback: {render.esc(f.rating or 'comment')} by "
                         f"{render.esc(f.source)}{' (' + render.esc(', '.join(f.reasons)) + ')' if f.reasons else ''}"
                         f"{' — ' + render.esc(f.comment) if f.comment else ''}"
                         f"{' · reviewed' if f.reviewed else ''}"
                         f"{' by ' + render.esc(f.reviewer) if f.reviewed and f.reviewer else ''}</div>")
            if f.corrected_answer:
                parts.append(f"<div class='mo-legend'><b>Corrected answer:</b> {render.esc(f.corrected_answer)}"
                             "</div>")
        passages = render.turn_passages_html(result)
        parts.append(f"<details><summary>Passages</summary>{passages}</details>")
        return f"<div class='mo-turn' data-turn='{t.id}'>{''.join(parts)}</div>"

    def _exact_html(self, turn_id: int, result) -> str:
        """Where the answer's exact explanation stands (empty for answers with nothing to explain)."""
        from agent.store.exactjobs import exact_status

        if result is None or not result.token_ids:
            return ""
        try:
            job = exact_status(self.store, turn_id)
        except MomentsError as exc:
            return f"<div class='mo-legend'>Exact explanation: unknown ({render.esc(str(exc))})</div>"
        depth = self.runner.background.depth() if self.runner is not None and self.runner.background else None
        return f"<div class='mo-legend mo-exact' data-turn='{turn_id}'>{render.esc(exact_line(result, job, depth))}</div>"

    def explain_later(self, turn_id: float | None, request: gr.Request = None) -> str:
        """Queue the exact explanation of one stored answer (picked from the replay) that has only the instant
        estimate, or no explanation; what happens, in one line. Reviewers only."""
        self._need_store(request)
        if not turn_id:
            raise gr.Error("Replay a conversation and pick one of its replies first.")
        if self.runner is None:
            raise gr.Error("This app has no background worker for exact explanations.")
        try:
            state = self.runner.explain_later(int(turn_id))
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        if state["status"] == "done":
            return f"Reply {int(turn_id)} already has its exact explanation."
        pending = f" ({state['depth']} pending)" if state.get("depth") else ""
        return (f"The exact explanation of reply {int(turn_id)} is {state['status']}{pending}; replay the "
                "conversation to see it once it is done.")

    def rate(self, turn_id: float | None, rating: str, reasons: list[str], comment: str, corrected: str,
             reviewer: str, request: gr.Request = None) -> str:
        """Store a reviewer's rating of one answer turn (see :meth:`save`); a line saying so."""
        self.save(turn_id, rating, reasons, comment, corrected, reviewer, request)
        return f"Saved review of reply {int(turn_id)}."

    def save(self, turn_id: float | None, rating: str | None, reasons: list[str] | None, comment: str | None,
             corrected: str | None, reviewer: str | None, request: gr.Request = None) -> int:
        """Store a reviewer's rating of one answer turn (picked from the replay), which marks it reviewed; the
        feedback id. The reviewer is the signed-in user (the typed name counts only when authentication is off). A
        review with no rating, reason, comment or corrected answer is refused: it would record nothing (the form is
        cleared after each save, so a second click on Save does not store the review twice)."""
        store = self._need_store(request)
        caller = self.gate.caller(request)
        if not caller.local:
            reviewer = caller.name
        if not turn_id:
            raise gr.Error("Replay a conversation and pick one of its replies first.")
        if rating and rating not in RATINGS:
            raise gr.Error(f"rating must be {' or '.join(repr(r) for r in RATINGS)} (or empty), not {rating!r}.")
        comment, corrected = (comment or "").strip(), (corrected or "").strip()
        if not (rating or reasons or comment or corrected):
            raise gr.Error("Nothing to save: pick a rating or a reason, or write a comment or a corrected answer.")
        try:
            return store.add_feedback(int(turn_id), source="reviewer", rating=rating or None, reasons=reasons or [],
                                      comment=comment or None, corrected_answer=corrected or None, reviewed=True,
                                      reviewer=reviewer or None, author=self.gate.operator(caller))
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc

    def export(self, kind: str, text: str, status: str, channel: str, rating: str, reviewed: str,
               confidence_below: float | None, since: str = "", until: str = "", operator: str = "",
               request: gr.Request = None) -> str:
        """Write the filtered conversations in the chosen format to a file; its path (for download)."""
        store = self._need_store(request)
        if kind not in EXPORTS:
            raise gr.Error(f"Pick an export format: {', '.join(EXPORTS)}.")
        method, suffix = EXPORTS[kind]
        filters = Query(text, status, channel, rating, reviewed, confidence_below, since, until, operator).filters()
        folder = Path(tempfile.mkdtemp(prefix="moments-export-"))
        path = folder / f"moments-{method.removeprefix('export_')}.{suffix}"
        try:
            with path.open("w", encoding="utf-8", newline="") as fh:
                n = getattr(store, method)(fh, **filters)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        log.info("exported %d records to %s", n, path)
        return str(path)


def exact_line(result, job, depth: int | None = None) -> str:
    """One line on an answer's exact explanation: whether only the estimate is stored, and the job's state (with
    the estimate's agreement once the exact one replaced it: the live faithfulness monitor)."""
    exp = result.explanation
    exact = exp is not None and exp.estimator == "exact"
    if job is None:
        if exact:
            return "Exact explanation (computed with the answer)."
        what = "Only the instant estimate is stored" if exp is not None else "Not explained"
        return f"{what}: pick this reply and press 'Compute the exact explanation'."
    if job.status == "done":
        agree = job.agreement or {}
        bits = []
        if "same_top_passage" in agree:
            bits.append(f"same top passage: {'yes' if agree['same_top_passage'] else 'no'}")
        if agree.get("token_top_agreement") is not None:
            bits.append(f"token top passage agreement {agree['token_top_agreement']:.0%}")
        if agree.get("lds_token") is not None:
            bits.append(f"token LDS {agree['lds_token']:.2f}")
        vs = f"; the {agree.get('estimator') or job.estimate_method} estimate vs exact: {', '.join(bits)}" \
            if bits else ""
        return f"Exact explanation computed in the background{vs}."
    if job.status == "failed":
        return f"The exact explanation failed ({job.error or 'no reason recorded'}); press the button to retry."
    pending = f", {depth} pending" if depth else ""
    return f"Exact explanation {job.status}{pending}: the estimate is shown until it is ready."


def _bars(rows: list[tuple[str, float, str]], top: float | None = None) -> str:
    """Horizontal bars, ``top`` (default: the largest value) filling the width."""
    top = top or max((v for _, v, _ in rows), default=0) or 1
    return "".join(f"<div class='mo-credit'><span class='mo-bar' style='width:160px'><span style='width:"
                   f"{round(100 * v / top)}%;background:#60a5fa'></span></span> {render.esc(label)} "
                   f"<span class='mo-dim'>{render.esc(note)}</span></div>" for label, v, note in rows)


def figures_html(stats: StatsPublic) -> str:
    """Rates, confidence, top cited documents and knowledge-base gaps as small HTML bar charts (escaped)."""
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"

    conf = "–" if stats.mean_confidence is None else f"{stats.mean_confidence:.2f}"
    ratings = stats.thumbs_up + stats.thumbs_down
    rates = _bars([("abstained", stats.abstain_rate or 0, pct(stats.abstain_rate)),
                   ("escalated", stats.escalation_rate or 0, pct(stats.escalation_rate)),
                   ("errors", stats.error_rate or 0, pct(stats.error_rate)),
                   ("thumbs up", stats.thumbs_ratio or 0, f"{pct(stats.thumbs_ratio)} of {ratings} ratings")], top=1.0)
    cited = _bars([(d.doc_id, d.answers, f"{d.answers} answers") for d in stats.top_cited_documents[:8]])
    gaps = "".join(f"<li>{render.esc(w.question or '(no question)')} <span class='mo-dim'>best match "
                   f"{w.best_score:.2f}</span></li>" for w in stats.weak_retrieval[:8])
    return (f"<div class='mo-legend'><b>Rates</b> (mean confidence {conf})</div>{rates}"
            f"<div class='mo-legend'><b>Most cited documents</b></div>{cited or '<i>none yet</i>'}"
            f"<div class='mo-legend'><b>Knowledge-base gaps</b>: questions whose best passage matched below "
            f"{stats.weak_retrieval_threshold:.2f}</div><ol>{gaps}</ol>")
