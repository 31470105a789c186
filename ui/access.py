"""Who is calling: the app's sign-in (Gradio's ``launch(auth=...)``) and the per-endpoint checks.

:class:`Gate` turns a handler's ``gr.Request`` into a :class:`Caller` (its ``username`` is the signed-in user,
looked up in the store on every call, so a removed user is refused at once) and raises ``gr.Error`` when the caller
may not do something. With ``MOMENTS_AUTH=none`` every caller is :data:`LOCAL` (an admin): a single-user local run.
A handler called in-process without a request (embedding code, tests) is trusted as :data:`LOCAL` too: only
network callers carry a request, and Gradio refuses those without a session before any handler runs.

Rules: an operator chats, and reads, continues, rates and hands over only their own conversations (by full id, never
by prefix); a reviewer also reads every conversation, rates and corrects as a reviewer, and exports; an admin
manages users (``moments users``) and API keys (``moments keys``). An API key (user name ``key-…``, its secret as
the password: ``Client(url, auth=(key_id, secret))``) is an operator on the ``api`` channel only: the API endpoints,
never the chat or review tabs; a revoked key is refused at once. A key may also be sent as a header
(``X-API-Key: <key id>:<secret>`` or ``Authorization: Bearer <key id>:<secret>``, :mod:`ui.api_keys`). A name whose
sign-ins keep failing is locked for a while (5 failures: 30 s, doubling up to 15 min), and told so with the time
left (:mod:`ui.signin`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from agent.access import Accounts, has_role, is_key_id
from agent.access.limits import SignInLimiter
from agent.errors import MomentsError
from agent.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """The user behind a call: their name and role (``local``: authentication is off, or an in-process call;
    ``api_only``: an API key, which may use the API endpoints only, as an operator)."""

    name: str
    role: str
    local: bool = False
    api_only: bool = False

    def can(self, role: str) -> bool:
        return has_role(self.role, role)


LOCAL = Caller(name="local", role="admin", local=True)


class Gate:
    """Sign-in and permission checks for one app (``settings.auth``; the users of ``store``)."""

    def __init__(self, settings: Settings, store=None) -> None:
        self.enabled = settings.auth != "none"
        self.store = store
        if self.enabled and store is None:
            raise MomentsError("Authentication (MOMENTS_AUTH=password) needs the conversation store, where the "
                               "users are kept, and it could not be opened. Fix MOMENTS_DATABASE_URL, or set "
                               "MOMENTS_AUTH=none for a single-user local run.")
        self.accounts = Accounts(store) if store is not None else None
        self.limiter = SignInLimiter()

    @classmethod
    def disabled(cls) -> Gate:
        """A gate that lets everyone in as :data:`LOCAL` (``MOMENTS_AUTH=none``)."""
        gate = cls.__new__(cls)
        gate.enabled, gate.store, gate.accounts, gate.limiter = False, None, None, SignInLimiter()
        return gate

    @property
    def auth(self) -> Callable[[str, str], bool] | None:
        """The ``auth`` argument of ``launch``: a (name, password) check, or None when authentication is off."""
        return self.login if self.enabled else None

    def login(self, name: str, password: str) -> bool:
        """Gradio's sign-in check (also for API keys sent as a header, :mod:`ui.api_keys`); a name that keeps
        failing is locked for a while (:class:`~agent.access.limits.SignInLimiter`)."""
        assert self.accounts is not None
        wait = self.limiter.wait_s(name)
        if wait > 0:
            log.warning("sign-in refused for %r: locked for %.0f s more after repeated failures", name, wait)
            return False
        try:
            if is_key_id(name):
                ok = self.accounts.authenticate_key(name, password) is not None
            else:
                ok = self.accounts.authenticate(name, password) is not None
        except MomentsError:
            log.exception("sign-in check failed")
            return False
        log.info("sign-in %s for %r", "accepted" if ok else "refused", name)
        if ok:
            self.limiter.succeeded(name)
        elif lockout := self.limiter.failed(name):
            log.warning("sign-in for %r locked for %.0f s after repeated failures", name, lockout)
        return ok

    def app_kwargs(self) -> dict:
        """``launch(app_kwargs=...)``: a locked name is told so, and for how long (:mod:`ui.signin`); API keys may
        also come as a header (:mod:`ui.api_keys`)."""
        if not self.enabled:
            return {}
        from starlette.middleware import Middleware

        from ui.api_keys import KeyHeaderAuth
        from ui.signin import SignInMessages

        return {"middleware": [Middleware(SignInMessages, gate=self), Middleware(KeyHeaderAuth, gate=self)]}

    def caller(self, request: gr.Request | None) -> Caller:
        """The caller of a handler; refuses an unknown or removed user."""
        if not self.enabled or request is None:
            return LOCAL
        name = getattr(request, "username", None)
        if is_key_id(name) and self.accounts is not None and self.accounts.get_key(name) is not None:
            return Caller(name=name, role="operator", api_only=True)
        user = self.accounts.get(name) if name and not is_key_id(name) and self.accounts is not None else None
        if user is None:
            raise gr.Error("Sign in first: this Moments server needs a user name and password, or an API key that "
                           "has not been revoked (ask an admin: `moments users add`, `moments keys add`).")
        return Caller(name=user.name, role=user.role)

    def require(self, request: gr.Request | None, role: str) -> Caller:
        """The caller, if their role includes ``role``; a clear refusal otherwise."""
        caller = self.caller(request)
        if not caller.can(role):
            raise gr.Error(f"Not allowed: this needs the {role} role, and {caller.name} is {caller.role}.")
        return caller

    def check_owner(self, caller: Caller, conversation_id: uuid.UUID, *, write: bool = False) -> None:
        """Refuse ``caller`` a conversation that is not theirs (reviewers may read any, not continue it). The
        message is the same whether the conversation exists or not."""
        if caller.local:
            return
        if not write and caller.can("reviewer"):
            return
        conv = self.store.get_conversation(conversation_id) if self.store is not None else None
        if conv is None or conv.operator != caller.name:
            raise gr.Error(f"No conversation {conversation_id} of yours (an operator sees only their own "
                           "conversations).")

    def ui_caller(self, request: gr.Request | None) -> Caller:
        """The caller of a chat-tab handler: API keys are refused (they are scoped to the ``api`` channel)."""
        caller = self.caller(request)
        if caller.api_only:
            raise gr.Error("API keys are for the API endpoints (/ask, /conversations, ...), not the chat tab; sign "
                           "in as a user to chat.")
        return caller

    def operator(self, caller: Caller) -> str | None:
        """What a new conversation records as its operator: the signed-in user (None when authentication is off)."""
        return None if caller.local else caller.name
