"""Untrusted text on the command line (issue 14, input hygiene): terminal escape codes in stored messages, replies,
titles and passages are shown as visible escapes by ``moments logs``, ``moments ask`` and ``moments export`` on a
terminal (an export to a file or a pipe stays exact); arguments that are not valid UTF-8 end with one line, exit 2.

Real components: the CLI's ``main`` (and once the console script as a subprocess), a real SQLite store in tmp_path.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.main import main, print_turn
from agent.cli.terminal import UNSAFE, TerminalWriter, printable, printable_json
from agent.pipeline import TurnEvent
from agent.store import Store
from agent.turn import TurnResult
from retrieval.types import Hit, Passage
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
CLEAR, TITLE, CSI = "\x1b[2J", "\x1b]0;pwned\x07", "\x9b"
#: A customer message carrying all three (and a bidi override, and a carriage return that would rewrite the line).
HOSTILE = f"Where is my order?{CLEAR}{TITLE} ok{CSI}6n \u202eevil\r done"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


def assert_harmless(out: str) -> None:
    """No character a terminal acts on (but \\n and \\t) is left in ``out``."""
    assert not UNSAFE.search(out), f"raw control characters in output: {[c for c in RAW if c in out]}"


# --- the function ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [(CLEAR, "\\x1b[2J"), (TITLE, "\\x1b]0;pwned\\x07"), (CSI, "\\x9b"),
                                            ("a\u202eb", "a\\u202eb"), ("bad \udcff", "bad \\udcff"),
                                            ("\x00\x7f\r", "\\x00\\x7f\\x0d"), ("a\r\nb", "a\r\nb")])
def test_printable_shows_control_characters_as_visible_escapes(raw, shown):
    assert printable(raw) == shown
    assert printable(printable(raw)) == shown  # idempotent: printing twice changes nothing more


def test_printable_keeps_ordinary_text_newlines_tabs_and_unicode():
    text = "Résumé:\n\t– café ☕ 日本語 emoji 👍🏽 (ZWJ 👩‍💻)"
    assert printable(text) == text


def test_printable_json_is_the_same_json_value():
    value = {"text": HOSTILE, "title": TITLE, "nested": [CSI, "\udcff"]}
    dumped = printable_json(json.dumps(value, ensure_ascii=False, indent=2))
    assert_harmless(dumped)
    assert json.loads(dumped) == value


def test_terminal_writer_cleans_every_write():
    out = io.StringIO()
    writer = TerminalWriter(out)
    writer.write(CLEAR)
    writer.write(TITLE)
    assert out.getvalue() == "\\x1b[2J\\x1b]0;pwned\\x07"


# --- moments logs / logs show / logs stats / export -----------------------------------------------------------


@pytest.fixture
def hostile_db(tmp_path) -> tuple[str, str]:
    """A real SQLite store holding a conversation whose message, reply, passage and feedback carry escape codes."""
    url = f"sqlite:///{tmp_path / 'moments.db'}"
    with Store(url) as store:
        cid = store.start_conversation(channel="api", operator=f"mallory{CLEAR}")
        store.add_user_turn(cid, text=HOSTILE)
        answer = store.add_assistant_turn(
            cid, text=f"Your order{TITLE} ships{CSI}2J today.",
            passages=[{"rank": 1, "doc_id": f"orders{CLEAR}", "title": f"Orders{TITLE}", "text": f"body{CSI}",
                       "score": 0.71}],
            explanation={"tokens": []}, explanation_method="shapley", confidence=0.8, grounded_share=0.5,
            top_doc_id=f"orders{CLEAR}")
        # a reviewer's correction: only those go into the fine-tune export
        store.add_feedback(answer, source="reviewer", rating="down", comment=f"bad{TITLE}",
                           corrected_answer=f"Fixed{CLEAR}", reviewed=True, reviewer=f"carol{TITLE}")
    return url, str(cid)


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_logs_list_show_and_stats_print_escapes_not_control_codes(hostile_db, capsys):
    url, cid = hostile_db
    code, out, _ = run_main(capsys, "logs", "--db", url)
    assert code == 0 and cid[:8] in out
    assert_harmless(out)
    assert "\\x1b[2J" in out  # the title (the first question) and operator, shown as escapes

    code, out, _ = run_main(capsys, "logs", "show", cid[:8], "--db", url)
    assert code == 0
    assert_harmless(out)
    for shown in ("\\x1b]0;pwned\\x07", "\\x9b6n", "\\u202eevil", "Orders\\x1b]0;pwned\\x07", "Fixed\\x1b[2J"):
        assert shown in out

    code, out, _ = run_main(capsys, "logs", "stats", "--db", url)
    assert code == 0
    assert_harmless(out)


def test_logs_json_is_harmless_and_still_exact(hostile_db, capsys):
    url, cid = hostile_db
    code, out, _ = run_main(capsys, "logs", "show", cid, "--json", "--db", url)
    assert code == 0
    assert_harmless(out)
    turns = json.loads(out)["turns"]
    assert turns[0]["text"] == HOSTILE.strip()  # the JSON value is the stored text, byte for byte
    assert turns[1]["passages"][0]["title"] == f"Orders{TITLE}"
    code, out, _ = run_main(capsys, "logs", "--json", "--db", url)
    assert_harmless(out)
    assert json.loads(out)[0]["operator"] == f"mallory{CLEAR}"


def test_logs_through_the_console_script(hostile_db, tmp_path):
    """The real ``moments`` entry point in a subprocess: its bytes on stdout hold no ESC, BEL or C1 CSI."""
    url, cid = hostile_db
    env = {**os.environ, "MOMENTS_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "ui.cli", "logs", "show", cid, "--db", url], capture_output=True,
                          check=False, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout and "\x9b".encode() not in proc.stdout
    assert b"\\x1b[2J" in proc.stdout


class Terminal(io.StringIO):
    """Standard output as a terminal would be (``isatty``), keeping what is written."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "finetune"])
def test_export_is_exact_to_files_and_pipes_and_harmless_on_a_terminal(hostile_db, capsys, tmp_path,
                                                                      monkeypatch, fmt):
    url, _ = hostile_db
    target = tmp_path / f"out.{fmt}"
    assert run_main(capsys, "export", "--format", fmt, "-o", str(target), "--db", url)[0] == 0
    with target.open(encoding="utf-8", newline="") as fh:  # no newline translation: the bytes as written
        exact = fh.read()
    assert "\x9b" in exact  # a file holds the stored text exactly (JSON escapes C0 controls itself, not C1)
    code, piped, _ = run_main(capsys, "export", "--format", fmt, "--db", url)  # capsys: a pipe, not a terminal
    assert code == 0 and piped == exact

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["export", "--format", fmt, "--db", url]) == 0
    shown = terminal.getvalue()
    assert_harmless(shown)
    if fmt != "csv":  # JSON on a terminal: escaped the JSON way, still the same records
        assert [json.loads(line) for line in shown.splitlines()] == [json.loads(line) for line in exact.splitlines()]


# --- moments ask's output -------------------------------------------------------------------------------------


def hostile_turn() -> TurnResult:
    passage = Passage(id=f"kb#0{CLEAR}", doc_id="kb", title=f"Returns{TITLE}", text=f"Return{CSI} in 30 days.")
    return TurnResult(question=HOSTILE, answer=f"Within 30 days{CLEAR}.", hits=[Hit(passage, 0.7, 1)],
                      token_ids=[1, 2], token_texts=[" Within 30 days", CLEAR], conversation_id=f"c{TITLE}",
                      timings={"retrieval_ms": 3.0, "generation_ms": 40.0}, versions={"base_model": f"m{CSI}"})


@pytest.mark.parametrize("as_json", [False, True])
def test_ask_prints_streamed_tokens_passages_and_json_harmlessly(capsys, tmp_path, as_json):
    result = hostile_turn()
    events = [TurnEvent("retrieved", hits=result.hits), *(TurnEvent("token", text=t) for t in result.token_texts),
              TurnEvent("done", result=result)]
    assert print_turn(events, make_settings(tmp_path), as_json=as_json) is result
    out = capsys.readouterr().out
    assert_harmless(out)
    if as_json:
        assert json.loads(out)["passages"][0]["title"] == f"Returns{TITLE}"
    else:
        assert "Within 30 days\\x1b[2J" in out and "Returns\\x1b]0;pwned\\x07" in out


# --- invalid UTF-8 on argv ------------------------------------------------------------------------------------


def test_invalid_utf8_argument_is_one_clear_line_and_exit_2(capsys):
    code, out, err = run_main(capsys, "ask", "\udcff\udcfe")  # what Python makes of the bytes ff fe on argv
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: argument 2 is not valid UTF-8")
    assert "b'\\xff\\xfe'" in err and "UTF-8" in err
    code, _, err = run_main(capsys, "logs", "show", "\ud800")  # a surrogate no bytes decode to
    assert code == 2 and "argument 3" in err and "Traceback" not in err


def test_invalid_utf8_on_the_real_argv(tmp_path):
    """``moments ask $'\\xff\\xfe'``: raw bytes on the command line, through the console script."""
    env = {**os.environ, "MOMENTS_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "ui.cli", "ask", b"\xff\xfe"], capture_output=True, check=False,
                          timeout=120, env=env, cwd=ROOT)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.splitlines() == [err.strip()] and "not valid UTF-8" in err and "b'\\xff\\xfe'" in err


@pytest.mark.slow
def test_moments_ask_over_a_hostile_passage_prints_no_control_codes(tmp_path):
    """The real ``moments ask`` (model, index, console script): a KB article whose title and text carry escape codes."""
    from tests.conftest import MODELS

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "returns.md").write_text(f"# Returns{TITLE}\n\n## Window\n\nReturn items within 30 days{CLEAR} of delivery "
                                   f"for a full refund{CSI}.\n", encoding="utf-8")
    env = {**os.environ, "MOMENTS_HOME": str(tmp_path / "home"), "MOMENTS_MODELS_PATH": str(MODELS),
           "MOMENTS_MAX_NEW_TOKENS": "24"}
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "ui.cli", "ask", "How long do I have to return an item?",
                               "--no-store", "--kb", str(kb), "--top-k", "1", *extra], capture_output=True,
                              check=False, timeout=600, env=env, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout and "\x9b".encode() not in proc.stdout
        out = proc.stdout.decode("utf-8")
        if extra:
            assert json.loads(out)["passages"][0]["title"] == f"Returns{TITLE}"  # JSON: escaped, and exact
        else:
            assert "Returns\\x1b]0;pwned\\x07" in out
