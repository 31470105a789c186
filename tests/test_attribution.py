"""Attribution on the real model (SmolLM2-135M): the mathematics of Shapley/LOO, the prefix trie, faithfulness.

The generator is loaded once for the module; replies are short (<= 24 tokens) and passages a few sentences, so the
whole module runs in well under three minutes on two cores (torch uses one thread).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from agent.attribution import METHODS, explain
from agent.attribution.explanation import Explanation
from agent.attribution.games import all_masks
from agent.attribution.rescoring import score_plain, score_subsets
from agent.generation.decoding import stream_tokens
from agent.generation.prompt import build_prompt
from agent.settings import PROJECT_ROOT, Settings
from retrieval.types import Passage

pytestmark = [pytest.mark.slow]

MAX_NEW = 24
RETURNS = Passage("return-policy#0", "return-policy", "Return Policy",
                  "Return windows\nYou can return most items within 30 days of delivery for a full refund. "
                  "Northwind Rewards Gold members have 60 days.")
SHIPPING = Passage("shipping-options-and-costs#0", "shipping-options-and-costs", "Shipping Options and Costs",
                   "Standard shipping takes 3-5 business days and costs $5.95; it is free on orders over $50.")
GARDEN = Passage("garden#0", "garden", "Garden Furniture",
                 "Our teak benches are oiled once a year and should be covered during the winter months.")


@pytest.fixture(scope="module")
def gen():
    torch.set_num_threads(1)
    from agent.generation.loading import load_generator

    return load_generator(Settings())


_TURNS: dict = {}


def _turn(gen, question: str, passages: tuple[Passage, ...], max_new: int = MAX_NEW):
    """Generate (once per module) the greedy reply to ``question`` over ``passages``."""
    key = (question, passages, max_new)
    if key not in _TURNS:
        layout = build_prompt(gen.tokenizer, question, list(passages))
        steps = list(stream_tokens(gen.model, gen.tokenizer, layout.input_ids, max_new))
        _TURNS[key] = layout, [s.token_id for s in steps], [s.text for s in steps]
    return _TURNS[key]


@pytest.fixture(scope="module")
def returns_turn(gen):
    """k=3: the relevant passage first, then two irrelevant ones; explained with exact Shapley."""
    passages = (RETURNS, SHIPPING, GARDEN)
    layout, ids, texts = _turn(gen, "How many days do I have to return an item?", passages)
    exp = explain(gen, layout, ids, texts, list(passages), [0.71, 0.32, 0.05])
    return layout, ids, texts, passages, exp


@pytest.fixture(scope="module")
def plain_table(gen, returns_turn):
    """The same 2^k log-probabilities from plain, independent forward passes (no cache, no batching)."""
    layout, ids, _, passages, _ = returns_turn
    k = len(passages)
    return {m: score_plain(gen.model, layout.ids(keep={j for j in range(k) if m >> j & 1}), ids)
            for m in all_masks(k)}


def test_reply_is_about_returns(returns_turn):
    _, ids, texts, _, exp = returns_turn
    assert len(ids) >= 5 and exp.reply == "".join(texts)
    assert exp.method == "shapley" and exp.estimator == "exact" and exp.k == 3
    assert len(exp.tokens) == len(ids) and all(len(t.alternatives) == 5 for t in exp.tokens)


def test_shapley_efficiency(returns_turn, plain_table):
    *_, exp = returns_turn
    full = (1 << exp.k) - 1
    direct = plain_table[full] - plain_table[0]  # logp[all] - logp[∅] from plain passes
    for t, tok in enumerate(exp.tokens):
        assert sum(tok.shapley) == pytest.approx(tok.grounding, abs=1e-4)
        assert tok.grounding == pytest.approx(direct[t], abs=1e-4)


def test_prefix_trie_equals_plain_forward_passes(gen, returns_turn, plain_table):
    layout, ids, _, passages, exp = returns_turn
    table = score_subsets(gen.model, layout, ids, all_masks(len(passages)))
    worst = max(float(np.abs(table.row(m) - ref).max()) for m, ref in plain_table.items())
    assert worst < 1e-4
    # ... and the trie re-scored far fewer tokens than the 2^k plain passes would have
    assert table.tokens_rescored < 0.7 * table.plain_tokens
    assert exp.forward_passes == table.forward_passes and exp.tokens_rescored == table.tokens_rescored


def test_the_kept_table_explains_the_reply_again_without_the_model(gen, returns_turn):
    """attribute() hands back the subset table; packed (float16) and unpacked, it gives the same explanation, and
    leave-one-out, with no model call."""
    from agent.attribution import attribute, reexplain
    from agent.attribution.rescoring import pack_table, unpack_table

    layout, ids, texts, passages, exp = returns_turn
    explained, table = attribute(gen, layout, ids, texts, list(passages), [0.71, 0.32, 0.05])
    assert explained.matrix("shapley") == exp.matrix("shapley")  # the same explanation as explain()
    assert len(table.masks) == 1 << len(passages) and table.logp.shape == (8, len(ids))
    stored = unpack_table(pack_table(table))
    redone = reexplain(stored, gen.tokenizer, ids, texts, list(passages), [0.71, 0.32, 0.05])
    assert redone.forward_passes == 0 and redone.estimator == "exact"
    assert np.abs(np.array(redone.matrix("shapley")) - np.array(exp.matrix("shapley"))).max() < 0.05  # float16
    assert [t.top_passage for t in redone.tokens] == [t.top_passage for t in exp.tokens]
    assert [t.alternatives[0][0] for t in redone.tokens] == [t.alternatives[0][0] for t in exp.tokens]
    loo = reexplain(stored, gen.tokenizer, ids, texts, list(passages), [0.71, 0.32, 0.05], method="loo")
    assert np.abs(np.array(loo.matrix("loo")) - np.array(exp.matrix("loo"))).max() < 0.05


def test_loo_against_direct_recomputation(returns_turn, plain_table):
    """loo[t, j] == logp[all] - logp[all without j], both from one plain forward pass each (header [j+1] kept)."""
    _, _, _, passages, exp = returns_turn
    k = len(passages)
    full = plain_table[(1 << k) - 1]
    for j in range(k):
        without = plain_table[((1 << k) - 1) ^ (1 << j)]  # = score_plain(layout.ids(keep=all - {j}), reply)
        loo = np.array([t.loo[j] for t in exp.tokens])
        assert np.abs(loo - (full - without)).max() < 1e-4


def test_full_context_probabilities_and_alternatives(gen, returns_turn, plain_table):
    *_, exp = returns_turn
    full = plain_table[(1 << exp.k) - 1]
    for t, tok in enumerate(exp.tokens):
        assert tok.logprob == pytest.approx(full[t], abs=1e-4)
        probs = [p for _, p in tok.alternatives]
        assert probs == sorted(probs, reverse=True) and probs[0] <= 1.0
        assert tok.prob <= probs[0] + 1e-6  # greedy decoding picked the most likely token (or a tie)


def test_irrelevant_passages_get_near_zero_credit(returns_turn):
    *_, exp = returns_turn
    totals = exp.passage_totals()
    assert totals[0] > 3.0  # the return policy carries the answer
    assert abs(totals[2]) < 0.15 * totals[0]  # garden furniture: nothing to do with it
    assert abs(totals[1]) < 0.25 * totals[0]
    assert exp.top_doc_id == "return-policy"
    assert exp.sentences and exp.sentences[0].cited[:1] == [0]


def test_duplicated_passage_splits_credit_symmetrically(gen):
    passages = (RETURNS, RETURNS, GARDEN)
    layout, ids, texts = _turn(gen, "How many days do I have to return an item?", passages)
    exp = explain(gen, layout, ids, texts, list(passages), None)
    a, b, c = exp.passage_totals()
    assert a > 1.0 and b > 1.0  # both copies are credited ...
    assert abs(a - b) < 0.2 * (a + b)  # ... about equally (positions differ, so not bit-identical)
    assert abs(c) < 0.15 * (a + b)
    # leave-one-out misses redundancy: each copy alone looks (almost) unnecessary
    loo = np.array(exp.matrix("loo")).sum(axis=0)
    assert loo[0] + loo[1] < 0.5 * (a + b)


def _kb_passage(article: str, fact: str | None = None) -> Passage:
    """The section of a KB article that states ``fact`` (the first section when None)."""
    text = (PROJECT_ROOT / "data" / "kb" / f"{article}.md").read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ").strip()
    sections = [s.strip() for s in re.split(r"\n## ", text)[1:]]
    pick = next((i for i, s in enumerate(sections) if fact and fact.lower() in s.lower()), 0)
    body = sections[pick]
    body = body.split("\n\n")
    return Passage(f"{article}#{pick}", article, title, "\n".join(body[:2])[:420])


QUESTIONS = ["q021", "q030", "q036"]  # declined-payment lockout, signup code validity, password-reset link


@pytest.mark.parametrize("qid", QUESTIONS)
def test_top1_removal_lowers_reply_logprob_most(gen, qid):
    """Removing the passage Shapley ranks first lowers the reply's log-probability more than removing any other."""
    rows = [json.loads(line) for line in (PROJECT_ROOT / "data/eval/kb_questions.jsonl").read_text().splitlines()]
    q = next(r for r in rows if r["id"] == qid)
    others = [a for a in ("gift-cards", "store-pickup", "sizing-guide") if a != q["article"]][:2]
    passages = (_kb_passage(others[0]), _kb_passage(q["article"], q["facts"][0]), _kb_passage(others[1]))
    layout, ids, texts = _turn(gen, q["question"], passages)
    exp = explain(gen, layout, ids, texts, list(passages), None)
    top = max(range(3), key=lambda j: exp.passage_totals()[j])
    # reply log-probability drop when one passage is removed: sum over tokens of logp[all] - logp[all - j]
    drop = np.array(exp.matrix("loo")).sum(axis=0)
    assert drop[top] > max(drop[j] for j in range(3) if j != top)
    assert drop[top] > 0.5


def test_json_round_trip(returns_turn):
    *_, exp = returns_turn
    again = Explanation.from_json(exp.to_json())
    assert again == exp
    assert again.to_dict() == json.loads(exp.to_json())
    text = exp.render_text(per_token=True)
    assert "‹" in text and "[1] Return Policy" in text
    assert exp.summary()["top_doc_id"] == "return-policy"


def test_fallback_above_max_k_uses_loo_and_surrogate(gen):
    passages = (RETURNS, SHIPPING, GARDEN,
                Passage("g#0", "gift-cards", "Gift Cards", "Gift cards never expire."),
                Passage("p#0", "store-pickup", "Store Pickup", "Pickup orders are held for 7 days."),
                Passage("c#0", "contact-us", "Contact Us", "Call us on weekdays from 8:00 to 20:00 ET."))
    layout, ids, texts = _turn(gen, "How many days do I have to return an item?", passages, 16)
    exp = explain(gen, layout, ids, texts, list(passages), None, n_ablations=16)
    assert exp.estimator == "surrogate" and exp.k == 6
    assert any("k=6 > 5" in n and "surrogate" in n for n in exp.notes)
    assert all(t.shapley is None and len(t.loo) == 6 and len(t.credit) == 6 for t in exp.tokens)
    assert exp.forward_passes > 0 and exp.tokens_rescored < exp.plain_tokens
    assert max(range(6), key=lambda j: exp.passage_totals()[j]) == 0


def test_attention_method_is_separate_and_labelled(gen, returns_turn):
    layout, ids, texts, passages, exact = returns_turn
    assert set(METHODS) >= {"shapley", "loo", "surrogate", "attention"}
    exp = explain(gen, layout, ids, texts, list(passages), None, method="attention")
    assert exp.method == "attention" and exp.estimator == "attention"
    assert all(t.shapley is None for t in exp.tokens)
    for a, b in zip(exp.tokens, exact.tokens):
        assert a.grounding == pytest.approx(b.grounding, abs=1e-4)
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain(gen, layout, ids, texts, list(passages), None, method="nope")


def test_no_passages_and_empty_reply(gen, returns_turn):
    """k = 0: every token is the model's prior; an empty reply explains to nothing without a model call."""
    _, ids, texts, _, _ = returns_turn
    layout = build_prompt(gen.tokenizer, "How many days do I have to return an item?", [])
    exp = explain(gen, layout, ids[:6], texts[:6], [], [])
    assert exp.k == 0 and exp.top_doc_id is None and exp.grounded_share == 0.0
    assert all(t.flag == "prior" and t.credit == [] and t.grounding == 0.0 for t in exp.tokens)
    empty = explain(gen, layout, [], [], [], [])
    assert empty.tokens == [] and empty.forward_passes == 0 and empty.reply == ""
