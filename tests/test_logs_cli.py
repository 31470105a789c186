"""``moments logs`` / ``moments export`` handlers, run through a real argparse parser against a tmp SQLite store."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from agent.cli.logs import parse_duration, parse_when, register
from agent.errors import StoreError
from agent.store import Store


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'moments.db'}"


@pytest.fixture
def parser():
    p = argparse.ArgumentParser(prog="moments")
    register(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture
def run(parser, db_url, capsys):
    def run(*argv: str) -> str:
        args = parser.parse_args(list(argv))
        args.db_url = db_url  # the main CLI resolves it from --db / settings
        assert args.func(args) == 0
        return capsys.readouterr().out

    return run


@pytest.fixture
def ids(db_url):
    with Store(db_url) as store:
        pets = store.start_conversation(channel="cli", operator="alice")
        store.add_user_turn(pets, text="Do you allow pets?")
        answer = store.add_assistant_turn(
            pets, text="Yes, dogs are welcome [1].", latency={"retrieval_ms": 11.0, "generation_ms": 820.0},
            versions={"base_model": "smollm2-135m", "adapter": "support-v1"},
            passages=[{"rank": 1, "doc_id": "pets", "id": "pets#0", "title": "Pets policy", "text": "Dogs ok.",
                       "score": 0.74}],
            explanation={"tokens": ["Yes"]}, explanation_method="shapley", confidence=0.81, grounded_share=0.6,
            top_doc_id="pets",
        )
        store.add_feedback(answer, source="reviewer", rating="down", reasons=["incomplete"], reviewed=True,
                           reviewer="carol", corrected_answer="Yes, dogs under 10 kg are welcome.")
        old = store.start_conversation(channel="ui", operator="bob")
        store.add_user_turn(old, text="Opening hours?")
        store.add_assistant_turn(old, text="I don't know.", status="abstained",
                                 passages=[{"rank": 1, "doc_id": "hours", "text": "...", "score": 0.2}])
        with store.connect() as conn:
            conn.execute(text("UPDATE conversation SET created_at = :t, updated_at = :t WHERE id = :id"),
                         {"t": datetime.now(UTC).replace(tzinfo=None) - timedelta(days=100), "id": old.hex})
            conn.commit()
    return {"pets": pets, "old": old, "answer": answer}


def test_logs_lists_recent_conversations_with_their_explanation_summary(run, ids):
    out = run("logs")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "UPDATED", "(UTC)"]
    assert lines[1].startswith(str(ids["pets"])[:8]) and lines[2].startswith(str(ids["old"])[:8])
    assert "0.81" in lines[1] and "60%" in lines[1] and "pets" in lines[1] and "Do you allow pets?" in lines[1]
    assert "abstained" in lines[2]

    assert str(ids["old"])[:8] not in run("logs", "--operator", "alice")
    assert str(ids["pets"])[:8] not in run("logs", "--status", "abstained")
    assert str(ids["old"])[:8] not in run("logs", "--since", "7d")
    assert str(ids["old"])[:8] not in run("logs", "-q", "DOGS")
    assert str(ids["pets"])[:8] not in run("logs", "--not-reviewed")
    assert "no conversations match" in run("logs", "--rating", "up")
    assert "(1-1 of 2; --offset 1 for more)" in run("logs", "-n", "1")


def test_logs_json(run, ids):
    rows = json.loads(run("logs", "--json", "--reviewed"))
    assert [r["id"] for r in rows] == [str(ids["pets"])]
    assert rows[0]["last_confidence"] == 0.81 and rows[0]["turn_count"] == 2


def test_logs_show_prints_turns_passages_explanation_and_feedback(run, ids):
    out = run("logs", "show", str(ids["pets"])[:8])
    assert f"conversation {ids['pets']}" in out and "operator alice" in out
    assert "#0 user" in out and "Do you allow pets?" in out
    assert "#1 assistant · ok" in out and "retrieval 11 ms, generation 820 ms" in out
    assert "model smollm2-135m + support-v1" in out
    assert "[1] 0.740  pets  Pets policy" in out
    assert "explanation (shapley): confidence 0.81 · grounded 60% · top document pets" in out
    assert "down (reviewer) · incomplete" in out and "reviewed by carol" in out

    detail = json.loads(run("logs", "show", str(ids["pets"]), "--json"))
    assert detail["turns"][1]["explanation"]["data"] == {"tokens": ["Yes"]}
    assert detail["turns"][1]["passages"][0]["text"] == "Dogs ok."


def test_logs_show_of_an_unknown_id_is_a_store_error(parser, db_url, ids):
    args = parser.parse_args(["logs", "show", "ffffffff"])
    args.db_url = db_url
    with pytest.raises(StoreError, match="no conversation id starts with 'ffffffff'"):
        args.func(args)


def test_logs_stats(run, ids):
    out = run("logs", "stats")
    assert "conversations      2" in out and "abstain rate       50.0%" in out
    assert "weak retrieval (best passage score < 0.5)" in out and "Opening hours?" in out
    figures = json.loads(run("logs", "--operator", "alice", "stats", "--json"))  # filters before the subcommand
    assert figures["conversations"] == 1 and figures["thumbs_down"] == 1


def test_logs_purge_older_than(run, ids, db_url):
    assert "purged 1 conversation last active before" in run("logs", "purge", "--older-than", "90d")
    with Store(db_url) as store:
        assert store.get_conversation(ids["old"]) is None and store.get_conversation(ids["pets"]) is not None
    assert "purged 0 conversations" in run("logs", "purge", "--older-than", "90d")


def test_export_formats(run, ids, tmp_path, capsys):
    lines = run("export").splitlines()  # jsonl to standard output by default
    assert [json.loads(line)["id"] for line in lines] == [str(ids["pets"]), str(ids["old"])]

    target = tmp_path / "out" / "turns.csv"
    run("export", "--format", "csv", "-o", str(target), "--channel", "cli")
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["role"] for r in rows] == ["user", "assistant"] and rows[1]["top_doc_id"] == "pets"

    examples = [json.loads(line) for line in run("export", "--format", "finetune").splitlines()]
    assert examples == [{
        "messages": [{"role": "user", "content": "Do you allow pets?"},
                     {"role": "assistant", "content": "Yes, dogs under 10 kg are welcome."}],
        "passages": [{"rank": 1, "doc_id": "pets", "title": "Pets policy", "text": "Dogs ok.", "score": 0.74}],
        "metadata": examples[0]["metadata"],
    }]
    assert examples[0]["metadata"]["turn_id"] == ids["answer"]


def test_export_to_a_file_reports_the_count(parser, db_url, ids, tmp_path, capsys):
    args = parser.parse_args(["export", "--format", "finetune", "-o", str(tmp_path / "ft.jsonl")])
    args.db_url = db_url
    assert args.func(args) == 0
    assert "wrote 1 examples to" in capsys.readouterr().err


def test_the_main_cli_wires_the_commands_and_the_database_option(db_url, ids, capsys):
    from agent.cli import main

    assert main(["logs", "--db", db_url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["logs", "show", str(ids["pets"])[:6], "--db", db_url]) == 0
    assert "Do you allow pets?" in capsys.readouterr().out
    assert main(["logs", "show", "0000000", "--db", db_url]) == 2  # a StoreError, printed by the main CLI
    assert "no conversation id" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "expected"), [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)),
    ("30m", timedelta(minutes=30)), ("1d12h", timedelta(days=1, hours=12)), ("1.5h", timedelta(minutes=90)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["90", "d", "90 days", "0d", "-3d", ""])
def test_bad_durations_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_parse_when():
    assert parse_when("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01T09:30+01:00") == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert abs(parse_when("7d") - (datetime.now(UTC) - timedelta(days=7))) < timedelta(seconds=5)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_when("last tuesday")


def test_bad_options_exit_with_a_usage_error(parser):
    with pytest.raises(SystemExit):
        parser.parse_args(["logs", "purge", "--older-than", "ninety days"])
    with pytest.raises(SystemExit):
        parser.parse_args(["logs", "purge"])
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--format", "xml"])
