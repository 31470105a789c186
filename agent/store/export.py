"""Writers for exports of stored conversations; each takes an open text file and an iterable of
:class:`ConversationDetail` and returns how many records it wrote.

* JSONL: one conversation per line, everything included (turns, passages, explanations, feedback).
* CSV: one row per turn, with flattened timings, versions, explanation summary and feedback.
* Fine-tuning: one chat example per corrected answer, ``{"messages": [user, assistant], "passages": [...],
  "metadata": {...}}``; the assistant message is the corrected answer, the passages are what the model was shown.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO, Any

from agent.store.models import ConversationDetail, FeedbackPublic, TurnPublic

CSV_COLUMNS = (
    "conversation_id", "conversation_created_at", "channel", "operator", "conversation_status", "title",
    "turn_id", "turn_index", "role", "created_at", "status", "error", "text", "question",
    "retrieval_ms", "generation_ms", "attribution_ms",
    "base_model", "adapter", "adapter_hash", "embedder", "index_version", "prompt_version",
    "best_score", "passage_doc_ids",
    "explanation_method", "confidence", "grounded_share", "top_doc_id",
    "rating", "thumbs_up", "thumbs_down", "reviewed", "reviewer", "reasons", "corrected_answer",
)


def write_jsonl(fh: IO[str], conversations: Iterable[ConversationDetail]) -> int:
    n = 0
    for conversation in conversations:
        fh.write(conversation.model_dump_json() + "\n")
        n += 1
    return n


def best_correction(feedback: list[FeedbackPublic]) -> FeedbackPublic | None:
    """The feedback whose corrected answer counts: a reviewed one before an unreviewed one, then the newest."""
    corrected = [f for f in feedback if f.corrected_answer and f.corrected_answer.strip()]
    if not corrected:
        return None
    return max(corrected, key=lambda f: (f.reviewed, f.created_at, f.id))


def _last_rating(feedback: list[FeedbackPublic]) -> str | None:
    rated = [f for f in feedback if f.rating]
    return rated[-1].rating if rated else None


def csv_row(conversation: ConversationDetail, turn: TurnPublic, questions: dict[int, str]) -> dict[str, Any]:
    explanation = turn.explanation
    correction = best_correction(turn.feedback)
    reviewers = [f.reviewer for f in turn.feedback if f.reviewed and f.reviewer]
    return {
        "conversation_id": str(conversation.id),
        "conversation_created_at": conversation.created_at.isoformat(),
        "channel": conversation.channel,
        "operator": conversation.operator,
        "conversation_status": conversation.status,
        "title": conversation.title,
        "turn_id": turn.id,
        "turn_index": turn.index,
        "role": turn.role,
        "created_at": turn.created_at.isoformat(),
        "status": turn.status,
        "error": turn.error,
        "text": turn.text,
        "question": questions.get(turn.reply_to_id) if turn.reply_to_id is not None else None,
        **{key: turn.latency.get(key) for key in ("retrieval_ms", "generation_ms", "attribution_ms")},
        **{key: turn.versions.get(key) for key in
           ("base_model", "adapter", "adapter_hash", "embedder", "index_version", "prompt_version")},
        "best_score": turn.best_score,
        "passage_doc_ids": "|".join(p.doc_id for p in turn.passages),
        "explanation_method": explanation.method if explanation else None,
        "confidence": explanation.confidence if explanation else None,
        "grounded_share": explanation.grounded_share if explanation else None,
        "top_doc_id": explanation.top_doc_id if explanation else None,
        "rating": _last_rating(turn.feedback),
        "thumbs_up": sum(f.rating == "up" for f in turn.feedback),
        "thumbs_down": sum(f.rating == "down" for f in turn.feedback),
        "reviewed": any(f.reviewed for f in turn.feedback),
        "reviewer": reviewers[-1] if reviewers else None,
        "reasons": "|".join(sorted({r for f in turn.feedback for r in f.reasons})),
        "corrected_answer": correction.corrected_answer if correction else None,
    }


def write_csv(fh: IO[str], conversations: Iterable[ConversationDetail]) -> int:
    writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for conversation in conversations:
        questions = {t.id: t.text for t in conversation.turns if t.role == "user"}
        for turn in conversation.turns:
            writer.writerow(csv_row(conversation, turn, questions))
            n += 1
    return n


def finetune_records(conversation: ConversationDetail) -> Iterable[dict[str, Any]]:
    """Chat fine-tuning examples for the corrected answers of one conversation: only corrections a reviewer made or
    reviewed (``reviewed`` with a ``reviewer``) count; anyone else's corrected answer never becomes training data."""
    questions = {t.id: t.text for t in conversation.turns if t.role == "user"}
    for turn in conversation.turns:
        correction = best_correction([f for f in turn.feedback if f.reviewed and f.reviewer])
        question = questions.get(turn.reply_to_id) if turn.reply_to_id is not None else None
        if turn.role != "assistant" or correction is None or not question:
            continue
        yield {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": correction.corrected_answer},
            ],
            "passages": [
                {"rank": p.rank, "doc_id": p.doc_id, "title": p.title, "text": p.text, "score": p.score}
                for p in turn.passages
            ],
            "metadata": {
                "conversation_id": str(conversation.id),
                "turn_id": turn.id,
                "feedback_id": correction.id,
                "original_answer": turn.text,
                "reviewed": correction.reviewed,
                "reviewer": correction.reviewer,
                "reasons": correction.reasons,
                "versions": turn.versions,
            },
        }


def write_finetune(fh: IO[str], conversations: Iterable[ConversationDetail]) -> int:
    n = 0
    for conversation in conversations:
        for record in finetune_records(conversation):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n
