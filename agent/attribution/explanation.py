"""The explanation of one reply: every token (a "moment") with its probability, alternatives and passage credit.

Contract
--------
:class:`Explanation` is a plain value (dataclasses, no numpy, no torch): built by :func:`agent.attribution.explain`,
stored as JSON by the conversation store, rendered by the CLI and the UI. ``Explanation.from_dict(e.to_dict())``
equals ``e`` and ``to_json``/``from_json`` round-trip through text.

Passage indices are 0-based everywhere (passage ``j`` is shown to the model and the user as ``[j+1]``).

* ``tokens[t].credit[j]`` — the method's credit of passage ``j`` for reply token ``t``, in nats of
  log-probability: exact Shapley values by default (they sum to ``grounding``), a surrogate fit when ``k`` is
  above the exact limit (``estimator == "surrogate"``, see ``notes``), attention mass for the ``attention`` method.
* ``tokens[t].shapley`` / ``loo`` — exact Shapley values and leave-one-out deltas when they were computed, else None.
* ``tokens[t].grounding`` — ``logp[all passages] - logp[no passage]``; ``flag`` is ``"grounded"`` when it reaches the
  grounding threshold, else ``"prior"`` (the model would have said it anyway: on a content token, a possible
  hallucination).
* ``sentences`` — the reply cut into sentences, each with its summed credit per passage and the passages it cites.
* ``confidence`` — reply-level, in ``[0, 1]``: ``grounded_share × retrieval_support`` (see
  :mod:`agent.attribution.summary`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

EXPLANATION_VERSION = "e1"
FLAGS = ("grounded", "prior")
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass
class TokenAttribution:
    """One reply token: what the model chose, what it was choosing between, and which passage moved it."""

    index: int
    text: str
    token_id: int
    logprob: float
    prob: float
    alternatives: list[tuple[str, float]]  # top alternatives under the full context: (token text, probability)
    credit: list[float]  # per passage, the method's score (nats)
    shapley: list[float] | None
    loo: list[float] | None
    grounding: float | None
    flag: str  # "grounded" | "prior"
    top_passage: int | None
    content: bool  # a content token (counts toward grounded_share): not punctuation, a stop word or a [n] marker

    @classmethod
    def from_dict(cls, d: dict) -> TokenAttribution:
        d = dict(d)
        d["alternatives"] = [(str(t), float(p)) for t, p in d.get("alternatives", [])]
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class PassageCredit:
    """A retrieved passage as the explanation sees it: its retrieval score and its total credit over the reply."""

    index: int
    id: str
    doc_id: str
    title: str
    score: float | None  # retrieval score (cosine), None when unknown
    credit: float  # sum over reply tokens of the token credit (nats)
    grounded_tokens: int  # grounded tokens whose top passage is this one

    @classmethod
    def from_dict(cls, d: dict) -> PassageCredit:
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class SentenceCitation:
    """A reply sentence: its character span, token range ``[token_start, token_end)`` and passage citations."""

    text: str
    start: int
    end: int
    token_start: int
    token_end: int
    scores: list[float]  # per passage, summed token credit over the sentence (nats)
    cited: list[int]  # passages cited by attribution, strongest first
    model_cited: list[int]  # passages the model itself cited with [n] markers in this sentence
    grounded_share: float | None  # share of the sentence's content tokens flagged grounded

    @classmethod
    def from_dict(cls, d: dict) -> SentenceCitation:
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def render(self) -> str:
        """The sentence followed by its attribution citations as ``[n]`` markers."""
        return self.text + "".join(f" [{j + 1}]" for j in self.cited)


@dataclass
class Explanation:
    """Everything known about why the reply came out as it did (see module docstring)."""

    method: str
    estimator: str  # "exact", "surrogate", "loo" or "attention"
    k: int
    reply: str
    tokens: list[TokenAttribution]
    passages: list[PassageCredit]
    sentences: list[SentenceCitation]
    confidence: float
    grounded_share: float
    top_doc_id: str | None
    forward_passes: int
    tokens_rescored: int
    plain_tokens: int  # tokens the same subsets would cost as separate plain forward passes
    seconds: float
    notes: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    version: str = EXPLANATION_VERSION

    # -- matrix accessors -------------------------------------------------------------------------------------
    def matrix(self, kind: str = "credit") -> list[list[float]]:
        """The tokens × passages matrix of ``kind`` (``credit``, ``shapley`` or ``loo``)."""
        if kind not in ("credit", "shapley", "loo"):
            raise ValueError(f"unknown matrix {kind!r}: use 'credit', 'shapley' or 'loo'")
        rows = [getattr(t, kind) for t in self.tokens]
        if any(r is None for r in rows):
            raise ValueError(f"this explanation ({self.method}/{self.estimator}) has no {kind} values; use 'credit'")
        return [list(r) for r in rows]

    def passage_totals(self) -> list[float]:
        """Total credit per passage (column sums of the credit matrix)."""
        return [p.credit for p in self.passages]

    # -- serialisation ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        for t in d["tokens"]:
            t["alternatives"] = [[a, p] for a, p in t["alternatives"]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Explanation:
        d = dict(d)
        d["tokens"] = [TokenAttribution.from_dict(t) for t in d["tokens"]]
        d["passages"] = [PassageCredit.from_dict(p) for p in d["passages"]]
        d["sentences"] = [SentenceCitation.from_dict(s) for s in d["sentences"]]
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Explanation:
        return cls.from_dict(json.loads(text))

    # -- read-outs --------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """The reply-level figures: confidence, grounded share, top document and method."""
        return {"confidence": round(self.confidence, 4), "grounded_share": round(self.grounded_share, 4),
                "top_doc_id": self.top_doc_id, "method": self.method, "estimator": self.estimator, "k": self.k}

    def cited_reply(self) -> str:
        """The reply re-assembled from its sentences, each followed by its attribution ``[n]`` citations."""
        return " ".join(s.render() for s in self.sentences)

    def render_text(self, per_token: bool = False) -> str:
        """A compact text rendering for terminals (``moments ask --explain``).

        Runs of grounded tokens are wrapped as ``‹text›ⁿ`` with their top passage ``[n]`` (``‹text›*`` when no
        single passage stands out); unmarked text is the model's prior. ``per_token`` adds a table, one line per
        token: probability, grounding, top passage, flag, and the best alternative.
        """
        head = (f"method={self.method} ({self.estimator}, k={self.k})  confidence={self.confidence:.2f}  "
                f"grounded={self.grounded_share:.0%}  top_doc={self.top_doc_id}  "
                f"passes={self.forward_passes}  {self.seconds:.1f}s")
        lines = [head, _inline(self.tokens)]
        lines.append("  ‹…›ⁿ grounded, top passage [n]; unmarked: model prior")
        for p in self.passages:
            score = "?" if p.score is None else f"{p.score:.2f}"
            lines.append(f"  [{p.index + 1}] {p.title} ({p.doc_id}) retrieval={score} credit={p.credit:+.2f}")
        for i, s in enumerate(self.sentences, 1):
            cites = " ".join(f"[{j + 1}]" for j in s.cited) or "—"
            lines.append(f"  s{i}: {cites}  {s.text[:80]}")
        if self.notes:
            lines.extend(f"  note: {n}" for n in self.notes)
        if per_token:
            lines.append(f"  {'#':>3} {'token':<16} {'p':>5} {'ground':>7} {'top':>4} {'flag':<8} alternative")
            for t in self.tokens:
                top = "-" if t.top_passage is None else f"[{t.top_passage + 1}]"
                g = "" if t.grounding is None else f"{t.grounding:+.2f}"
                alt = next(((a, p) for a, p in t.alternatives if a != t.text), None)
                alt_s = f"{alt[0]!r} {alt[1]:.2f}" if alt else ""
                lines.append(f"  {t.index:>3} {t.text!r:<16} {t.prob:>5.2f} {g:>7} {top:>4} {t.flag:<8} {alt_s}")
        return "\n".join(lines)


def _inline(tokens: list[TokenAttribution]) -> str:
    """The reply with runs of grounded tokens marked by their top passage."""
    out: list[str] = []
    run: list[str] = []
    run_key: object = None

    def flush() -> None:
        if not run:
            return
        text = "".join(run)
        if run_key is None:
            out.append(text)
        else:
            core = text.strip()
            lead, trail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
            mark = "*" if run_key == "*" else str(int(run_key) + 1).translate(_SUPERSCRIPT)
            out.append(f"{lead}‹{core}›{mark}{trail}" if core else text)
        run.clear()

    for t in tokens:
        key = None if t.flag != "grounded" else ("*" if t.top_passage is None else t.top_passage)
        if key != run_key:
            flush()
            run_key = key
        run.append(t.text)
    flush()
    return "".join(out)
