"""Per-token attribution of a reply over the retrieved passages (the "moments" of a turn).

Public API::

    from agent.attribution import explain, METHODS
    explanation = explain(generator, layout, reply_ids, token_texts, passages, scores, method="shapley", **options)
    explanation, table = attribute(generator, layout, ...)       # keep the table with the turn, then later:
    again = reexplain(table, tokenizer, reply_ids, token_texts, passages, scores, method="loo")

``METHODS`` maps method names to implementations (``shapley`` — exact, the default —, ``loo``, ``surrogate``,
``attention``, ``learned`` — the instant estimate of :mod:`~agent.attribution.estimator`); ``options`` are the fields of :class:`~agent.attribution.methods.Options`. Modules:

* :mod:`~agent.attribution.rescoring` — teacher-forced re-scoring of the reply under passage subsets (prefix trie);
* :mod:`~agent.attribution.games` — Shapley values, leave-one-out, grounding from the subset table;
* :mod:`~agent.attribution.surrogate` — ContextCite-style random ablations + Lasso, for large ``k``;
* :mod:`~agent.attribution.attention` — the attention baseline;
* :mod:`~agent.attribution.sentences`, :mod:`~agent.attribution.summary` — citations, flags, confidence;
* :mod:`~agent.attribution.builder` — ``explain()``, ``attribute()`` (also returns the subset table) and
  ``reexplain()`` (from a stored table, no model);
* :mod:`~agent.attribution.explanation` — the :class:`Explanation` value itself.

Importing this package loads numpy only; torch is imported when a method runs.
"""

from agent.attribution import estimator as _estimator  # noqa: F401 - registers the "learned" method
from agent.attribution.builder import attribute, explain, reexplain
from agent.attribution.methods import (
           METHODS,
           TABLE_METHODS,
           MethodResult,
           Options,
           register,
           register_table,
)

__all__ = ["METHODS", "TABLE_METHODS", "MethodResult", "Options", "attribute", "explain", "reexplain", "register",
           "register_table"]
