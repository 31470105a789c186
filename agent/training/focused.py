"""Training examples as the agent shows them: passages cut by the evidence focus, best passage first.

The agent focuses every retrieved passage on the sentences closest to the question (:mod:`agent.generation.focus`)
before building the prompt, so an adapter must be trained on focused prompts too. :func:`focus_dataset` rewrites a
:class:`~agent.training.data.Dataset`: each example's passages go through the same :class:`Focus` (same embedder,
same ``keep``), the gold positions follow the new order, and the cited target is rebuilt from the example's
uncited ``reference`` at the gold passage's new ``[n]``. An answerable example whose answer did not survive the
focus (a sentence of it cut from the gold passage) is dropped, not turned into a hand-over: hand-overs taught at a
high rate made earlier adapters hand over on answerable questions (v11: 31-37%).
"""

from __future__ import annotations

import re
from dataclasses import replace

from tqdm.auto import tqdm

from agent.generation.focus import Focus
from agent.training.data import Dataset, Example, add_citation
from retrieval.types import Hit


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.replace("**", "").lower()))


def focus_example(ex: Example, focus: Focus) -> Example | None:
    """``ex`` with focused passages (None when an answerable example's answer was cut from its gold passage)."""
    focused = focus.focused(ex.question, [Hit(p, 1.0, i + 1) for i, p in enumerate(ex.passages)])
    passages = [h.passage for _, h in focused]
    new_pos = {old: n for n, (old, _) in enumerate(focused)}
    if not (ex.answerable and ex.gold):
        return replace(ex, passages=passages)
    gold = sorted(new_pos[g] for g in ex.gold)
    kept = " ".join(_norm(passages[g].text) for g in gold)
    if _norm(ex.reference) not in kept:
        return None
    return replace(ex, passages=passages, gold=gold, answer=add_citation(ex.reference, gold))


def focus_dataset(data: Dataset, focus: Focus, seed: int = 0, progress: bool = True) -> Dataset:
    """Every example of ``data`` focused (see module docstring); the sizes count what was dropped."""
    out: dict[str, list[Example]] = {"train": [], "eval": []}
    dropped = 0
    for side, examples in (("train", data.train), ("eval", data.eval)):
        for ex in tqdm(examples, desc=f"focus {side}", unit="ex", disable=not progress):
            new = focus_example(ex, focus)
            if new is None:
                dropped += 1
            else:
                out[side].append(new)
    result = Dataset.of(out["train"], out["eval"], seed)
    result.sizes["focus_dropped"] = dropped
    return result
