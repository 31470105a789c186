"""Input that cannot be taken as it is (issue 14, input hygiene): lone surrogates and NULs are refused with a message
that says what is wrong and what to do, on every channel, before anything is stored; settings outside their range
end the command line with one line naming the variable or option and the values allowed, exit code 2.

No model runs: validation happens before retrieval (the agent gets stand-ins it never touches); the store is a real
SQLite file, the CLI the real ``main`` (and the console script once, for the "no traceback" check).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.errors import InputError
from agent.pipeline import Agent
from agent.settings import SettingsError, allowed_values, load_settings
from agent.store import Store
from agent.store.errors import InvalidInputError
from agent.text_input import text_problem
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]


def agent_without_model(home: Path) -> Agent:
    """An agent whose generator and index are never reached: validation refuses the message first."""
    return Agent(make_settings(home, threads=0), generator=object(), index=object())


# --- surrogates and NULs ----------------------------------------------------------------------------------------


def test_text_problem_names_the_character():
    assert text_problem("How long do I have? ☕ 日本") is None
    assert text_problem("ab\udcff") == "is not valid UTF-8 text (character 3 is a lone surrogate, U+DCFF)"
    assert text_problem("a\x00b") == "contains a NUL character (character 2)"


@pytest.mark.parametrize("message", ["\udcff\udcfe", "order \ud83d status", "nul\x00byte"])
def test_the_pipeline_refuses_undecodable_text_with_what_to_do(tmp_path, message):
    with pytest.raises(InputError) as info:
        agent_without_model(tmp_path).validate(message)
    assert "Send it again as plain UTF-8 text" in str(info.value)


def test_the_store_refuses_a_lone_surrogate_and_writes_nothing(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'm.db'}") as store:
        cid = store.start_conversation(channel="api")
        with pytest.raises(InvalidInputError, match="not valid UTF-8"):
            store.add_user_turn(cid, text="where is \udcff my order")
        answer = store.add_assistant_turn(cid, text="fine")
        with pytest.raises(InvalidInputError, match="lone surrogate"):
            store.add_feedback(answer, source="api", rating="down", comment="bad \udcff")
        assert [t.text for t in store.get_conversation(cid).turns] == ["fine"]


# --- the /ask API -----------------------------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path):
    from ui.app import MomentsApp

    settings = make_settings(tmp_path, threads=0, database_url=f"sqlite:///{tmp_path / 'api.db'}")
    store = Store(settings.db_url)
    yield MomentsApp(settings, agent_without_model(tmp_path), store), store
    store.close()


def test_ask_api_blames_the_text_not_the_conversation_id(api):
    import gradio as gr

    app, store = api
    for conversation_id in ("", str(store.start_conversation(channel="api"))):
        with pytest.raises(gr.Error) as info:
            app.ask("where is \udcff my order", conversation_id)
        message = str(info.value.message)
        assert "not valid UTF-8" in message and "conversation id" not in message.lower()
    assert store.count_conversations() == 1  # the refused call opened no conversation of its own


def test_ask_api_blames_the_conversation_id_only_when_it_is_wrong(api):
    import gradio as gr

    app, store = api
    with pytest.raises(gr.Error) as info:
        app.ask("How long do I have to return an item?", "not-a-uuid")
    assert "Invalid conversation id 'not-a-uuid'" in str(info.value.message)
    assert store.count_conversations() == 0  # checked before a conversation is opened


# --- settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("MOMENTS_TOP_K", "abc", "MOMENTS_TOP_K='abc' is not valid: it must be a whole number from 1 to 16"),
    ("MOMENTS_TOP_K", "0", "MOMENTS_TOP_K='0' is not valid: it must be a whole number from 1 to 16"),
    ("MOMENTS_THREADS", "-1", "MOMENTS_THREADS='-1' is not valid: it must be a whole number, 0 or more"),
    ("MOMENTS_MAX_NEW_TOKENS", "1e9", "MOMENTS_MAX_NEW_TOKENS='1e9' is not valid: it must be a whole number from 1 to"),
    ("MOMENTS_ABSTAIN_THRESHOLD", "nan", "MOMENTS_ABSTAIN_THRESHOLD='nan' is not valid: it must be a number from -1"),
    ("MOMENTS_QUANTIZE", "maybe", "MOMENTS_QUANTIZE='maybe' is not valid: it must be true or false"),
    ("MOMENTS_KB_MAX_FILE_MB", "0", "MOMENTS_KB_MAX_FILE_MB='0' is not valid: it must be a number above 0 and at"),
    ("MOMENTS_KB_MAX_FILE_MB", "inf", "MOMENTS_KB_MAX_FILE_MB='inf' is not valid: it must be a number above 0"),
])
def test_an_invalid_variable_is_one_line_naming_it_and_the_range(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_an_invalid_option_names_the_option_and_its_variable():
    with pytest.raises(SettingsError) as info:
        load_settings({"top_k": 0}, options={"top_k": "--top-k"})
    assert str(info.value) == ("--top-k 0 is not valid: it must be a whole number from 1 to 16 "
                               "(setting top_k: option --top-k or variable MOMENTS_TOP_K)")
    assert allowed_values("history_turns") == "a whole number, 0 or more"


@pytest.mark.parametrize(("argv", "env", "names"), [
    (["ask", "hello", "--top-k", "0"], {}, ("--top-k 0", "from 1 to 16", "MOMENTS_TOP_K")),
    (["logs"], {"MOMENTS_TOP_K": "abc"}, ("MOMENTS_TOP_K='abc'", "from 1 to 16", "--top-k")),
    (["ask", "hello"], {"MOMENTS_THREADS": "-1"}, ("MOMENTS_THREADS='-1'", "0 or more")),
    (["export"], {"MOMENTS_HISTORY_TURNS": "-2"}, ("MOMENTS_HISTORY_TURNS='-2'", "0 or more")),
])
def test_the_cli_prints_one_line_and_exits_2(capsys, monkeypatch, argv, env, names):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    for name in names:
        assert name in err


def test_the_console_script_shows_no_pydantic_traceback(tmp_path):
    env = {**os.environ, "MOMENTS_HOME": str(tmp_path), "MOMENTS_TOP_K": "abc"}
    proc = subprocess.run([sys.executable, "-m", "ui.cli", "ask", "hello"], capture_output=True, text=True,
                          check=False, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    expected = ("error: MOMENTS_TOP_K='abc' is not valid: it must be a whole number from 1 to 16 "
                "(setting top_k: option --top-k or variable MOMENTS_TOP_K)")
    assert proc.stderr.splitlines() == [expected]
