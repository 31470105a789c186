"""The "dstc" recipe's data set: DSTC9/DSTC11 grounded turns, data/kb questions and Bitext, split by entity.

:func:`build_dataset` returns a :class:`~agent.training.data.Dataset`: ``train`` and ``eval`` lists of examples
(eval = held-out DSTC entities; KB and Bitext examples are on the train side only) and a ``sizes`` summary. Nothing
is written into the project tree.
"""

from __future__ import annotations

import random

from agent.training.bitext import build_bitext
from agent.training.data import DataConfig, Dataset
from agent.training.dstc import build_dstc
from agent.training.kb import build_kb


def build_dataset(cfg: DataConfig, index=None) -> Dataset:
    """All examples: (train, eval) split by DSTC entity; KB and Bitext examples on the train side only."""
    rng = random.Random(cfg.seed)
    if index is None:
        from retrieval.index import KnowledgeIndex

        index = KnowledgeIndex.build(cfg.kb_path, cfg.embedder, cfg.chunk_tokens, progress=False)
    train, held = build_dstc(cfg, rng)
    train += build_kb(cfg, rng, index)
    train += build_bitext(cfg, rng, index)
    return Dataset.of(train, held, cfg.seed)
