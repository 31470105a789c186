"""Who may use Moments: users with roles (operator, reviewer, admin) and argon2-hashed passwords, kept in the store.

    accounts = Accounts(store)
    accounts.add("alice", "operator", password)     # the store keeps the argon2 hash, never the password
    accounts.authenticate("alice", password)        # -> UserPublic, or None (wrong name or password)
    accounts.first_admin()                          # with no users at all: creates "admin", returns its password
    key_id, secret = accounts.add_key("shop widget", created_by="admin")   # secret shown once, only its hash kept
    accounts.authenticate_key(key_id, secret)       # -> ApiKeyPublic, or None (wrong, unknown or revoked)

Roles include the ones before them (:data:`agent.vocabulary.USER_ROLES`): an operator chats and sees their own
conversations; a reviewer also sees every conversation, rates, corrects and exports; an admin also manages users.
``MOMENTS_AUTH=none`` (:class:`agent.settings.Settings.auth`) turns all of this off for a single-user local run.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from agent.store import Store
from agent.store.errors import InvalidInputError
from agent.store.models import ApiKeyPublic, UserPublic
from agent.store.users import (
    add_api_key,
    add_user,
    count_users,
    get_api_key,
    get_user,
    list_api_keys,
    list_users,
    remove_user,
    revoke_api_key,
)
from agent.vocabulary import USER_ROLES

log = logging.getLogger(__name__)

#: Name of the administrator created on the first start (when the store has no users).
FIRST_ADMIN = "admin"
MIN_PASSWORD = 8
#: API key ids start with this (and user names may not), so a sign-in name says which one it is
KEY_PREFIX = "key-"
_hasher = PasswordHasher()
#: verified against when the user does not exist, so that a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def has_role(role: str | None, needed: str) -> bool:
    """Whether ``role`` includes ``needed`` (admin ⊇ reviewer ⊇ operator)."""
    if role not in USER_ROLES or needed not in USER_ROLES:
        return False
    return USER_ROLES.index(role) >= USER_ROLES.index(needed)


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (at least :data:`MIN_PASSWORD` characters)."""
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInputError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def is_key_id(name: str | None) -> bool:
    return bool(name) and str(name).startswith(KEY_PREFIX)


def _secret_hash(secret: str) -> str:
    """SHA-256 of a key's secret: 32 random bytes need no slow hash, and checking stays cheap on every call."""
    return hashlib.sha256((secret or "").encode("utf-8", "surrogatepass")).hexdigest()


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Accounts:
    """The users of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, name: str, role: str, password: str) -> UserPublic:
        if is_key_id(name):
            raise InvalidInputError(f"user names may not start with {KEY_PREFIX!r} (API keys do)")
        return add_user(self.store, name, role, hash_password(password))

    def list(self) -> list[UserPublic]:
        return list_users(self.store)

    def remove(self, name: str) -> None:
        remove_user(self.store, name)

    def get(self, name: str) -> UserPublic | None:
        found = get_user(self.store, name)
        return None if found is None else found[0]

    def authenticate(self, name: str, password: str) -> UserPublic | None:
        """The user when ``password`` is theirs; None otherwise (same cost whether or not the name exists)."""
        found = get_user(self.store, name or "")
        if found is None:
            verify_password(_DUMMY_HASH, password or "")
            return None
        user, password_hash = found
        return user if verify_password(password_hash, password or "") else None

    def add_key(self, label: str, *, created_by: str | None = None) -> tuple[str, str]:
        """A new API key for an embedding app: (key id, secret). The secret is returned once; the store keeps its
        hash. The app signs in with the key id as user name and the secret as password (channel ``api`` only)."""
        key_id, secret = KEY_PREFIX + secrets.token_hex(6), secrets.token_urlsafe(32)
        add_api_key(self.store, key_id, _secret_hash(secret), label, created_by)
        return key_id, secret

    def api_keys(self) -> list[ApiKeyPublic]:
        return list_api_keys(self.store)

    def revoke_key(self, key_id: str) -> None:
        revoke_api_key(self.store, key_id)

    def get_key(self, key_id: str) -> ApiKeyPublic | None:
        """The key if it exists and is not revoked."""
        found = get_api_key(self.store, key_id)
        return None if found is None or found[0].revoked_at is not None else found[0]

    def authenticate_key(self, key_id: str, secret: str) -> ApiKeyPublic | None:
        """The key when ``secret`` is its secret and it is not revoked; None otherwise."""
        found = get_api_key(self.store, key_id)
        if found is None or found[0].revoked_at is not None:
            return None
        return found[0] if hmac.compare_digest(found[1], _secret_hash(secret)) else None

    def first_admin(self) -> str | None:
        """With no users at all, create :data:`FIRST_ADMIN` with a random password and return that password (to be
        shown once); None when users exist."""
        if count_users(self.store) > 0:
            return None
        password = secrets.token_urlsafe(12)
        try:
            self.add(FIRST_ADMIN, "admin", password)
        except InvalidInputError:  # another process created it at the same moment
            return None
        return password


__all__ = ["FIRST_ADMIN", "KEY_PREFIX", "Accounts", "has_role", "hash_password", "is_key_id", "verify_password"]
