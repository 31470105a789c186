"""The learned attention estimator (#15 part 2): its features are the model's own attention (the fast decoder's
path equals the transformers model's), its weights ship beside the adapter for that adapter only, and on a few fixed
turns its token-level LDS on the exact subset tables is above a floor and above the untrained attention baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.attribution import estimator as est_mod
from agent.attribution.games import additive_prediction, all_masks
from agent.attribution.headfeatures import _hf, head_features
from agent.generation.prompt import build_prompt
from agent.settings import ADAPTERS_DIR

QUESTIONS = ["How long do I have to return an item?", "Do gift cards expire?", "How can I track my order?"]


def test_weights_fitted_for_another_adapter_are_not_used(tmp_path):
    n_features = 6 * 2 * 3 + est_mod.N_RANKS  # (attention, dla) x (token, previous, mean) x heads, + ranks
    w = np.zeros(n_features)
    w[:6] = 1.0  # attention mass of the first six heads at the token
    est = est_mod.Estimator(w=w, beta=np.zeros(5), adapter_hash="aaaa")
    (tmp_path / est_mod.FILENAME).write_text(json.dumps(est.to_json()))
    assert est_mod.load(tmp_path, "bbbb") is None
    loaded = est_mod.load(tmp_path, "aaaa")
    assert loaded is not None and np.allclose(loaded.w, w)
    x = np.random.default_rng(0).random((4, 2, 3, 2))  # (T, L, H, k)
    credit = loaded.credit(x, np.zeros_like(x), np.full(4, -1.0), np.full((4, 5), -2.0))
    assert credit.shape == (4, 2) and np.allclose(credit.sum(axis=1), 1.0)  # beta = 0: scale 1, shares sum to 1
    assert (credit.argmax(axis=1) == x.sum(axis=(1, 2)).argmax(axis=1)).all()  # more attention, more credit


def test_the_shipped_weights_name_the_shipped_adapter():
    from agent.generation.loading import adapter_hash

    folder = ADAPTERS_DIR / "smollm2-135m-support"
    data = json.loads((folder / est_mod.FILENAME).read_text())
    assert data["adapter_hash"] == adapter_hash(folder)
    assert np.asarray(data["w"]).shape == (6 * 30 * 9 + est_mod.N_RANKS,) and data["report"]["bench"]["turns"] > 0


def _lds(credit: np.ndarray, table) -> float:
    from scipy.stats import spearmanr

    masks = all_masks(table.k)
    actual = table.logp[[table.index[m] for m in masks]]  # (2^k, T)
    pred = additive_prediction(credit, masks, np.zeros(len(credit)))  # (2^k, T)
    values = [spearmanr(pred[:, t], actual[:, t]).statistic for t in range(actual.shape[1])
              if np.ptp(pred[:, t]) > 1e-9 and np.ptp(actual[:, t]) > 1e-9]
    return float(np.mean(values))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_learned_estimate_tracks_the_exact_tables_on_fixed_turns(agent, generator):
    from agent.attribution import attribute

    if est_mod.for_model(generator.model) is None:
        pytest.fail("no learned estimator shipped for the default adapter (run python -m bench.estimator_fit)")
    learned, attention = [], []
    for q in QUESTIONS:
        result = agent.ask(q)
        assert result.status == "ok"
        hits = result.hits
        args = (generator, result.layout, result.token_ids, result.token_texts, [h.passage for h in hits],
                [h.score for h in hits])
        est, _ = attribute(*args, method="learned")
        exact, table = attribute(*args, method="shapley")
        assert est.estimator == "learned" and exact.estimator == "exact"
        with generator.lock:
            feats = head_features(generator, result.layout, result.token_ids)
        # the estimate's pass is bfloat16 where the prefill is (Settings.prefill_precision): its log-probs are then
        # within bfloat16 rounding of the exact fp32 ones, else equal up to float rounding
        gap = np.abs(np.array([t.logprob for t in est.tokens]) - np.array([t.logprob for t in exact.tokens]))
        if generator.decoder.batched is not None:  # measured: at most 0.12 nats, mean under 0.01
            assert gap.max() < 0.25 and gap.mean() < 0.05, gap
        else:
            assert gap.max() < 1e-3, gap
        learned.append(_lds(np.array([t.credit for t in est.tokens]), table))
        attention.append(_lds(feats.x.mean(axis=(1, 2)).astype(np.float64), table))
    assert np.mean(learned) >= 0.5, (learned, attention)
    assert np.mean(learned) > np.mean(attention), (learned, attention)


@pytest.mark.slow
def test_the_fast_decoders_features_equal_the_transformers_models(generator):
    from agent.generation.decoding import fast_decoder
    from agent.generation.fastdecode import _bf16_copies
    from retrieval.types import Passage

    assert fast_decoder(generator.model) is not None  # the default decoder: its path is the one compared
    passages = [Passage(f"p{i}", f"d{i}", f"T{i}", text) for i, text in enumerate(
        ["Returns are accepted within 30 days of delivery.", "Gift cards never expire.", "Shipping takes 3 days."])]
    layout = build_prompt(generator.tokenizer, "How long do returns take?", passages, version=generator.prompt_version)
    reply = generator.tokenizer.encode("Returns are accepted within 30 days [1].", add_special_tokens=False)
    dec = fast_decoder(generator.model)
    batched = dec.batched
    with generator.lock:
        ref = _hf(generator.model, list(layout.input_ids), reply, layout.passage_spans, 5)
        try:
            dec.batched, dec._prefix = None, None  # the fp32 path: equal up to float rounding
            fp32 = head_features(generator, layout, reply)
            dec.batched, dec._prefix = _bf16_copies(dec.layers, dec.head) if batched is None else batched, None
            bf16 = head_features(generator, layout, reply)  # the bfloat16 projections: within their rounding
        finally:
            dec.batched, dec._prefix = batched, None
    assert fp32.x.shape == bf16.x.shape == ref.x.shape == (len(reply), 30, 9, 3)
    assert np.abs(fp32.x - ref.x).max() < 1e-3 and np.abs(fp32.logp - ref.logp).max() < 1e-3
    # the bound of the estimate's log-probs on the bfloat16 path (see the test above): measured at most 0.12 nats over
    # 40 real turns on an AMX-BF16 CPU, 0.17 on this reply's one 8-nat token on an AVX2-only CPU (no AMX: torch's other
    # bfloat16 kernel; `auto` never picks bfloat16 there)
    gap = np.abs(bf16.logp - ref.logp)
    assert np.abs(bf16.x - ref.x).max() < 0.05 and gap.max() < 0.25 and gap.mean() < 0.05, gap
    assert (bf16.top_ids[:, 0] == ref.top_ids[:, 0]).all()
    assert 0.001 < np.abs(bf16.logp - ref.logp).max()  # the bfloat16 path really ran
