"""``moments worker``: compute exact explanations from the task queue (``MOMENTS_QUEUE_URL``; see
:mod:`agent.background.rqueue`)."""

from __future__ import annotations

import argparse


def cmd_worker(args: argparse.Namespace) -> int:
    from agent.background.rqueue import run_worker
    from agent.cli.main import settings_from_args

    return run_worker(settings_from_args(args), burst=args.burst, name=args.name)


def register(sub) -> None:
    from agent.cli.main import add_common_options

    p = sub.add_parser("worker", help="compute exact explanations queued by the app (needs MOMENTS_QUEUE_URL)")
    p.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    p.add_argument("--name", default=None, help="worker name recorded with each explanation (default host:pid)")
    add_common_options(p)
    p.set_defaults(func=cmd_worker)
