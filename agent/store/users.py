"""The store's user accounts and API keys (tables ``app_user`` and ``api_key``, revision 0004): add, list, look up,
remove users; add, list, look up and revoke keys.

The store keeps names, roles and password *hashes* only; hashing and checking passwords is :mod:`agent.access`'s
job. Every function takes an open :class:`~agent.store.Store` and is one transaction, like the store's own methods.
"""

from __future__ import annotations

from sqlmodel import Session, func, select

from agent.store.errors import InvalidInputError, NotFoundError
from agent.store.models import ApiKey, ApiKeyPublic, User, UserPublic
from agent.store.store import Store
from agent.store.types import utcnow
from agent.vocabulary import USER_ROLES

MAX_NAME = 255


def check_name(name: str) -> str:
    """A user name as stored: stripped, 1-255 printable characters without spaces; else :class:`InvalidInputError`."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME or not name.isprintable() or any(c.isspace() for c in name):
        raise InvalidInputError(f"invalid user name {name!r}: use 1 to {MAX_NAME} printable characters, no spaces")
    return name


def _public(user: User) -> UserPublic:
    return UserPublic(name=user.name, role=user.role, created_at=user.created_at)


def add_user(store: Store, name: str, role: str, password_hash: str) -> UserPublic:
    """Create a user; an existing name or an unknown role raises :class:`InvalidInputError`."""
    name = check_name(name)
    if role not in USER_ROLES:
        raise InvalidInputError(f"unknown role {role!r}; use one of {', '.join(USER_ROLES)}")

    def write(session: Session) -> UserPublic:
        if session.exec(select(User).where(User.name == name)).first() is not None:
            raise InvalidInputError(f"user {name!r} exists already (remove it first to change it)")
        user = User(name=name, role=role, password_hash=password_hash)
        session.add(user)
        session.flush()
        return _public(user)

    return store._write("add the user", write)


def get_user(store: Store, name: str) -> tuple[UserPublic, str] | None:
    """The user called ``name`` and its password hash, or None."""

    def read(session: Session) -> tuple[UserPublic, str] | None:
        user = session.exec(select(User).where(User.name == (name or "").strip())).first()
        return None if user is None else (_public(user), user.password_hash)

    return store._read("read the user", read)


def list_users(store: Store) -> list[UserPublic]:
    """Every user, by name."""
    return store._read("list the users", lambda session: [_public(u) for u in session.exec(
        select(User).order_by(User.name)).all()])


def count_users(store: Store) -> int:
    return store._read("count the users", lambda session: session.exec(select(func.count()).select_from(
        User)).one())


def remove_user(store: Store, name: str) -> None:
    """Delete a user (their conversations and feedback stay); a missing one raises :class:`NotFoundError`."""

    def write(session: Session) -> None:
        user = session.exec(select(User).where(User.name == (name or "").strip())).first()
        if user is None:
            raise NotFoundError(f"no user {name!r} (`moments users list` shows them)")
        session.delete(user)

    store._write("remove the user", write)


def _key_public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(key_id=key.key_id, label=key.label, created_by=key.created_by, channel=key.channel,
                        created_at=key.created_at, revoked_at=key.revoked_at)


def add_api_key(store: Store, key_id: str, secret_hash: str, label: str, created_by: str | None) -> ApiKeyPublic:
    """Record a new API key (its secret's hash only)."""
    label = (label or "").strip()
    if not label or len(label) > MAX_NAME or not label.isprintable():
        raise InvalidInputError(f"invalid key label {label!r}: use 1 to {MAX_NAME} printable characters")

    def write(session: Session) -> ApiKeyPublic:
        key = ApiKey(key_id=key_id, secret_hash=secret_hash, label=label, created_by=created_by)
        session.add(key)
        session.flush()
        return _key_public(key)

    return store._write("add the API key", write)


def get_api_key(store: Store, key_id: str) -> tuple[ApiKeyPublic, str] | None:
    """The key ``key_id`` (revoked or not) and its secret's hash, or None."""

    def read(session: Session) -> tuple[ApiKeyPublic, str] | None:
        key = session.exec(select(ApiKey).where(ApiKey.key_id == (key_id or "").strip())).first()
        return None if key is None else (_key_public(key), key.secret_hash)

    return store._read("read the API key", read)


def list_api_keys(store: Store) -> list[ApiKeyPublic]:
    return store._read("list the API keys", lambda session: [_key_public(k) for k in session.exec(
        select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()])


def revoke_api_key(store: Store, key_id: str) -> None:
    """Revoke a key (it stays listed, with the time); a missing one raises :class:`NotFoundError`."""

    def write(session: Session) -> None:
        key = session.exec(select(ApiKey).where(ApiKey.key_id == (key_id or "").strip())).first()
        if key is None:
            raise NotFoundError(f"no API key {key_id!r} (`moments keys list` shows them)")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            session.add(key)

    store._write("revoke the API key", write)
