"""Access leftovers (issue 14): an API key sent as a header (``X-API-Key`` or ``Authorization: Bearer``, through
gradio_client's ``headers=`` and plain HTTP) and failed sign-ins locked after repeated failures, on the launched app
(real Gradio, real SQLite store; no model: nothing here answers a question)."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client

from agent.access import Accounts
from agent.access.limits import SignInLimiter, duration, locked_message
from tests.conftest import launch_app, make_settings
from tests.test_access import _exchange
from ui.api_keys import key_credentials


@pytest.fixture(scope="module")
def launched(session_home, tmp_path_factory):
    from agent.store import Store

    db = tmp_path_factory.mktemp("keys-db") / "keys.db"
    settings = make_settings(session_home, database_url=f"sqlite:///{db}", auth="password")
    store = Store(settings.db_url)
    accounts = Accounts(store)
    accounts.add("alice", "operator", "alice-secret-11")
    key_id, secret = accounts.add_key("shop widget", created_by="admin")
    other_id, other_secret = accounts.add_key("old widget", created_by="admin")
    cid, _ = _exchange(store, key_id, "the widget's question")
    _exchange(store, "alice", "alice's question")
    demo, url = launch_app(settings, store)
    gate = demo.moments.gate
    try:
        yield {"url": url, "store": store, "key": (key_id, secret), "other": (other_id, other_secret), "cid": cid,
               "gate": gate}
    finally:
        demo.close()
        store.close()


def test_key_credentials_are_read_from_either_header():
    assert key_credentials([(b"X-API-Key", b"key-1a2b:s3cr:et")]) == ("key-1a2b", "s3cr:et")
    assert key_credentials([(b"authorization", b"Bearer key-1a2b:abc")]) == ("key-1a2b", "abc")
    assert key_credentials([(b"authorization", b"Basic a2V5LTE6YWJj")]) is None
    assert key_credentials([(b"x-api-key", b"alice:password")]) is None  # only API keys, never user passwords
    assert key_credentials([(b"cookie", b"x=1")]) is None


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_gradio_client_with_the_key_as_a_header_is_the_key(launched, header):
    key_id, secret = launched["key"]
    value = f"{key_id}:{secret}" if header == "X-API-Key" else f"Bearer {key_id}:{secret}"
    client = Client(launched["url"], headers={header: value}, verbose=False)
    page = client.predict(api_name="/conversations")
    assert [i["conversation_id"] for i in page["items"]] == [str(launched["cid"])]  # its own only, not alice's


def test_plain_http_with_the_key_header(launched):

    key_id, secret = launched["key"]
    url = launched["url"] + "gradio_api/call/conversations"
    assert httpx.post(url, json={"data": []}).status_code == 401
    filters = ["", "", "", "", "", 20, 0]  # status, channel, since, until, text, limit, offset
    good = httpx.post(url, json={"data": filters}, headers={"X-API-Key": f"{key_id}:{secret}"})
    assert good.status_code == 200 and "event_id" in good.json()
    result = httpx.get(f"{url}/{good.json()['event_id']}", headers={"X-API-Key": f"{key_id}:{secret}"}).text
    assert "event: complete" in result and str(launched["cid"]) in result
    wrong = httpx.post(url, json={"data": []}, headers={"X-API-Key": f"{key_id}:{secret}x"})
    assert wrong.status_code == 401 and "refused" in wrong.json()["error"]
    assert httpx.get(launched["url"] + "config", headers={"Authorization": f"Bearer {key_id}:nope"}).status_code == 401


def test_a_revoked_key_header_is_refused(launched):
    other_id, other_secret = launched["other"]
    headers = {"X-API-Key": f"{other_id}:{other_secret}"}
    client = Client(launched["url"], headers=headers, verbose=False)
    assert client.predict(api_name="/conversations")["total"] == 0
    Accounts(launched["store"]).revoke_key(other_id)
    response = httpx.post(launched["url"] + "gradio_api/call/conversations", json={"data": []}, headers=headers)
    assert response.status_code == 401


def test_repeated_failed_sign_ins_lock_the_name_and_say_for_how_long(launched, caplog):
    url = launched["url"] + "login"
    answers = [httpx.post(url, data={"username": "alice", "password": "guess"}) for _ in range(5)]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 429]  # the fifth failure locks the name
    refused = httpx.post(url, data={"username": " alice ", "password": "alice-secret-11"})  # right, but locked
    assert refused.status_code == 429 and 25 <= int(refused.headers["retry-after"]) <= 30
    detail = refused.json()["detail"]
    assert detail.startswith("Sign-in for 'alice' is locked for ") and "s more after repeated failed attempts" in detail
    assert "even the right password is refused" in detail and refused.json()["locked_for_s"] <= 30
    assert "locked for 30 s after repeated failures" in caplog.text and "locked for" in caplog.text
    assert httpx.post(url, data={"username": "bob", "password": "guess"}).status_code == 400  # other names: as before
    with pytest.raises(ValueError, match="Could not login"):  # gradio_client says only that it could not sign in
        Client(launched["url"], auth=("alice", "alice-secret-11"), verbose=False)
    launched["gate"].limiter.succeeded("alice")  # the lockout ends (here: cleared, instead of waiting 30 s)
    assert httpx.post(url, data={"username": "alice", "password": "alice-secret-11"}).status_code == 200


def test_a_locked_api_key_header_is_told_for_how_long(launched):
    key_id, secret = launched["key"]
    launched["gate"].limiter.succeeded(key_id)  # the wrong secrets other tests sent do not count here
    url = launched["url"] + "gradio_api/call/conversations"
    wrong = [httpx.post(url, json={"data": []}, headers={"X-API-Key": f"{key_id}:nope"}) for _ in range(5)]
    assert [w.status_code for w in wrong] == [401] * 4 + [429]
    locked = httpx.post(url, json={"data": []}, headers={"X-API-Key": f"{key_id}:{secret}"})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) <= 30
    assert f"Sign-in for '{key_id}' is locked for " in locked.json()["error"]
    launched["gate"].limiter.succeeded(key_id)
    assert httpx.post(url, json={"data": ["", "", "", "", "", 20, 0]},
                      headers={"X-API-Key": f"{key_id}:{secret}"}).status_code == 200


def test_the_login_page_carries_the_locked_message_script_and_signed_in_pages_do_not(launched):
    page = httpx.get(launched["url"]).text
    assert "mo-signin-locked" in page and page.index("mo-signin-locked") < page.index("</head>")
    key_id, secret = launched["key"]
    signed_in = httpx.get(launched["url"], headers={"X-API-Key": f"{key_id}:{secret}"})
    assert signed_in.status_code == 200 and "mo-signin-locked" not in signed_in.text


def test_locked_messages_round_the_time_up_for_people():
    assert [duration(s) for s in (0.2, 28.1, 60, 125, 900)] == ["1 s", "29 s", "1 min", "2 min 5 s", "15 min"]
    assert locked_message("x" * 100, 5).count("x") == 64


def test_the_limiter_doubles_lockouts_and_forgets_old_failures():
    now = [0.0]
    limiter = SignInLimiter(max_failures=3, window_s=60, lockout_s=10, max_lockout_s=25, clock=lambda: now[0])
    assert [limiter.failed("bob") for _ in range(3)] == [0, 0, 10]
    assert limiter.wait_s("bob") == 10
    now[0] = 10.5
    assert limiter.wait_s("bob") == 0
    assert [limiter.failed("bob") for _ in range(3)] == [0, 0, 20]  # doubled
    now[0] = 40
    assert [limiter.failed("bob") for _ in range(3)] == [0, 0, 25]  # capped
    now[0] = 100
    limiter.failed("bob")
    now[0] = 200  # outside the window: that failure no longer counts
    assert [limiter.failed("bob") for _ in range(2)] == [0, 0]
    limiter.succeeded("bob")
    assert limiter.wait_s("bob") == 0 and limiter.failed("bob") == 0
    assert limiter.wait_s("carol") == 0
