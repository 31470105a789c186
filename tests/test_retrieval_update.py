"""Incremental index updates: only changed knowledge-base files are re-embedded, with the same result as a full build.

Real embedder, real FAISS, temporary folders; embeddings are counted by wrapping the real ``embed``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import retrieval.embedder as embedder_module
from retrieval.embedder import load_embedder
from retrieval.errors import KnowledgeBaseError
from retrieval.index import KnowledgeIndex, index_dir_for

FILES = {
    "returns.md": "# Returns\n\nYou can return items within 30 days.\n\n## Refunds\n\nRefunds take 5 business days.\n",
    "shipping.txt": "Shipping\n\nStandard shipping takes 3 to 5 business days.\n",
    "faq.jsonl": '{"question": "Do gift cards expire?", "answer": "No, never."}\n'
                 '{"question": "Can I pay with PayPal?", "answer": "Yes."}\n',
    "stores.csv": "question,answer\nWhere are your stores?,Boston and Chicago.\n",
    "warranty.md": "# Warranty\n\nEvery product has a 1-year warranty.\n",
}


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Number of passages embedded per call, while the test runs."""
    calls: list[int] = []
    real = embedder_module.embed
    monkeypatch.setattr(embedder_module, "embed", lambda m, texts, **kw: calls.append(len(texts)) or real(m, texts, **kw))
    return calls


def write(root, files):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_only_changed_and_new_files_are_embedded_and_the_result_equals_a_full_build(tmp_path, counted):
    kb = write(tmp_path / "kb", FILES)
    idx_dir = index_dir_for(tmp_path / "indexes", kb)
    first = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert sum(counted) == len(first) == first.meta["n_embedded"] and first.meta["n_reused"] == 0
    assert [f["path"] for f in first.meta["files"]] == sorted(FILES)

    counted.clear()
    (kb / "warranty.md").write_text("# Warranty\n\nEvery product has a 2-year warranty.\n\n## Claims\n\nClaim online.\n")
    (kb / "shipping.txt").unlink()
    (kb / "pickup.md").write_text("# Store pickup\n\nPickup is free and ready in 2 hours.\n")
    updated = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    changed = [p for p in updated.passages if p.doc_id in ("warranty", "pickup")]
    assert sum(counted) == len(changed) == updated.meta["n_embedded"]  # only those files' passages
    assert updated.meta["n_reused"] == len(updated) - len(changed) > 0
    assert updated.rebuilt and updated.version != first.version

    full = KnowledgeIndex.build(kb, chunk_tokens=64, progress=False, model=load_embedder())
    assert [(p.id, p.text) for p in updated.passages] == [(p.id, p.text) for p in full.passages]
    assert np.allclose(updated.vectors(), full.vectors(), atol=1e-5)
    reloaded = KnowledgeIndex.load(idx_dir)
    assert reloaded.version == updated.version and json.loads((idx_dir / "meta.json").read_text())["n_embedded"] == len(changed)
    assert reloaded.search("how long is the warranty", 1)[0].passage.doc_id == "warranty"
    assert any("2-year" in h.passage.text for h in reloaded.search("how long is the warranty", 2))


def test_a_new_file_sharing_a_stem_re_embeds_the_renamed_ids(tmp_path, counted):
    kb = write(tmp_path / "kb", {"warranty.md": FILES["warranty.md"]})
    write(kb / "help", {"returns.md": FILES["returns.md"]})
    idx_dir = index_dir_for(tmp_path / "indexes", kb)
    first = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert {p.doc_id for p in first.passages} == {"returns", "warranty"}
    counted.clear()
    write(kb, {"returns.md": "# Returns today\n\n30 days.\n"})  # same stem: ids become paths, help/returns
    updated = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert {p.doc_id for p in updated.passages} == {"help/returns", "returns", "warranty"}
    assert sum(counted) == sum(p.doc_id != "warranty" for p in updated.passages)  # bytes equal, id not: re-embedded


def test_a_bad_file_is_skipped_by_name_and_the_rest_is_indexed(tmp_path, counted, caplog):
    kb = write(tmp_path / "kb", FILES)
    idx_dir = index_dir_for(tmp_path / "indexes", kb)
    serving = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    (kb / "warranty.md").write_text("# Warranty\n\nEvery product has a 3-year warranty.\n")
    (kb / "broken.jsonl").write_text('{"question": "ok?", "answer": "yes"}\n{"question": oops}\n')
    updated = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)  # not stopped by it
    assert "Skipped broken.jsonl" in caplog.text and "broken.jsonl, line 2" in caplog.text
    assert [(s["path"], s["kept_previous"]) for s in updated.meta["skipped"]] == [("broken.jsonl", False)]
    assert "broken.jsonl" not in {f["path"] for f in updated.meta["files"]}
    assert "3-year" in updated.search("warranty length", 1)[0].passage.text  # the good change is in
    assert "1-year" in serving.search("warranty length", 1)[0].passage.text  # the object in use still answers
    assert not list(idx_dir.parent.glob(f".{idx_dir.name}.tmp-*"))
    caplog.clear()
    again = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)  # saved: said again on load
    assert not again.rebuilt and "Skipped broken.jsonl when this index was built" in caplog.text
    (kb / "broken.jsonl").write_text('{"question": "Is the shop open on Sundays?", "answer": "Yes, 10 to 4."}\n')
    fixed = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert fixed.meta["skipped"] == [] and "Sundays" in fixed.search("open on sunday", 1)[0].passage.title


def test_a_file_that_turns_bad_keeps_its_last_good_version(tmp_path, caplog):
    kb = write(tmp_path / "kb", FILES)
    (kb / "faq.jsonl").write_text('{"question": "Do you ship abroad?", "answer": "Yes, to 30 countries."}\n')
    idx_dir = index_dir_for(tmp_path / "indexes", kb)
    KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    (kb / "faq.jsonl").write_text('{"question": "Do you ship abroad?", "answer": oops}\n')
    updated = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    assert "faq.jsonl, line 1" in caplog.text and "last good version stays indexed" in caplog.text
    assert updated.meta["skipped"][0]["kept_previous"] is True
    assert "30 countries" in updated.search("ship abroad", 1)[0].passage.text


def test_an_oversized_file_is_skipped_with_the_limit_named(tmp_path, caplog):
    kb = write(tmp_path / "kb", FILES)
    (kb / "huge.txt").write_text("Huge\n\n" + "lorem ipsum dolor sit amet " * 4000)  # about 108 KB
    idx_dir = index_dir_for(tmp_path / "indexes", kb)
    index = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False, max_file_bytes=50_000)
    assert "huge.txt: 105 KB is over the per-file limit of 49 KB (MOMENTS_KB_MAX_FILE_MB)" in caplog.text
    assert all(p.doc_id != "huge" for p in index.passages) and index.meta["skipped"][0]["path"] == "huge.txt"
    every = KnowledgeIndex.build(kb, chunk_tokens=64, progress=False, max_file_bytes=None)  # no limit: indexed
    assert any(p.doc_id == "huge" for p in every.passages)


def test_a_kb_with_no_good_file_names_every_reason(tmp_path):
    kb = write(tmp_path / "kb", {"a.jsonl": '{"question": oops}\n', "b.md": ""})
    with pytest.raises(KnowledgeBaseError, match=r"no file could be indexed .*a\.jsonl, line 1.*b\.md, line 1"):
        KnowledgeIndex.load_or_build(kb, tmp_path / "index", chunk_tokens=64, progress=False)


def test_an_index_without_or_with_a_damaged_bm25_folder(tmp_path):
    import shutil

    kb = write(tmp_path / "kb", FILES)
    idx_dir = index_dir_for(tmp_path / "indexes", kb)
    built = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)
    want = [h.passage.id for h in built.search("do gift cards expire", 3)]
    shutil.rmtree(idx_dir / "lexical")  # a folder written before BM25 existed: built again on first use
    assert [h.passage.id for h in KnowledgeIndex.load(idx_dir).search("do gift cards expire", 3)] == want
    (idx_dir / "lexical").mkdir()
    (idx_dir / "lexical" / "params.index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match="damaged"):
        KnowledgeIndex.load(idx_dir)
    rebuilt = KnowledgeIndex.load_or_build(kb, idx_dir, chunk_tokens=64, progress=False)  # same version: rebuilt
    assert rebuilt.rebuilt and [h.passage.id for h in rebuilt.search("do gift cards expire", 3)] == want
