"""Attribution read-outs on synthetic games (no model): Shapley axioms, LOO, surrogate fit, sentences, options."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.attribution import Options, games, sentences
from agent.attribution.rescoring import SubsetScores, chain
from agent.attribution.summary import (
    confidence,
    grounded_share,
    is_content,
    retrieval_support,
)
from agent.attribution.surrogate import fit_surrogate, random_masks


def _table(k: int, value) -> SubsetScores:
    """A subset table whose token t has value ``value(members, t)``; 2 tokens."""
    masks = games.all_masks(k)
    logp = np.array([[value({j for j in range(k) if m >> j & 1}, t) for t in range(2)] for m in masks])
    return SubsetScores(k=k, masks=masks, logp=logp)


def test_shapley_of_additive_game_is_its_weights():
    w = np.array([[1.5, -0.5, 0.0, 2.0], [0.1, 0.2, 0.3, 0.4]])  # (tokens, passages)
    table = _table(4, lambda s, t: -3.0 + sum(w[t, j] for j in s))
    assert np.allclose(games.shapley(table), w)
    assert np.allclose(games.leave_one_out(table), w)
    assert np.allclose(games.grounding(table), w.sum(axis=1))


def test_shapley_axioms_on_a_game_with_interactions():
    # passages 0 and 1 are substitutes (either gives +2), passage 2 is a null player, 3 needs 0 (complement)
    def v(s, t):
        return -5.0 + 2.0 * bool(s & {0, 1}) + (1.0 if {0, 3} <= s else 0.0) + 0.1 * t

    table = _table(4, v)
    phi = games.shapley(table)
    assert np.allclose(phi.sum(axis=1), games.grounding(table))  # efficiency
    assert np.allclose(phi[:, 2], 0.0)  # null player
    assert phi[0, 0] > phi[0, 1] > 0  # 0 also completes 3
    # symmetry: swapping the two substitutes when 3 is gone
    sym = _table(3, lambda s, t: 2.0 * bool(s & {0, 1}))
    p = games.shapley(sym)
    assert np.allclose(p[:, 0], p[:, 1]) and np.allclose(p[:, 0], 1.0)
    assert np.allclose(games.leave_one_out(sym)[:, :2], 0.0)  # LOO sees neither substitute


def test_shapley_needs_every_subset():
    table = SubsetScores(k=3, masks=[7, 0], logp=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="all 8 subsets"):
        games.shapley(table)


def test_weights_sum_to_one_over_positions():
    for k in range(1, 7):
        w = games.shapley_weights(k)
        total = sum(w[s] * len(list(itertools.combinations(range(k - 1), s))) for s in range(k))
        assert total == pytest.approx(1.0)


def test_surrogate_recovers_an_additive_game():
    k, w = 7, np.array([[2.0, 0.0, -1.0, 0.5, 0.0, 0.0, 3.0]])
    masks = games.loo_masks(k) + random_masks(k, 48, seed=1)
    y = -4.0 + games.membership(masks, k) @ w.T  # (n, 1)
    fitted, b = fit_surrogate(masks, y, k, alpha=1e-4)
    assert np.allclose(fitted, w, atol=1e-2) and b[0] == pytest.approx(-4.0, abs=1e-2)
    sparse, _ = fit_surrogate(masks, y, k, alpha=0.3)
    assert sparse[0, 1] == 0.0 and sparse[0, 4] == 0.0 and sparse[0, 6] > 1.0


def test_random_masks_are_seeded():
    assert random_masks(6, 10, seed=3) == random_masks(6, 10, seed=3)
    assert all(0 <= m < 64 for m in random_masks(6, 10, seed=3))


def test_sentence_split_keeps_citations_and_prices():
    text = "You have 30 days to return it. [1] Shipping costs $5.95! Anything else?\nThanks"
    spans = sentences.split_sentences(text)
    parts = [text[a:b] for a, b in spans]
    assert parts == ["You have 30 days to return it. [1]", "Shipping costs $5.95!", "Anything else?", "Thanks"]
    assert sentences.model_citations(parts[0], k=3) == [0]
    assert sentences.model_citations("see [7] and [2][2]", k=3) == [1]
    offsets = sentences.token_offsets(["You", " have", " 30", " days", "", " to"])
    assert offsets[4] == (16, 16)
    assert sentences.token_range(offsets, 0, 8) == (0, 2)


def test_cite_rules():
    assert sentences.cite([5.0, 3.0, 0.4]) == [0, 1]
    assert sentences.cite([5.0, 2.0, 0.4]) == [0]
    assert sentences.cite([0.5, 0.2]) == []
    assert sentences.cite([3.0, 2.9, 2.8], max_cites=1) == [0]


def test_confidence_figures():
    assert is_content(" refund", False) and not is_content(" the", False) and not is_content("1", True)
    assert not is_content(".", False) and not is_content("", False)
    assert grounded_share(["grounded", "prior", "prior"], [True, True, False]) == 0.5
    assert retrieval_support([0.6, 0.1], [4.0, -1.0], floor=0.2, ceiling=0.6) == 1.0
    assert retrieval_support([0.4, 0.6], [1.0, 1.0], floor=0.2, ceiling=0.6) == pytest.approx(0.75)
    assert retrieval_support([0.4], [-1.0], floor=0.2, ceiling=0.6) == 0.0
    assert retrieval_support([None], [1.0], floor=0.2, ceiling=0.6) is None
    assert confidence(0.8, None) == 0.8 and confidence(0.8, 0.5) == 0.4


def test_options_reject_unknown_names():
    assert Options.from_kwargs(max_exact_k=4).max_exact_k == 4
    with pytest.raises(ValueError, match="unknown attribution option"):
        Options.from_kwargs(max_k=4)


class _Layout:
    def __init__(self, segments, passage_segments):
        self.segments, self.passage_segments = segments, passage_segments
        self.n_passages = len(passage_segments)


def test_chain_splits_prompt_around_passages():
    gaps, contents = chain(_Layout([[1, 2], [10], [3], [20, 21], [4, 5]], [1, 3]))
    assert gaps == [[1, 2], [3], [4, 5]] and contents == [[10], [20, 21]]


def test_a_packed_table_round_trips_in_float16():
    from agent.attribution.rescoring import pack_table, unpack_table

    rng = np.random.default_rng(0)
    table = SubsetScores(k=5, masks=games.all_masks(5), logp=-rng.random((32, 80)) * 20,
                         top_ids=rng.integers(0, 49152, (80, 5)), top_logp=-rng.random((80, 5)), forward_passes=4,
                         tokens_rescored=90, plain_tokens=300)
    data = pack_table(table)
    back = unpack_table(data)
    assert len(data) < table.logp.nbytes / 2  # float16 (random values barely compress; real tables do)
    assert back.k == 5 and back.masks == table.masks and back.index == table.index
    assert np.allclose(back.logp, table.logp, rtol=1e-3, atol=1e-3)  # float16: ~3 significant digits
    assert (back.top_ids == table.top_ids).all() and np.allclose(back.top_logp, table.top_logp, atol=1e-3)
    assert (back.forward_passes, back.tokens_rescored, back.plain_tokens) == (4, 90, 300)
    assert unpack_table(pack_table(SubsetScores(k=0, masks=[0], logp=np.zeros((1, 2))))).top_ids is None


def test_a_stored_table_gives_every_table_method_again():
    from agent.attribution.methods import TABLE_METHODS, readout

    w = np.array([[1.5, -0.5, 0.0], [0.1, 0.2, 0.3]])  # (tokens, passages)
    table = _table(3, lambda s, t: -3.0 + sum(w[t, j] for j in s))
    table.top_ids, table.top_logp = np.zeros((2, 5), dtype=np.int64), np.zeros((2, 5))
    opt = Options()
    assert set(TABLE_METHODS) == {"shapley", "loo", "surrogate"}
    assert np.allclose(readout("shapley", table, opt).credit, w)
    assert np.allclose(readout("loo", table, opt).credit, w)
    assert readout("surrogate", table, opt).estimator == "surrogate"
    with pytest.raises(ValueError, match="cannot be computed from a stored subset table"):
        readout("attention", table, opt)
    partial = SubsetScores(k=3, masks=games.loo_masks(3), logp=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="lacks 3 of the subsets 'shapley' needs"):
        readout("shapley", partial, opt)
