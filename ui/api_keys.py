"""API keys sent as a header: ``X-API-Key: <key id>:<secret>`` or ``Authorization: Bearer <key id>:<secret>``.

:class:`KeyHeaderAuth` is an ASGI middleware (``launch(app_kwargs=gate.app_kwargs())``) in front of Gradio's
routes. A request carrying such a header is checked with the gate's sign-in check (so failures count towards its
lockout); a valid key gets a Gradio session for its key id (one per key, reused), handed to Gradio as the session
cookie of this one request, so every route and handler sees the key id as the signed-in user exactly as after
``Client(url, auth=(key_id, secret))``; an invalid one is answered ``401`` with a one-line reason, without reaching
Gradio (``429`` with ``Retry-After`` and the time left while the key id is locked after repeated failures).
Requests without the header pass through untouched (Gradio's own sign-in applies). Handlers still check the key on
every call (a revoked key is refused at once).
"""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

from anyio import to_thread

from agent.access import is_key_id
from agent.access.limits import locked_message

HEADERS = (b"x-api-key", b"authorization")


def key_credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """``(key id, secret)`` from the request's headers, or None when it carries no API key."""
    for name, value in headers:
        if name.lower() not in HEADERS:
            continue
        text = value.decode("latin-1").strip()
        if name.lower() == b"authorization":
            scheme, _, text = text.partition(" ")
            if scheme.lower() != "bearer":
                continue
        key_id, sep, secret = text.strip().partition(":")
        if sep and is_key_id(key_id):
            return key_id, secret
    return None


class KeyHeaderAuth:
    """See the module docstring. ``gate``: the app's :class:`ui.access.Gate`."""

    def __init__(self, app: Any, gate: Any) -> None:
        self.app, self.gate = app, gate
        self._sessions: dict[str, str] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        credentials = key_credentials(scope.get("headers", [])) if scope["type"] in ("http", "websocket") else None
        if credentials is None:
            await self.app(scope, receive, send)
            return
        key_id, secret = credentials
        if not await to_thread.run_sync(self.gate.login, key_id, secret):
            wait = self.gate.limiter.wait_s(key_id)
            await _refuse(send, locked_message(key_id, wait) if wait > 0 else
                          f"API key {key_id} refused: unknown, revoked or wrong secret.", wait)
            return
        gradio_app = scope["app"]
        token = self._sessions.setdefault(key_id, secrets.token_urlsafe(16))
        gradio_app.tokens[token] = key_id
        cookie = f"access-token-{gradio_app.cookie_id}={token}".encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"cookie"] + [(b"cookie", cookie)]
        await self.app({**scope, "headers": headers}, receive, send)


async def _refuse(send: Any, message: str, locked_s: float = 0.0) -> None:
    """``401`` with a one-line reason; ``429`` with ``Retry-After`` when the key is locked after repeated failures."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if locked_s > 0:
        headers.append((b"retry-after", str(max(1, math.ceil(locked_s))).encode()))
    await send({"type": "http.response.start", "status": 429 if locked_s > 0 else 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
