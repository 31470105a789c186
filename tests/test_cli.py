"""The `moments` console script (`ui.cli`), run as a real subprocess (real model, real index, real SQLite)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.generation.loading import adapter_hash
from agent.settings import ADAPTERS_DIR
from tests.conftest import MODELS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run_cli(args: list[str], home: Path, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "MOMENTS_HOME": str(home), "MOMENTS_MODELS_PATH": str(MODELS),
               "MOMENTS_MAX_NEW_TOKENS": "32", **env}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env=environ)


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory, session_home):
    home = tmp_path_factory.mktemp("cli-home")
    if (session_home / "index").exists():  # reuse the session's index of data/kb (same version hash)
        shutil.copytree(session_home / "index", home / "index")
    return home


def test_ask_json_shape_and_store(cli_home, kb_index):
    proc = run_cli(["ask", "How much does express shipping cost?", "--json"], cli_home)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["question"] == "How much does express shipping cost?" and out["answer"]
    assert out["abstained"] is False
    p = out["passages"][0]
    assert {"rank", "score", "id", "doc_id", "title", "text"} <= set(p) and p["rank"] == 1
    assert "shipping-options-and-costs" in [p["doc_id"] for p in out["passages"]]
    assert {"retrieval_ms", "generation_ms"} <= set(out["timings"])
    assert out["versions"]["base_model"] == "smollm2-135m"
    # the default agent runs with the shipped LoRA adapter when there is one (issue 5), else the base model alone
    shipped = ADAPTERS_DIR / "smollm2-135m-support"
    expected = adapter_hash(shipped) if (shipped / "adapter_config.json").is_file() else None
    assert out["versions"]["adapter_hash"] == expected
    assert out["versions"]["index_version"] == kb_index.version
    assert out["conversation_id"] and out["turn_id"]
    logs = run_cli(["logs", "--json"], cli_home)
    assert logs.returncode == 0, logs.stderr
    assert out["conversation_id"] in logs.stdout


def test_ask_continues_a_stored_conversation(cli_home):
    """--conversation reads the history from the store (the one source of history, as for the UI and the API)."""
    first = json.loads(run_cli(["ask", "How do gift cards work?", "--json"], cli_home).stdout)
    prefix = first["conversation_id"][:8]
    follow = run_cli(["ask", "do they expire?", "--json", "--conversation", prefix], cli_home)
    assert follow.returncode == 0, follow.stderr
    out = json.loads(follow.stdout)
    assert out["conversation_id"] == first["conversation_id"]
    assert out["passages"][0]["doc_id"] == "gift-cards"
    alone = json.loads(run_cli(["ask", "do they expire?", "--json", "--no-store"], cli_home).stdout)
    assert out["prompt_tokens"] > alone["prompt_tokens"] + 10  # the earlier exchange is in the prompt
    refused = run_cli(["ask", "do they expire?", "--no-store", "--conversation", prefix], cli_home, timeout=120)
    assert refused.returncode == 2 and "needs the store" in refused.stderr


def test_ask_text_prints_answer_and_numbered_passages(cli_home):
    proc = run_cli(["ask", "Do gift cards expire?", "--no-store"], cli_home)
    assert proc.returncode == 0, proc.stderr
    assert "Passages:" in proc.stdout and "[1] " in proc.stdout and "Gift Cards" in proc.stdout


def test_ask_empty_message_fails_clearly(cli_home):
    proc = run_cli(["ask", "  "], cli_home, timeout=120)
    assert proc.returncode == 2 and "empty" in proc.stderr


def test_index_command_builds_then_reuses(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "faq.csv").write_text("question,answer\nDo you ship to Mars?,No, only to Earth.\n")
    (kb / "hours.md").write_text("# Opening hours\n\n## Weekdays\nWe are open 9 to 5.\n")
    first = run_cli(["index", str(kb)], tmp_path / "home", timeout=300)
    assert first.returncode == 0, first.stderr
    assert "built" in first.stdout and "2 passages" in first.stdout
    second = run_cli(["index", str(kb)], tmp_path / "home", timeout=300)
    assert "up to date" in second.stdout
    (kb / "bad.jsonl").write_text('{"question": "a", "answer": "b"}\n{not json\n')
    bad = run_cli(["index", str(kb)], tmp_path / "home", timeout=300)
    # a malformed file is skipped with a warning naming it and the line; the rest stays indexed (issue #14)
    assert bad.returncode == 0, bad.stderr
    assert "bad.jsonl" in bad.stdout + bad.stderr and "line 2" in bad.stdout + bad.stderr


def test_ask_explain_text_and_json(cli_home):
    text = run_cli(["ask", "How much does express shipping cost?", "--explain", "--no-store", "--top-k", "3"],
                   cli_home, MOMENTS_MAX_NEW_TOKENS="16")
    assert text.returncode == 0, text.stderr
    assert "Explanation:" in text.stdout and "shapley" in text.stdout.lower()
    js = run_cli(["ask", "How much does express shipping cost?", "--explain", "--json", "--no-store", "--top-k", "3"],
                 cli_home, MOMENTS_MAX_NEW_TOKENS="16")
    assert js.returncode == 0, js.stderr
    exp = json.loads(js.stdout)["explanation"]
    assert exp["method"] == "shapley" and exp["k"] == 3 and exp["tokens"]
    assert {"shapley", "loo", "grounding", "flag", "alternatives", "prob"} <= set(exp["tokens"][0])
