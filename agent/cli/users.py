"""``moments users add/list/remove`` and ``moments keys add/list/revoke``: who may sign in to the app and its API
(see :mod:`agent.access`).

The password of ``users add`` is asked twice on a terminal, or read as one line from standard input with
``--password-stdin`` (scripts: ``printf '%s\\n' "$PW" | moments users add alice --role operator --password-stdin``);
it never appears on the command line. ``keys add`` prints a new API key's id and secret once (only a hash is kept).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from agent.cli.logs import _db_option, _open_store
from agent.cli.terminal import printable
from agent.errors import InputError
from agent.vocabulary import USER_ROLES


def read_password(args: argparse.Namespace) -> str:
    """The new user's password: one line of stdin with ``--password-stdin``, else asked twice at the terminal."""
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InputError("no password on standard input: send one line (at least 8 characters)")
        return password
    password = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != password:
        raise InputError("the two passwords differ; run the command again")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from agent.access import Accounts

    password = read_password(args)
    with _open_store(args) as store:
        user = Accounts(store).add(args.name, args.role, password)
    print(f"added {printable(user.name)} ({user.role})")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from agent.access import Accounts

    with _open_store(args) as store:
        users = Accounts(store).list()
    if not users:
        print("no users yet (`moments users add NAME --role admin`, or start `moments serve` once)")
    for user in users:
        print(f"{printable(user.name):<24} {user.role:<9} since {user.created_at:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from agent.access import Accounts

    with _open_store(args) as store:
        Accounts(store).remove(args.name)
    print(f"removed {printable(args.name)} (their conversations and feedback are kept)")
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    from agent.access import Accounts

    with _open_store(args) as store:
        key_id, secret = Accounts(store).add_key(args.label, created_by=args.by)
    print(f"API key for {printable(args.label)} (channel api; shown only now, keep the secret safe):\n"
          f"  key id: {key_id}\n  secret: {secret}\n"
          f'gradio_client: Client(url, auth=("{key_id}", secret)); revoke with `moments keys revoke {key_id}`')
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from agent.access import Accounts

    with _open_store(args) as store:
        keys = Accounts(store).api_keys()
    if not keys:
        print("no API keys (`moments keys add LABEL`)")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        print(f"{key.key_id:<18} {state:<24} {printable(key.label)}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from agent.access import Accounts

    with _open_store(args) as store:
        Accounts(store).revoke_key(args.key_id)
    print(f"revoked {printable(args.key_id)}: it is refused from now on")
    return 0


def register_keys(subparsers: Any) -> None:
    """Add ``keys`` (add, list, revoke) to the main CLI's subparsers."""
    keys = subparsers.add_parser("keys", help="API keys for embedding apps (add, list, revoke)")
    _db_option(keys)
    actions = keys.add_subparsers(dest="keys_command", metavar="{add,list,revoke}", required=True)
    add = actions.add_parser("add", help="make a key (its secret is printed once)")
    add.add_argument("label", help="what the key is for, e.g. 'shop widget'")
    add.add_argument("--by", help="who made it (recorded with the key)")
    _db_option(add)
    add.set_defaults(func=cmd_keys_add)
    listing = actions.add_parser("list", help="the keys, active and revoked")
    _db_option(listing)
    listing.set_defaults(func=cmd_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    _db_option(revoke)
    revoke.set_defaults(func=cmd_keys_revoke)


def register(subparsers: Any) -> None:
    """Add ``users`` (add, list, remove) to the main CLI's subparsers."""
    users = subparsers.add_parser("users", help="who may sign in to the app (add, list, remove)")
    _db_option(users)
    actions = users.add_subparsers(dest="users_command", metavar="{add,list,remove}", required=True)
    add = actions.add_parser("add", help="add a user (the password is asked, or read with --password-stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=USER_ROLES, required=True,
                     help="operator: chats, sees own conversations; reviewer: + review, ratings, corrections, "
                     "export; admin: + users")
    add.add_argument("--password-stdin", action="store_true", help="read the password as one line of stdin")
    _db_option(add)
    add.set_defaults(func=cmd_users_add)
    listing = actions.add_parser("list", help="the users and their roles")
    _db_option(listing)
    listing.set_defaults(func=cmd_users_list)
    remove = actions.add_parser("remove", help="remove a user (their conversations stay)")
    remove.add_argument("name")
    _db_option(remove)
    remove.set_defaults(func=cmd_users_remove)
    register_keys(subparsers)
