"""Sign-in answers a person can act on: a name locked after repeated failures is told so, and for how long.

Gradio's own ``POST /login`` answers every refusal with ``400 Incorrect credentials`` (and its login page shows
just that), so a locked user would keep typing the right password into a lockout. :class:`SignInMessages`, an ASGI
middleware in front of Gradio (``launch(app_kwargs=gate.app_kwargs())``), changes two things:

* ``POST /login`` for a name that is locked (:class:`agent.access.limits.SignInLimiter`), or whose failed attempt
  has just locked it, is answered ``429 Too Many Requests`` with a ``Retry-After`` header (seconds) and the JSON
  ``{"detail": <locked_message>, "locked_for_s": N}``: "Sign-in for 'alice' is locked for 28 s more after repeated
  failed attempts; until then even the right password is refused. ..." Other sign-ins pass through untouched.
* The login page (Gradio's page while no one is signed in) gets :data:`SCRIPT`, which shows that detail under the
  page's title in a ``role="alert"`` line (``#mo-signin-locked``) counting the seconds down, then says the user may
  try again.

gradio_client (``Client(url, auth=...)``) reports any refused sign-in as "Could not login"; a program that wants
the reason posts to ``/login`` itself (the README shows how), and an API key sent as a header is told the same
(:mod:`ui.api_keys`).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from agent.access.limits import locked_message

log = logging.getLogger(__name__)

LOGIN_PATHS = ("/login", "/login/")

#: The login page's part: the locked message under the title, counted down (text only: never parsed as HTML).
SCRIPT = """<script>(() => {
  const realFetch = window.fetch.bind(window);
  let timer = null;
  function show(detail, seconds) {
    let line = document.getElementById("mo-signin-locked");
    if (!line) {
      line = document.createElement("p");
      line.id = "mo-signin-locked";
      line.setAttribute("role", "alert");
      line.style.cssText = "color: var(--error-text-color, #b91c1c); font-weight: 600; margin: 0.5em 0;";
      const title = document.querySelector("h2");
      if (title) title.insertAdjacentElement("afterend", line); else document.body.prepend(line);
    }
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        line.textContent = "The lockout is over: you can sign in again.";
        clearInterval(timer);
        return;
      }
      line.textContent = detail + " (" + left + " s left)";
    };
    clearInterval(timer);
    tick();
    timer = setInterval(tick, 1000);
  }
  window.fetch = async (...args) => {
    const response = await realFetch(...args);
    try {
      const target = args[0] instanceof Request ? args[0].url : String(args[0]);
      if (response.status === 429 && /\\/login\\/?$/.test(new URL(target, location.href).pathname)) {
        const body = await response.clone().json();
        show(body.detail, body.locked_for_s);
      }
    } catch (e) { /* not ours to explain */ }
    return response;
  };
})();</script>"""


async def _body(receive: Any) -> tuple[bytes, list[dict]]:
    """The request body, and the messages that carried it (to hand them to the app again)."""
    messages, chunks = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


async def _username(scope: dict, body: bytes) -> str:
    """The ``username`` field of a login form (URL-encoded or multipart), stripped as Gradio strips it."""
    from starlette.requests import Request

    async def once() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception:  # noqa: BLE001 - a malformed form is Gradio's to refuse
        return ""
    value = form.get("username")
    return value.strip() if isinstance(value, str) else ""


async def send_locked(send: Any, name: str, wait_s: float) -> None:
    """Answer ``429`` with the locked message (see the module docstring)."""
    seconds = max(1, math.ceil(wait_s))
    body = json.dumps({"detail": locked_message(name, wait_s), "locked_for_s": seconds}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(seconds).encode())]})
    await send({"type": "http.response.body", "body": body})


class SignInMessages:
    """See the module docstring. ``gate``: the app's :class:`ui.access.Gate`."""

    def __init__(self, app: Any, gate: Any) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in LOGIN_PATHS:
            await self._login(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/":
            await self.app(scope, receive, _with_script(send))
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope: dict, receive: Any, send: Any) -> None:
        body, messages = await _body(receive)
        name = await _username(scope, body)
        limiter = self.gate.limiter
        if name and (wait := limiter.wait_s(name)) > 0:
            await send_locked(send, name, wait)
            return
        pending = list(messages)

        async def replay() -> dict:
            return pending.pop(0) if pending else await receive()

        swallowed = False

        async def answer(message: dict) -> None:
            nonlocal swallowed
            if (message["type"] == "http.response.start" and message["status"] == 400 and name
                    and (wait := limiter.wait_s(name)) > 0):  # this failure locked the name: say so now
                swallowed = True
                await send_locked(send, name, wait)
                return
            if not swallowed:
                await send(message)

        await self.app(scope, replay, answer)


def _with_script(send: Any) -> Any:
    """``send`` for the page: the login page (``auth_required`` in its config) gets :data:`SCRIPT`."""
    start: dict | None = None
    chunks: list[bytes] = []

    async def wrapped(message: dict) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                start = message
                return
            await send(message)
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        page = b"".join(chunks)
        if b'"auth_required"' in page and b"</head>" in page:
            page = page.replace(b"</head>", SCRIPT.encode() + b"</head>", 1)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": headers + [(b"content-length", str(len(page)).encode())]})
        await send({"type": "http.response.body", "body": page})

    return wrapped
