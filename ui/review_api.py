"""The review desk's typed endpoints (reviewers only), documented by ``Client.view_api()`` like the rest of the API:

* ``/review_search`` (text, status, channel, rating, reviewed, confidence_below, since, until, operator, page=1,
  page_size=25, order="recent") → :class:`ReviewPageOut`: one sorted page of the filtered conversations;
* ``/review_rate`` (turn_id, rating, reasons=[], comment="", corrected="", reviewer="") → :class:`ReviewOut`: a
  reviewer's rating of one reply (marks it reviewed);
* ``/review_export`` (kind, the same filters) → the written file, as a ``gr.FileData``: ``gradio_client`` downloads
  it and returns the local copy's path (a browser gets its URL);
* ``/review_explain`` (turn_id) → one line: the exact explanation of a stored reply with only the instant estimate
  is queued (or already done).

The review tab's own buttons run the same :class:`ui.review.Review` handlers through private events (they update
components); these are the typed doors for scripts. Like :mod:`ui.api`, this module has no
``from __future__ import annotations``: Gradio reads the real type hints.
"""

from pathlib import Path
from typing import TypedDict

import gradio as gr

from ui.api_types import ConversationSummaryOut, sig
from ui.review import PAGE_SIZE, Review


class ReviewPageOut(TypedDict):
    total: int  # conversations matching the filters
    page: int  # this page (a page past the end gives the last one)
    pages: int
    summary: str  # figures over every match: conversations, turns, abstain / escalation / thumbs-up rates
    items: list[ConversationSummaryOut]


class ReviewOut(TypedDict):
    feedback_id: int
    turn_id: int
    message: str


class ReviewApi:
    """Typed wrappers of :class:`~ui.review.Review`'s handlers."""

    def __init__(self, review: Review) -> None:
        self.review = review

    def review_search(self, text: str = "", status: str = "any", channel: str = "any", rating: str = "any",
                      reviewed: str = "any", confidence_below: float | None = None, since: str = "", until: str = "",
                      operator: str = "", page: int = 1, page_size: int = PAGE_SIZE, order: str = "recent",
                      request: gr.Request = None) -> ReviewPageOut:
        """One page of the stored conversations matching the filters ("any" or empty: no filter; dates as
        2026-12-01, UTC, until inclusive), sorted by order: recent, oldest, lowest_confidence or most_turns."""
        found = self.review.page(text, status, channel, rating, reviewed, confidence_below, since, until, operator,
                                 page, page_size, order, request=request)
        items = [ConversationSummaryOut(conversation_id=str(c.id), title=c.title or "", channel=c.channel,
                                        status=c.status, turns=c.turn_count, updated_at=c.updated_at.isoformat(),
                                        last_confidence=sig(c.last_confidence)) for c in found.rows]
        return ReviewPageOut(total=found.total, page=found.page, pages=found.pages, summary=found.summary, items=items)

    def review_rate(self, turn_id: int, rating: str = "", reasons: list[str] | None = None, comment: str = "",
                    corrected: str = "", reviewer: str = "", request: gr.Request = None) -> ReviewOut:
        """Review one reply (a turn_id from /conversation or /ask): rating up or down (or empty), reasons (wrong
        fact, wrong source, incomplete, outdated, tone, other), a comment, a corrected answer (training data). At least
        one of them is needed; the reply is marked reviewed by the signed-in user."""
        fid = self.review.save(turn_id, rating, list(reasons or []), comment, corrected, reviewer, request)
        return ReviewOut(feedback_id=fid, turn_id=int(turn_id), message=f"Saved review of reply {int(turn_id)}.")

    def review_export(self, kind: str, text: str = "", status: str = "any", channel: str = "any", rating: str = "any",
                      reviewed: str = "any", confidence_below: float | None = None, since: str = "", until: str = "",
                      operator: str = "", request: gr.Request = None) -> gr.FileData:
        """Export the filtered conversations: kind is "JSONL (everything)", "CSV (one row per turn)" or "Fine-tune
        (corrected answers)"; returns the written file (gradio_client downloads it and gives the local path)."""
        path = self.review.export(kind, text, status, channel, rating, reviewed, confidence_below, since, until,
                                  operator, request=request)
        return gr.FileData(path=path, orig_name=Path(path).name)


    def review_explain(self, turn_id: int, request: gr.Request = None) -> str:
        """Queue the exact explanation of one stored reply (a turn_id from /conversation) that has only the instant
        estimate or none; one line says what happens (queued, running, already done)."""
        return self.review.explain_later(turn_id, request)


def register(review: Review) -> None:
    """Add the typed review endpoints to the current ``gr.Blocks``."""
    api = ReviewApi(review)
    for name in ("review_search", "review_rate", "review_export", "review_explain"):
        gr.api(getattr(api, name), api_name=name)
