"""Logic of the LoRA evaluation bench that guards its figures (pure functions; no model needed)."""

from __future__ import annotations

import copy


def _items() -> list[dict]:
    return [{"id": "heldout-0", "kind": "heldout", "question": "Is there wifi?", "history": [["hi", "hello"]],
             "passages": [{"id": "x#0", "doc_id": "x", "title": "Hotel", "text": "Free wifi in all rooms.",
                           "source": "/a/kb.md"}],
             "gold": [0], "reference": "Yes, free wifi.", "answerable": True, "facts": []}]


def test_items_digest_tracks_the_prompts_only():
    from bench.lora_eval import items_digest

    base = _items()
    d = items_digest(base)
    same = copy.deepcopy(base)
    same[0]["reference"] = "another reference"  # not part of the prompt
    same[0]["passages"][0]["source"] = "/elsewhere/kb.md"  # checkout path, not prompt text
    assert items_digest(same) == d
    for change in (lambda it: it["passages"][0].update(text="Wifi costs 5 EUR."),
                   lambda it: it.update(question="Is there parking?"),
                   lambda it: it.update(history=[]),
                   lambda it: it["passages"].append(dict(it["passages"][0], title="Other"))):
        other = copy.deepcopy(base)
        change(other[0])
        assert items_digest(other) != d


def test_token_f1_ignores_citations_and_case():
    from bench.lora_eval import token_f1

    assert token_f1("Yes, free WiFi [1].", "yes free wifi") == 1.0
    assert token_f1("No.", "yes free wifi") == 0.0
    assert 0 < token_f1("free parking", "free wifi") < 1


def test_citation_precision_counts_only_citing_replies_with_gold():
    from bench.lora_eval import citation_precision

    it = {"gold": [1]}
    rows = [(it, {"reply": "Yes [2]."}), (it, {"reply": "No [1][2]."}), (it, {"reply": "no citation"}),
            ({"gold": []}, {"reply": "ignored [1]"})]
    assert citation_precision(rows) == 0.5
    assert citation_precision([(it, {"reply": "none"})]) is None
