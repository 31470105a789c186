"""``moments ask`` (a real subprocess: real model, index and SQLite) against a store that refuses writes: the answer
is printed, a warning says it was not stored, the JSON says ``stored: false``, and the store holds no orphan."""

from __future__ import annotations

import json
import shutil

import pytest

from agent.store import Store
from tests.test_cli import run_cli
from tests.test_store_write_faults import immutable, sqlite_file  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_ask_on_a_read_only_store_answers_and_warns(sqlite_file, tmp_path, session_home, kb_index):  # noqa: F811
    home = tmp_path / "home"
    if (session_home / "index").exists():
        shutil.copytree(session_home / "index", home / "index")
    url = f"sqlite:///{sqlite_file}"
    with immutable(sqlite_file):
        proc = run_cli(["ask", "How much does express shipping cost?", "--json"], home, MOMENTS_DATABASE_URL=url)
        plain = run_cli(["ask", "How much does express shipping cost?"], home, MOMENTS_DATABASE_URL=url)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] and out["passages"] and out["stored"] is False and out["turn_id"] is None
    assert "refuses writes" in out["not_stored"]
    assert "NOT stored" in proc.stderr and "Traceback" not in proc.stderr
    assert plain.returncode == 0 and "NOT stored" in plain.stderr and out["answer"][:20] in plain.stdout
    with Store(url) as store:
        assert store.count_conversations() == 0 and store.stats().turns == 0
