"""The knowledge-base folder (issue 14, integrity): files vanishing while it is indexed are reported, not a
traceback; a missing path is refused before the embedder loads; what a killed build left beside the index is
cleaned (and the last good index restored); ``moments index`` names every file it skipped and why.

(Bad and oversized files: tests/test_retrieval_update.py.) Real embedder, FAISS and folders in tmp_path.
"""

from __future__ import annotations

import os
import shutil

import pytest

from agent.cli.main import main
from agent.errors import KnowledgeBaseError
from retrieval import index as index_module
from retrieval import update
from retrieval.index import KnowledgeIndex, index_dir_for
from tests.test_retrieval_update import FILES, write


def test_a_file_deleted_while_the_kb_is_indexed_is_reported_not_a_traceback(tmp_path, monkeypatch, caplog):
    kb = write(tmp_path / "kb", FILES)
    real_scan = update.scan

    def scan_then_delete(path):
        files = real_scan(path)
        (kb / "stores.csv").unlink()  # gone after it was listed and hashed, before it is read
        return files

    monkeypatch.setattr(update, "scan", scan_then_delete)
    built = KnowledgeIndex.load_or_build(kb, tmp_path / "index", chunk_tokens=64, progress=False)
    assert "stores.csv: vanished while the knowledge base was being indexed" in caplog.text
    assert [s["path"] for s in built.meta["skipped"]] == ["stores.csv"]
    assert "returns" in {p.doc_id.split(":")[0] for p in built.passages}

    monkeypatch.setattr(update, "scan", real_scan)
    listed = update.iter_kb_files(kb)
    monkeypatch.setattr(update, "iter_kb_files", lambda path: [*listed, kb / "gone.md"])  # listed, then deleted
    assert [p.name for p, _ in update.present_files(kb)] == [p.name for p in listed]
    assert "gone.md vanished while the knowledge base was being read" in caplog.text


def test_a_missing_path_is_refused_before_the_embedder_loads(tmp_path, monkeypatch, capsys):
    def no_embedder(*args, **kwargs):
        raise AssertionError("the embedder was loaded for a path that does not exist")

    monkeypatch.setattr(index_module, "load_embedder", no_embedder)
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        KnowledgeIndex.load_or_build(tmp_path / "no-such-kb", tmp_path / "index")
    assert main(["index", str(tmp_path / "no-such-kb"), "--db", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Knowledge base") and "does not exist" in err and "Traceback" not in err


def test_what_a_killed_build_left_is_cleaned_and_the_last_good_index_restored(tmp_path):
    kb = write(tmp_path / "kb", FILES)
    target = index_dir_for(tmp_path / "indexes", kb)
    first = KnowledgeIndex.load_or_build(kb, target, chunk_tokens=64, progress=False)
    # killed after writing a temporary folder, and again between the two renames of a save
    (target.parent / f".{target.name}.tmp-abc123").mkdir()
    (target.parent / f".{target.name}.tmp-abc123" / "index.faiss").write_bytes(b"half")
    os.rename(target, target.parent / f".{target.name}.old-deadbeef")
    assert not target.exists()
    again = KnowledgeIndex.load_or_build(kb, target, chunk_tokens=64, progress=False)
    assert not again.rebuilt and again.version == first.version  # the last good index, not a rebuild
    assert sorted(p.name for p in target.parent.iterdir()) == [f".{target.name}.lock", target.name]
    # and with the index in place, old leftovers simply go
    shutil.copytree(target, target.parent / f".{target.name}.old-0badf00d")
    KnowledgeIndex.load_or_build(kb, target, chunk_tokens=64, progress=False)
    assert sorted(p.name for p in target.parent.iterdir()) == [f".{target.name}.lock", target.name]


def test_moments_index_names_every_skipped_file(tmp_path, capsys, monkeypatch):
    kb = write(tmp_path / "kb", {**FILES, "broken.jsonl": '{"question": oops}\n',
                                 "huge.txt": "Huge\n\n" + "lorem ipsum " * 20000})
    monkeypatch.setenv("MOMENTS_KB_MAX_FILE_MB", "0.1")
    code = main(["index", str(kb), "--db", f"sqlite:///{tmp_path / 'm.db'}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning: skipped broken.jsonl: " in captured.err and "broken.jsonl, line 1" in captured.err
    assert "warning: skipped huge.txt: " in captured.err and "over the per-file limit of 102 KB" in captured.err
    assert "passages from" in captured.out
