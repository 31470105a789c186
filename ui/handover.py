"""The hand-over summary: what a colleague taking over an escalated conversation reads first (in Review and from
``/handover``): the customer's question, what Moments tried, and the passages it had. Built from the stored
conversation alone, so it is the same wherever it is shown."""

from __future__ import annotations

from agent.store import ConversationDetail

QUOTE_CHARS = 160


def _quote(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return "“" + (flat if len(flat) <= QUOTE_CHARS else flat[: QUOTE_CHARS - 1] + "…") + "”"


def handover_summary(conv: ConversationDetail) -> str:
    """Plain text, a few lines: question(s), the last answer and how sure it was, the passages it was given."""
    turns = sorted(conv.turns, key=lambda t: t.index)
    questions = [t for t in turns if t.role == "user"]
    answers = [t for t in turns if t.role == "assistant"]
    if not questions:
        return "Handed over before the customer asked anything."
    lines = [f"Customer asked: {_quote(questions[-1].text)}"]
    if len(questions) > 1:
        lines.append(f"Earlier in the conversation ({len(questions) - 1} more): "
                     + "; ".join(_quote(q.text) for q in questions[:-1][-3:]))
    if not answers:
        lines.append("Moments had not answered yet.")
        return "\n".join(lines)
    last = answers[-1]
    if last.status == "abstained":
        best = f" (best passage match {last.best_score:.2f})" if last.best_score is not None else ""
        tried = f"Moments did not answer: it abstained rather than guess{best}."
    elif last.status == "error":
        tried = f"Moments failed to answer ({last.error or 'error'})."
    else:
        conf = last.explanation.confidence if last.explanation is not None else None
        sure = f" (confidence {conf:.2f})" if conf is not None else ""
        tried = f"Moments answered{sure}: {_quote(last.text)}"
    lines.append(tried)
    passages = sorted(last.passages, key=lambda p: -p.score)
    if passages:
        lines.append("Passages it had: " + "; ".join(f"{p.title} ({p.score:.2f})" for p in passages))
    notes = [f.comment for t in answers for f in t.feedback if f.comment]
    if notes:
        lines.append("Notes: " + " | ".join(notes[-3:]))
    return "\n".join(lines)
