"""LoRA training: data builder (entity split, agent prompt code), a tiny training run, save/load/merge, shipped adapter.

Real components throughout: the provisioned SmolLM2-135M, peft, the shared DSTC/Bitext data and the project KB.
Kept fast: a few short examples, LoRA on the top 2 layers, a handful of steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.settings import ADAPTERS_DIR, DEFAULT_KB, SHARED_DATA

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(not (SHARED_DATA / "dstc11" / "labels.json").is_file(),
                                 reason="../shared/data is not available")]


@pytest.fixture(scope="module")
def train_cache(tmp_path_factory) -> Path:
    """The data builder's embedding cache, in a temporary folder (never under ``~``)."""
    return tmp_path_factory.mktemp("train-cache")


@pytest.fixture(scope="module")
def dataset(kb_index, train_cache):
    import torch

    from agent.training.data import DataConfig
    from agent.training.mix import build_dataset

    torch.set_num_threads(1)
    cfg = DataConfig(shared_data=SHARED_DATA, kb_path=DEFAULT_KB, max_turns=40, bitext_n=20, cache_dir=train_cache)
    return build_dataset(cfg, index=kb_index)


def test_split_by_entity_and_mix(dataset):
    from agent.training.data import entities

    assert dataset.train and dataset.eval
    assert not entities(dataset.train) & entities(dataset.eval)
    sources = {e.source for e in dataset.train}
    assert {"kb", "bitext"} <= sources and sources & {"dstc11", "dstc9"}
    for e in dataset.train + dataset.eval:
        assert 1 <= len(e.passages) <= 3
        if e.answerable and e.gold:
            assert all(f"[{g + 1}]" in e.answer for g in e.gold)  # the target cites the gold passages
        assert "{{" not in e.answer
    unans = [e for e in dataset.train + dataset.eval if not e.answerable]
    assert unans and all("colleague" in e.answer for e in unans)
    # the held-out kb evaluation questions are never training questions
    kb_eval = {json.loads(x)["question"].lower() for x in (DEFAULT_KB.parent / "eval" / "kb_questions.jsonl")
               .read_text().splitlines()}
    assert not kb_eval & {e.question.lower() for e in dataset.train}


def test_hand_over_targets_are_varied_and_chitchat_hand_overs_optional(dataset, train_cache):
    """Fixed hand-over strings made greedy decoding collapse onto them (session 2); the pools are varied now."""
    import dataclasses
    import random

    from agent.training.data import (
        _CLOSING_RE,
        _HANDOVER_REPLIES,
        ABSTAIN_RE,
        ABSTAIN_REPLIES,
        DataConfig,
    )
    from agent.training.dstc import build_dstc

    for pool in (ABSTAIN_REPLIES, _HANDOVER_REPLIES):
        assert all(ABSTAIN_RE.search(r) for r in pool)
        assert len({" ".join(r.split()[:2]) for r in pool}) == len(pool)  # no two start alike
    unans = [e.answer for e in dataset.train + dataset.eval if not e.answerable]
    assert set(unans) <= set(ABSTAIN_REPLIES) and len(set(unans)) >= 3
    cfg = DataConfig(shared_data=SHARED_DATA, kb_path=DEFAULT_KB, max_turns=300, bitext_n=0, chitchat_rate=1.0,
                     cache_dir=train_cache)
    with_handover = [e for e in build_dstc(cfg, random.Random(0))[0] if e.source == "dstc11-chitchat"]
    assert any(not _CLOSING_RE.search(e.question) for e in with_handover)  # requests are kept and handed over
    closings_only = [e for e in build_dstc(dataclasses.replace(cfg, handover_chitchat=False), random.Random(0))[0]
                     if e.source == "dstc11-chitchat"]
    assert closings_only and len(closings_only) < len(with_handover)
    assert all(_CLOSING_RE.search(e.question) and not ABSTAIN_RE.search(e.answer) for e in closings_only)


def test_grounded_bitext_keeps_the_tone_and_cites_the_passage(kb_index, train_cache):
    import random

    from agent.training.bitext import build_bitext
    from agent.training.data import DataConfig, strip_citations
    from agent.training.kb import _kb_answer

    cfg = DataConfig(shared_data=SHARED_DATA, kb_path=DEFAULT_KB, cache_dir=train_cache, bitext_n=12,
                     bitext_grounded=True)
    out = build_bitext(cfg, random.Random(0), kb_index)
    assert len(out) == 12
    for e in out:
        (g,) = e.gold
        fact = _kb_answer(e.passages[g])[1]
        assert f"[{g + 1}]" in e.answer and strip_citations(e.answer).endswith(fact)
        opener = strip_citations(e.answer)[: -len(fact)].strip()
        assert opener and ":" not in opener and "{{" not in e.answer


def test_encode_uses_agent_prompt(dataset, generator):
    from agent.generation.prompt import build_prompt
    from agent.training.data import encode

    tok = generator.tokenizer
    ex = next(e for e in dataset.train if e.history)
    ids, labels = encode(tok, ex, max_len=2048)
    prompt = build_prompt(tok, ex.question, ex.passages, ex.history).input_ids
    assert ids[: len(prompt)] == prompt
    assert labels[: len(prompt)] == [-100] * len(prompt)
    assert labels[len(prompt):] == ids[len(prompt):]
    assert tok.decode(ids[len(prompt):-1]) == ex.answer.strip()
    assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    short = encode(tok, ex, max_len=len(ids) - 1)  # too long: history is dropped first
    assert short is None or len(short[0]) < len(ids)


def _tiny_examples():
    from agent.training.data import Example
    from retrieval.types import Passage

    ps = [Passage(id="a#0", doc_id="a", title="Returns", text="Items can be returned within 30 days."),
          Passage(id="b#0", doc_id="b", title="Gift cards", text="Gift cards never expire.")]
    qa = [("How long can I return things?", "You can return items within 30 days [1]."),
          ("Do gift cards expire?", "No, gift cards never expire [2].")]
    return [Example(source="test", entity="t", question=q, answer=a, passages=ps) for q, a in qa]


@pytest.fixture(scope="module")
def tiny_run(settings, tmp_path_factory):
    from agent.training.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("train-run")
    cfg = TrainConfig(models_path=settings.models_dir, run_dir=run_dir, max_steps=6, grad_accum=1, lr=2e-3,
                      warmup_steps=1, lora_r=8, lora_alpha=16, lora_dropout=0.0, lora_layers=2,
                      checkpoint_every=3, progress=False)
    record = train(cfg, examples=_tiny_examples(), sizes={"train": 2})
    return cfg, record


def test_training_loss_goes_down_and_records(tiny_run):
    cfg, record = tiny_run
    losses = record["losses"]
    assert record["steps"] == 6 and len(losses) == 6
    assert sum(losses[-2:]) < sum(losses[:2])
    saved = json.loads((Path(cfg.run_dir) / "run.json").read_text())
    assert saved["config"]["lora_r"] == 8 and saved["complete"]
    assert (Path(cfg.run_dir) / "checkpoint" / "state.json").is_file()
    size = (Path(cfg.run_dir) / "adapter" / "adapter_model.safetensors").stat().st_size
    assert size < 20_000_000


def test_resume_continues_from_checkpoint(tiny_run):
    from dataclasses import replace

    from agent.training.train import train

    cfg, record = tiny_run
    more = train(replace(cfg, max_steps=8), examples=_tiny_examples(), sizes={"train": 2})
    assert more["steps"] == 8
    assert more["losses"][:6] == record["losses"]


def test_save_load_merge_round_trip(tiny_run, settings):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from agent.generation.provision import resolve_model

    cfg, _ = tiny_run
    model_dir = resolve_model("smollm2-135m", settings.models_dir)
    ids = torch.tensor([[1, 504, 3458, 314, 260, 1789, 30]])
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager")
    with torch.inference_mode():
        base_logits = base(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(base, str(Path(cfg.run_dir) / "checkpoint")).eval()
    with torch.inference_mode():
        adapted = peft_model(input_ids=ids).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-4)  # the adapter does something
    merged = peft_model.merge_and_unload().eval()
    with torch.inference_mode():
        merged_logits = merged(input_ids=ids).logits
    torch.testing.assert_close(merged_logits, adapted, atol=2e-4, rtol=1e-4)


SHIPPED = ADAPTERS_DIR / "smollm2-135m-support"


@pytest.mark.skipif(not (SHIPPED / "adapter_config.json").is_file(), reason="no shipped adapter")
def test_default_agent_has_shipped_adapter(settings):
    from agent.generation.loading import adapter_hash, load_generator

    assert settings.adapter == "auto"
    gen = load_generator(settings)
    assert gen.adapter_id == "smollm2-135m-support"
    assert gen.adapter_hash == adapter_hash(SHIPPED) and len(gen.adapter_hash) == 12
    assert (SHIPPED / "README.md").is_file()


@pytest.mark.skipif(not (SHIPPED / "adapter_config.json").is_file(), reason="no shipped adapter")
def test_base_model_stays_selectable_and_the_adapter_is_really_active(settings, generator):
    """``none`` runs the base model alone; the adapter selected by folder is the default one and changes the logits."""
    import torch

    from agent.generation.loading import adapter_hash, load_generator

    base = load_generator(settings.model_copy(update={"adapter": "none"}))
    assert base.adapter_id is None and base.adapter_hash is None
    by_folder = load_generator(settings.model_copy(update={"adapter": str(SHIPPED)}))
    assert by_folder.adapter_hash == generator.adapter_hash == adapter_hash(SHIPPED)
    assert json.loads((SHIPPED / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2-135m"
    assert "## Evaluation" in (SHIPPED / "README.md").read_text()
    ids = torch.tensor([generator.tokenizer.encode("How long do I have to return an item?")])
    with torch.inference_mode():
        plain, tuned, again = (g.model(ids).logits[0, -1] for g in (base, generator, by_folder))
    assert (plain - tuned).abs().max() > 0.1
    torch.testing.assert_close(tuned, again)
