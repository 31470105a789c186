"""Training examples from Bitext customer-service turns (a minority of the "dstc" recipe's mix).

The instruction is asked with the KB passages retrieved for it; the target is the first sentences of the response
with ``{{placeholders}}`` filled from :data:`STORE_PROFILE` (sentences with other placeholders are dropped). With
``bitext_grounded`` the target keeps only Bitext's friendly opener and adds the answer from the best-matching KB
passage, cited, so that customer-service questions are not taught to ignore passages.
"""

from __future__ import annotations

import csv
import random
import re

from agent.training.data import _SENT_END, DataConfig, Example, add_citation
from agent.training.kb import _kb_answer

#: Values for Bitext ``{{placeholders}}``: a small fictional-store profile (the data/kb store).
STORE_PROFILE = {
    "website name": "northwindgoods.example",
    "website url": "northwindgoods.example",
    "company name": "Northwind Goods",
    "customer support phone number": "+1-555-0142",
    "customer support email": "support@northwindgoods.example",
    "customer support hours": "Monday to Friday, 8:00 to 20:00 ET",
    "live chat support": "live chat",
    "customer service phone number": "+1-555-0142",
    "customer service email": "support@northwindgoods.example",
}


def _fill_placeholders(text: str) -> str:
    """Fill known ``{{placeholders}}`` from the store profile; drop sentences with unknown ones."""
    def fill(m: re.Match) -> str:
        return STORE_PROFILE.get(m.group(1).strip().lower(), m.group(0))

    kept = []
    for sent in _SENT_END.split(text.replace("\n", " ")):
        sent = re.sub(r"\{\{\s*([^}]+?)\s*\}\}", fill, sent)
        if "{{" not in sent and sent.strip():
            kept.append(sent.strip())
    return " ".join(kept)


def build_bitext(cfg: DataConfig, rng: random.Random, index) -> list[Example]:
    """A minority of Bitext customer-service turns (first sentences of the response, placeholders handled)."""
    with (cfg.shared_data / "bitext" / "customer_support.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rng.shuffle(rows)
    out: list[Example] = []
    for row in rows:
        if len(out) >= cfg.bitext_n:
            break
        filled = _fill_placeholders(row["response"])
        sents = [s for s in _SENT_END.split(filled) if s and not s.rstrip().endswith(":")][:2]
        q = re.sub(r"\{\{[^}]*\}\}", "my order", row["instruction"]).strip()
        hits = index.search(q, cfg.k)
        ps = [h.passage for h in hits]
        if cfg.bitext_grounded:
            # tone from Bitext, facts from the passages: the opener, then the top passage's answer with a citation
            if (not sents or not hits or hits[0].score < cfg.bitext_min_score or ":" in sents[0]
                    or not 4 <= len(sents[0].split()) <= 25):
                continue
            _, fact = _kb_answer(hits[0].passage)
            if len(fact.split()) < 4:
                continue
            rng.shuffle(ps)
            answer = f"{sents[0]} {add_citation(fact, [ps.index(hits[0].passage)])}"
        else:
            answer = " ".join(sents)
            if not (5 <= len(answer.split()) <= 60):
                continue
        out.append(Example(source="bitext", entity=f"bitext:{row['intent']}", question=q, answer=answer,
                           passages=ps, gold=[ps.index(hits[0].passage)] if cfg.bitext_grounded else [],
                           reference=answer))
    return out
