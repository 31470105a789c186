"""The ``moments`` console script: the agent's commands (:mod:`agent.cli`) plus ``serve``, which starts the UI.

``serve`` is defined here, on top of the layers, because the agent never imports the UI; the UI is imported only
when ``serve`` runs, so ``moments --help`` and ``moments ask`` do not load Gradio.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli.main import add_common_options, settings_from_args
from agent.cli.main import main as agent_main


def cmd_serve(args: argparse.Namespace) -> int:
    from agent.malloc import limit_arenas

    settings = settings_from_args(args)
    limit_arenas(settings.malloc_arenas)  # before Gradio's and torch's threads allocate
    from ui.app import serve

    serve(settings, host=args.host, port=args.port, share=False)
    return 0


def add_serve(subparsers: Any) -> None:
    """Add ``serve`` to the command line's subparsers."""
    serve = subparsers.add_parser("serve", help="start the Gradio app (chat and review)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    add_common_options(serve)
    serve.set_defaults(func=cmd_serve)


def main(argv: list[str] | None = None) -> int:
    """``moments ...``: every command, ``serve`` included."""
    return agent_main(argv, commands=[add_serve])


if __name__ == "__main__":
    sys.exit(main())
