"""Answer selection (agent.generation.selector): answer kinds, IDF, feature rows, the shipped selector's pick with the
real embedder, the quote of two sentences, and fitting from development sets (bench.select_dev)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.generation.focus import Focus
from agent.generation.selector import (
    DEFAULT_SELECTOR,
    FEATURES,
    Idf,
    Selector,
    candidates,
    load_selector,
    question_kinds,
    unit_kinds,
)
from retrieval.types import Hit, Passage


def test_question_and_sentence_kinds() -> None:
    assert "money" in question_kinds("how much is the late fee?")
    assert "duration" in question_kinds("how long does a refund take")
    assert "contact" in question_kinds("what number do i call")
    assert question_kinds("can I recycle the box") == set()
    assert unit_kinds("A $7 late fee is added.") >= {"money"}
    assert "duration" in unit_kinds("Refunds arrive within 5 business days.")
    assert "contact" in unit_kinds("Email help@shop.example or call +1-555-0100.")
    assert unit_kinds("Late fees are explained below.") == set()


def _passage(i: int, title: str, text: str) -> Passage:
    return Passage(id=f"d{i}#0", doc_id=f"d{i}", title=title, text=text)


FEES = _passage(0, "Fees", "Late fees\nLate fees are explained below. A $7 late fee is added after 7 days. "
                           "You can ask for a waiver once a year.")
HOURS = _passage(1, "Contact hours", "Phone\nCall us from 8:00 to 20:00 on weekdays. The line is closed on Sundays.")


def test_idf_weighs_rare_terms_more() -> None:
    idf = Idf([FEES, HOURS, _passage(2, "Fees again", "More about fees and a waiver.")])
    assert idf("sunday") > idf("fee")  # stemmed terms: "sunday" in one passage, "fee" in all three


def test_feature_rows_name_every_feature() -> None:
    idf = Idf([FEES, HOURS])
    vecs = lambda texts: np.eye(len(texts), 8)[:, :8] if len(texts) <= 8 else np.ones((len(texts), 8)) / 8 ** 0.5
    cands = candidates("how much is the late fee", [Hit(FEES, 0.6, 1), Hit(HOURS, 0.2, 2)], vecs, idf)
    assert len(cands) == 3 + 2  # headings are not candidates
    assert all(c.features.shape == (len(FEATURES),) for c in cands)
    col = {n: i for i, n in enumerate(FEATURES)}
    seven = next(c for c in cands if "$7" in c.unit.text)
    explained = next(c for c in cands if "explained" in c.unit.text)
    assert seven.features[col["type_match"]] == 1 and explained.features[col["type_miss"]] == 1
    assert seven.features[col["hit_first"]] == 1 and cands[-1].features[col["hit_first"]] == 0
    waiver = next(c for c in cands if "waiver" in c.unit.text)
    assert seven.features[col["lex_unit"]] > 0 and waiver.features[col["lex_unit"]] == 0


def test_a_selector_file_fitted_on_other_features_is_refused(tmp_path: Path) -> None:
    data = json.loads(DEFAULT_SELECTOR.read_text())
    data["features"] = data["features"][:-1]
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="refit it"):
        Selector.load(bad)
    with pytest.raises(ValueError, match="MOMENTS_ANSWER_SELECTOR"):
        load_selector(str(tmp_path / "missing.json"))
    assert load_selector("cosine") is None
    shipped = load_selector("default")
    assert shipped is not None and 0 < shipped.threshold < 1


@pytest.fixture(scope="module")
def embed(kb_index):
    from retrieval.embedder import embed as _embed

    return lambda texts: _embed(kb_index.model, list(texts))


def test_the_shipped_selector_quotes_the_sentence_with_the_value_asked_for(embed) -> None:
    hits = [Hit(FEES, 0.62, 1), Hit(HOURS, 0.31, 2)]
    idf = Idf([FEES, HOURS])
    chosen = Focus(embed, keep=2, selector=load_selector("default"), idf=idf).select(
        "how much do you charge when I pay late?", hits, sentences=1)
    assert chosen.quote == "A $7 late fee is added after 7 days."
    assert chosen.cited == 1 and chosen.hits[0].passage.doc_id == "d0"
    assert chosen.support is not None and 0 <= chosen.support <= 1  # a probability, not a cosine


def test_two_sentence_quotes_come_from_one_passage_in_reading_order(embed) -> None:
    hits = [Hit(HOURS, 0.5, 1), Hit(FEES, 0.4, 2)]
    focus = Focus(embed, keep=2, selector=load_selector("default"), idf=Idf([FEES, HOURS]))
    chosen = focus.select("when can i phone you, and are you open on sunday?", hits, sentences=2)
    assert chosen.quote == "Call us from 8:00 to 20:00 on weekdays. The line is closed on Sundays."
    shown = chosen.hits[chosen.cited - 1].passage.text
    assert chosen.quote in shown  # the quoted sentences are the ones the focused passage shows


def test_show_limits_the_hits_and_keeps_the_quotes_passage(embed) -> None:
    extra = [_passage(5 + i, f"Other {i}", f"Topic {i}\nSomething unrelated about item {i} here.") for i in range(4)]
    hits = [Hit(p, 0.5 - i / 100, i + 1) for i, p in enumerate([*extra, FEES])]
    focus = Focus(embed, keep=0, selector=load_selector("default"), idf=Idf([*extra, FEES]))
    chosen = focus.select("how much is the late fee?", hits, show=3)
    assert len(chosen.hits) == 3 and chosen.hits[0].passage.doc_id == "d0" and chosen.cited == 1
    assert [h.rank for h in chosen.hits] == [1, 2, 3]


@pytest.mark.slow
def test_select_dev_fits_a_loadable_selector_from_development_sets(tmp_path: Path, monkeypatch) -> None:
    from bench import select_dev

    for name in ("a", "b"):  # two tiny sets: leave-one-set-out needs two
        kb = tmp_path / "dev" / name / "kb"
        kb.mkdir(parents=True)
        (kb / "fees.md").write_text("# Fees\n\nWhat we charge.\n\n## Late fees\n\nLate fees are explained below. "
                                    "A $7 late fee is added after 7 days.\n\n## Paper bills\n\nA paper bill costs "
                                    "$2 per month. Email bills are free.\n")
        (kb / "hours.md").write_text("# Contact hours\n\n## Phone\n\nCall +1-555-0100 from 8:00 to 20:00 on "
                                     "weekdays.\n\n## Chat\n\nLive chat is open 24/7. Type agent to reach a person.\n")
        qs = [{"id": f"{name}1", "question": "how much if i pay late", "article": "fees", "answer": "$7",
               "facts": ["$7"], "answerable": True},
              {"id": f"{name}2", "question": "what number do i ring", "article": "hours", "answer": "+1-555-0100",
               "facts": ["555-0100"], "answerable": True},
              {"id": f"{name}3", "question": "who founded the company", "article": None, "answer": None,
               "facts": [], "answerable": False}]
        (tmp_path / "dev" / name / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    out = tmp_path / "selector.json"
    monkeypatch.setattr(select_dev, "WEIGHTS", out)
    monkeypatch.setattr(select_dev, "RESULTS", tmp_path / "results")
    assert select_dev.main(["--dev", str(tmp_path / "dev"), "--cache", str(tmp_path / "cache"), "--fit",
                            "--folds", "1"]) == 0
    fitted = Selector.load(out)
    assert fitted.weights.shape == (len(FEATURES),) and np.isfinite(fitted.weights).all()
    report = json.loads((tmp_path / "results" / "select_dev.json").read_text())
    assert report["total"]["answerable"] == 4 and report["total"]["oracle"] == 1.0
    assert "Answer selection" in (tmp_path / "results" / "select_dev.md").read_text()


def test_the_default_embedder_has_a_selector_fitted_with_its_own_cosines() -> None:
    from agent.generation.selector import selector_file
    from agent.settings import Settings

    default = Settings.model_fields["embedder"].default
    path = selector_file(default)
    assert path != DEFAULT_SELECTOR and json.loads(path.read_text())["embedder"] == default
    assert load_selector("default", default).source == str(path)
