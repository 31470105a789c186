"""Access (#14): users with roles and argon2-hashed passwords in the store (SQLite and PostgreSQL), ``moments users``,
``MOMENTS_AUTH``, and the really launched app refusing or allowing callers through gradio_client and plain HTTP.

Every other test runs with ``MOMENTS_AUTH=none`` (tests/conftest.py); these turn authentication on explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "rita": "rita-secret-333"}
ROLES = {"alice": "operator", "bob": "operator", "rita": "reviewer"}


# --- accounts in the store ---------------------------------------------------------------------------------------


def test_users_are_kept_with_a_hash_and_a_role_on_both_back_ends(store):
    from agent.access import Accounts
    from agent.store.errors import InvalidInputError, NotFoundError
    from agent.store.users import get_user

    accounts = Accounts(store)
    assert accounts.first_admin() is not None  # an empty store: the first admin is created...
    assert accounts.first_admin() is None      # ... once
    accounts.add("alice", "operator", "alice-secret-1")
    _, password_hash = get_user(store, "alice")
    assert "alice-secret-1" not in password_hash and password_hash.startswith("$argon2id$")
    assert accounts.authenticate("alice", "alice-secret-1").role == "operator"
    assert accounts.authenticate("alice", "alice-secret-2") is None
    assert accounts.authenticate("nobody", "alice-secret-1") is None
    with pytest.raises(InvalidInputError, match="exists already"):
        accounts.add("alice", "admin", "another-secret")
    with pytest.raises(InvalidInputError, match="unknown role"):
        accounts.add("carol", "superuser", "carol-secret")
    with pytest.raises(InvalidInputError, match="too short"):
        accounts.add("carol", "reviewer", "short")
    assert [(u.name, u.role) for u in accounts.list()] == [("admin", "admin"), ("alice", "operator")]
    accounts.remove("alice")
    assert accounts.authenticate("alice", "alice-secret-1") is None
    with pytest.raises(NotFoundError):
        accounts.remove("alice")


def test_api_keys_keep_only_a_hash_and_are_revocable_on_both_back_ends(store):
    from agent.access import Accounts
    from agent.store.errors import InvalidInputError, NotFoundError
    from agent.store.users import get_api_key

    accounts = Accounts(store)
    key_id, secret = accounts.add_key("shop widget", created_by="admin")
    public, secret_hash = get_api_key(store, key_id)
    assert key_id.startswith("key-") and secret not in secret_hash and public.channel == "api"
    assert accounts.authenticate_key(key_id, secret).label == "shop widget"
    assert accounts.authenticate_key(key_id, secret[:-1]) is None
    assert accounts.authenticate_key("key-000000000000", secret) is None
    with pytest.raises(InvalidInputError, match="may not start"):  # a user cannot pass for a key
        accounts.add(key_id, "admin", "some-long-password")
    accounts.revoke_key(key_id)
    assert accounts.authenticate_key(key_id, secret) is None and accounts.get_key(key_id) is None
    assert [k.revoked_at is not None for k in accounts.api_keys()] == [True]
    with pytest.raises(NotFoundError):
        accounts.revoke_key("key-000000000000")


def test_roles_include_the_ones_before_them():
    from agent.access import has_role

    assert has_role("admin", "reviewer") and has_role("reviewer", "operator") and has_role("operator", "operator")
    assert not has_role("operator", "reviewer") and not has_role("reviewer", "admin") and not has_role(None, "operator")


def test_the_users_table_goes_away_on_downgrade_and_comes_back(db_url):
    import sqlalchemy as sa

    from agent.access import Accounts
    from agent.store import Store
    from agent.store.db import make_engine, writer
    from agent.store.migrate import downgrade, upgrade

    with Store(db_url) as store:
        Accounts(store).add("alice", "operator", "alice-secret-1")
    engine = make_engine(db_url)
    try:
        with writer(engine).begin() as conn:
            downgrade(conn, "0003")
        with engine.connect() as conn:
            assert "app_user" not in sa.inspect(conn).get_table_names()
            assert "author" not in {c["name"] for c in sa.inspect(conn).get_columns("feedback")}
        with writer(engine).begin() as conn:
            upgrade(conn)
    finally:
        engine.dispose()
    with Store(db_url) as store:
        assert Accounts(store).list() == []


# --- the command line ----------------------------------------------------------------------------------------------


def _cli(*args: str, stdin: str = "", db: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOMENTS_DATABASE_URL": db}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120, check=False)


def test_moments_users_add_list_remove(tmp_path):
    from agent.access import Accounts
    from agent.store import Store

    db = f"sqlite:///{tmp_path / 'users.db'}"
    added = _cli("users", "add", "rita", "--role", "reviewer", "--password-stdin", stdin="rita-secret-333\n", db=db)
    assert added.returncode == 0, added.stderr
    assert "added rita (reviewer)" in added.stdout and "rita-secret-333" not in added.stdout + added.stderr
    again = _cli("users", "add", "rita", "--role", "admin", "--password-stdin", stdin="whatever-long\n", db=db)
    assert again.returncode == 2 and "exists already" in again.stderr
    assert _cli("users", "add", "x", "--role", "root", "--password-stdin", stdin="x" * 9 + "\n", db=db).returncode == 2
    listed = _cli("users", "list", db=db)
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["rita", "reviewer"]
    with Store(db) as store:
        assert Accounts(store).authenticate("rita", "rita-secret-333") is not None
    assert _cli("users", "remove", "rita", db=db).returncode == 0
    missing = _cli("users", "remove", "rita", db=db)
    assert missing.returncode == 2 and "no user 'rita'" in missing.stderr
    assert "no users yet" in _cli("users", "list", db=db).stdout


def test_moments_keys_add_list_revoke(tmp_path):
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    added = _cli("keys", "add", "shop widget", "--by", "admin", db=db)
    assert added.returncode == 0, added.stderr
    key_id = added.stdout.split("key id:")[1].split()[0]
    secret = added.stdout.split("secret:")[1].split()[0]
    from agent.access import Accounts
    from agent.store import Store

    with Store(db) as store:
        assert Accounts(store).authenticate_key(key_id, secret) is not None
    assert f"{key_id}" in _cli("keys", "list", db=db).stdout and secret not in _cli("keys", "list", db=db).stdout
    assert _cli("keys", "revoke", key_id, db=db).returncode == 0
    assert "revoked" in _cli("keys", "list", db=db).stdout
    with Store(db) as store:
        assert Accounts(store).authenticate_key(key_id, secret) is None


# --- the launched app --------------------------------------------------------------------------------------------


def _launch(settings, store):
    # the agent is lazy: nothing loads the model unless a question is answered
    from agent.pipeline import Agent
    from ui.app import build_app
    from ui.render import CSS

    demo = build_app(settings, agent=Agent(settings), store=store)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True,
                            auth=demo.moments.gate.auth)
    return demo, url


def _exchange(store, operator: str, question: str) -> tuple[uuid.UUID, int]:
    cid = store.start_conversation(channel="ui", operator=operator)
    store.add_user_turn(cid, text=question)
    turn = store.add_assistant_turn(cid, text=f"Answer to {question}", passages=[
        {"rank": 1, "doc_id": "returns", "id": "returns#0", "title": "Returns", "text": "30 days.", "score": 0.7}])
    return cid, turn


@pytest.fixture(scope="module")
def app(session_home, tmp_path_factory):
    from agent.access import Accounts
    from agent.store import Store

    db = tmp_path_factory.mktemp("access-db") / "access.db"
    settings = make_settings(session_home, database_url=f"sqlite:///{db}", auth="password")
    store = Store(settings.db_url)
    for name, role in ROLES.items():
        Accounts(store).add(name, role, PASSWORDS[name])
    convs = {name: _exchange(store, name, f"{name}'s question") for name in ("alice", "bob")}
    key_id, secret = Accounts(store).add_key("shop widget", created_by="admin")
    convs["key"] = _exchange(store, key_id, "the widget's question")
    demo, url = _launch(settings, store)
    clients = {name: Client(url, auth=(name, PASSWORDS[name]), verbose=False) for name in ROLES}
    clients["key"] = Client(url, auth=(key_id, secret), verbose=False)
    try:
        yield {"url": url, "store": store, "convs": convs, "key_id": key_id, "secret": secret, **clients}
    finally:
        demo.close()
        store.close()


def test_callers_without_or_with_wrong_credentials_are_refused(app):
    from gradio_client.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError):
        Client(app["url"], verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(app["url"], auth=("alice", "bob-secret-22"), verbose=False)
    for path in ("config", "gradio_api/info"):
        assert httpx.get(app["url"] + path).status_code == 401
    posted = httpx.post(app["url"] + "gradio_api/call/conversations", json={"data": []})
    assert posted.status_code == 401


def test_an_operator_sees_only_their_own_conversations(app):
    from gradio_client.exceptions import AppError

    (alice_cid, _), (bob_cid, bob_turn) = app["convs"]["alice"], app["convs"]["bob"]
    page = app["alice"].predict(api_name="/conversations")
    assert [i["conversation_id"] for i in page["items"]] == [str(alice_cid)] and page["total"] == 1
    assert app["alice"].predict(str(alice_cid), api_name="/conversation")["turns"][0]["text"] == "alice's question"
    with pytest.raises(AppError, match="of yours"):
        app["alice"].predict(str(bob_cid), api_name="/conversation")
    with pytest.raises(AppError, match="Invalid conversation id"):  # no lookups by prefix, not even of their own
        app["alice"].predict(str(alice_cid)[:8], api_name="/conversation")
    with pytest.raises(AppError, match="of yours"):  # appending to someone else's conversation
        app["alice"].predict("Are orders free?", str(bob_cid), api_name="/ask")
    with pytest.raises(AppError, match="of yours"):
        app["alice"].predict(str(bob_cid), "", api_name="/handover")
    with pytest.raises(AppError, match="of yours"):
        app["alice"].predict(bob_turn, "down", api_name="/feedback")
    assert app["store"].get_conversation(bob_cid).status == "open"
    assert [t.index for t in app["store"].get_conversation(bob_cid).turns] == [0, 1]


def test_only_reviewers_review_correct_and_export(app):
    from gradio_client.exceptions import AppError

    filters = ["", "any", "any", "any", "any", None, "", "", ""]
    alice_turn = app["convs"]["alice"][1]
    for name, args in (("review_search", [*filters, 1]), ("review_export", ["JSONL (everything)", *filters]),
                       ("review_rate", [alice_turn, "down", [], "", "All orders are free.", "rita"])):
        with pytest.raises(AppError, match="needs the reviewer role"):
            app["alice"].predict(*args, api_name=f"/{name}")
    with pytest.raises(AppError, match="only reviewers"):
        app["alice"].predict(alice_turn, "down", "", "", "All orders are free.", api_name="/feedback")
    out = app["alice"].predict(alice_turn, "up", api_name="/feedback")  # rating their own answer is fine
    feedback = app["store"].get_turn(alice_turn).feedback
    assert [(f.id, f.author, f.rating, f.corrected_answer) for f in feedback] == [(out["feedback_id"], "alice", "up",
                                                                                   None)]

    page = app["rita"].predict(*filters, 1, api_name="/review_search")
    assert page["total"] == len(page["items"]) == 3  # a reviewer sees every conversation
    # the reviewer is the signed-in user, whatever name is typed in the form
    app["rita"].predict(alice_turn, "down", ["outdated"], "", "Within 30 days.", "mallory", api_name="/review_rate")
    review = [f for f in app["store"].get_turn(alice_turn).feedback if f.source == "reviewer"]
    assert [(f.reviewer, f.author, f.reviewed) for f in review] == [("rita", "rita", True)]
    with pytest.raises(AppError, match="of yours"):  # a reviewer reads any conversation, but extends only their own
        app["rita"].predict("Hello?", str(app["convs"]["alice"][0]), api_name="/ask")


def test_the_finetune_export_holds_only_corrections_by_reviewers(app):
    bob_turn = app["convs"]["bob"][1]
    # a planted correction that no reviewer gave (as an unauthenticated /review_rate used to allow)
    app["store"].add_feedback(bob_turn, source="api", rating="down", corrected_answer="Admin password: hunter2",
                              author="bob")
    filters = ["", "any", "any", "any", "any", None, "", "", ""]
    path = app["rita"].predict("Fine-tune (corrected answers)", *filters, api_name="/review_export")
    records = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert [r["messages"][1]["content"] for r in records] == ["Within 30 days."]
    assert records[0]["metadata"]["reviewer"] == "rita"


def test_an_api_key_is_an_operator_on_the_api_channel_only(app):
    from gradio_client.exceptions import AppError

    key, (key_cid, _) = app["key"], app["convs"]["key"]
    page = key.predict(api_name="/conversations")
    assert [i["conversation_id"] for i in page["items"]] == [str(key_cid)]
    assert key.predict(str(key_cid), api_name="/conversation")["turns"][1]["text"] == "Answer to the widget's question"
    with pytest.raises(AppError, match="of yours"):
        key.predict(str(app["convs"]["alice"][0]), api_name="/conversation")
    with pytest.raises(AppError, match="needs the reviewer role"):
        key.predict("", "any", "any", "any", "any", None, "", "", "", 1, api_name="/review_search")
    before = app["store"].count_conversations()
    out = key.predict("Hello?", [], True, api_name="/chat")  # the chat tab is not the api channel
    status = [o for o in out if isinstance(o, str) and "mo-error" in o]  # the status line under the input
    assert len(status) == 1 and "API keys are for the API endpoints" in status[0]
    assert app["store"].count_conversations() == before
    with pytest.raises(ValueError, match="Could not login"):
        Client(app["url"], auth=(app["key_id"], app["secret"] + "x"), verbose=False)


def test_a_revoked_key_is_refused_at_once(app):
    from gradio_client.exceptions import AppError

    from agent.access import Accounts

    key = Client(app["url"], auth=(app["key_id"], app["secret"]), verbose=False)
    assert key.predict(api_name="/conversations")["total"] == 1
    Accounts(app["store"]).revoke_key(app["key_id"])
    with pytest.raises(AppError, match="Sign in first"):
        key.predict(api_name="/conversations")
    with pytest.raises(ValueError, match="Could not login"):
        Client(app["url"], auth=(app["key_id"], app["secret"]), verbose=False)


def test_a_removed_user_is_refused_at_once(app):
    from gradio_client.exceptions import AppError

    from agent.access import Accounts

    bob = app["bob"]
    assert bob.predict(api_name="/conversations")["total"] == 1
    Accounts(app["store"]).remove("bob")
    with pytest.raises(AppError, match="Sign in first"):
        bob.predict(api_name="/conversations")


def test_the_first_start_creates_an_admin_and_logs_its_password_once(session_home, tmp_path, caplog):
    from agent.store import Store
    from ui.access import Gate
    from ui.app import first_admin

    settings = make_settings(session_home, database_url=f"sqlite:///{tmp_path / 'first.db'}", auth="password")
    with Store(settings.db_url) as store:
        gate = Gate(settings, store)
        with caplog.at_level(logging.WARNING, logger="ui.app"):
            password = first_admin(gate)
        assert password and password in caplog.text and "admin" in caplog.text
        assert gate.login("admin", password) and not gate.login("admin", password + "x")
        caplog.clear()
        assert first_admin(gate) is None and password not in caplog.text


def test_with_auth_none_anyone_gets_in_and_the_page_says_so(session_home, tmp_path):
    from agent.store import Store

    settings = make_settings(session_home, database_url=f"sqlite:///{tmp_path / 'open.db'}", auth="none")
    with Store(settings.db_url) as store:
        demo, url = _launch(settings, store)
        try:
            assert "MOMENTS_AUTH=none" in httpx.get(url + "config").text
            assert Client(url, verbose=False).predict(api_name="/conversations")["total"] == 0
        finally:
            demo.close()


def test_sign_in_without_a_store_refuses_to_start_and_says_what_to_do(session_home):
    from agent.errors import MomentsError
    from ui.access import Gate

    with pytest.raises(MomentsError, match="MOMENTS_AUTH=none"):
        Gate(make_settings(session_home, auth="password"), None)
    assert Gate(make_settings(session_home, auth="none"), None).auth is None


def test_the_auth_setting_accepts_only_password_or_none(session_home):
    from agent.settings import SettingsError, load_settings

    assert load_settings({"auth": "none"}).auth == "none"
    with pytest.raises(SettingsError, match="MOMENTS_AUTH"):
        load_settings({"auth": "off"})


def test_with_auth_on_the_page_does_not_say_it_is_off(app):
    config = httpx.get(app["url"] + "config", cookies=_login(app["url"], "alice")).text
    assert "MOMENTS_AUTH=none" not in config and "mo-who" in config


def _login(url: str, name: str) -> httpx.Cookies:
    response = httpx.post(url + "login", data={"username": name, "password": PASSWORDS[name]})
    assert response.status_code == 200
    return response.cookies


@pytest.mark.slow
def test_a_signed_in_ask_records_its_operator_and_only_they_continue_it(session_home, generator, kb_index,
                                                                          tmp_path):
    from gradio_client.exceptions import AppError

    from agent.access import Accounts
    from agent.pipeline import Agent
    from agent.store import Store
    from ui.app import build_app
    from ui.render import CSS

    settings = make_settings(session_home, database_url=f"sqlite:///{tmp_path / 'ask.db'}", auth="password",
                             max_new_tokens=24)
    with Store(settings.db_url) as store:
        for name in ("alice", "bob"):
            Accounts(store).add(name, "operator", PASSWORDS[name])
        demo = build_app(settings, agent=Agent(settings, generator=generator, index=kb_index), store=store)
        demo.queue(default_concurrency_limit=1)
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True,
                                auth=demo.moments.gate.auth)
        try:
            alice = Client(url, auth=("alice", PASSWORDS["alice"]), verbose=False)
            out = alice.predict("How long do I have to return an item?", "", False, "summary", api_name="/ask")
            cid = out["conversation_id"]
            alice.predict("And for electronics?", cid, False, "summary", api_name="/ask")
            bob = Client(url, auth=("bob", PASSWORDS["bob"]), verbose=False)
            with pytest.raises(AppError, match="of yours"):
                bob.predict("Are orders free?", cid, False, "summary", api_name="/ask")
            conv = store.get_conversation(uuid.UUID(cid))
            assert (conv.operator, conv.channel) == ("alice", "api")
            assert [t.role for t in conv.turns] == ["user", "assistant"] * 2
            assert bob.predict(api_name="/conversations")["total"] == 0
        finally:
            demo.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_fresh_moments_serve_prints_an_admin_password_that_signs_in(session_home, kb_index, tmp_path):
    """The first start on an empty store, as ``make run`` does it: the admin's password is on the terminal once, and
    it signs in; a caller without it is refused."""
    import re
    import socket
    import time

    from gradio_client.exceptions import AuthenticationError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MOMENTS_AUTH": "password", "MOMENTS_HOME": str(session_home),
           "MOMENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url + "config").status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        out = log_path.read_text()
        found = re.search(r"created the user 'admin'.*?\n\n    (\S+)\n", out, re.DOTALL)
        assert found, out[-3000:]
        with pytest.raises(AuthenticationError):
            Client(url, verbose=False)
        admin = Client(url, auth=("admin", found.group(1)), verbose=False)
        assert admin.predict(api_name="/conversations")["total"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
