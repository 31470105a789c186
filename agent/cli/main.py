"""The agent's command line: ask, index, logs, export, train. ``serve`` needs the UI layer, so :mod:`ui.cli` (the
``moments`` console script) adds it through :func:`main`'s ``commands`` hook; this layer never imports ``ui``.

This is the only module (with the store's CLI handlers) that prints; everything else logs. Whatever it prints of
stored or user text goes through :func:`agent.cli.terminal.printable` (JSON through ``printable_json``), so control
characters in a message, a reply or a passage are shown as escapes, never obeyed by the terminal. Arguments that
are not valid UTF-8 and invalid settings end the command with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.terminal import PrintableFormatter, printable, printable_json
from agent.errors import InputError, MomentsError
from agent.settings import Settings, load_settings
from agent.text_input import text_problem

if TYPE_CHECKING:  # the pipeline loads torch: imported only when a command runs it
    from agent.pipeline import TurnEvent
    from agent.turn import TurnResult

log = logging.getLogger("moments")


#: The settings that are also options (see :func:`add_common_options`), as the user types them.
OPTIONS = {"model": "--model", "adapter": "--adapter", "kb_path": "--kb", "top_k": "--top-k", "database_url": "--db"}


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings in force: ``MOMENTS_*`` variables, overridden by the options given on the command line; an
    invalid value raises :class:`~agent.settings.SettingsError` naming the variable or option and what it accepts."""
    overrides = {}
    for name in ("model", "adapter", "kb_path", "top_k", "database_url", "home"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(overrides, options=OPTIONS)


def check_arguments(argv: Sequence[str]) -> None:
    """Raise :class:`InputError` for an argument that is not valid UTF-8 text (Python decodes such bytes to lone
    surrogates) or holds a NUL, naming it by position and showing its bytes."""
    for position, arg in enumerate(argv, 1):
        problem = text_problem(arg)
        if problem and "UTF-8" in problem:
            try:
                problem = f"is not valid UTF-8 text (its bytes: {arg.encode('utf-8', 'surrogateescape')!r})"
            except UnicodeEncodeError:  # a surrogate no bytes decode to (main called with such a string)
                problem = f"is not valid UTF-8 text ({arg!a})"
        if problem:
            raise InputError(f"argument {position} {problem}. Type it again as UTF-8 text (check that your "
                             "terminal and LANG / LC_ALL use UTF-8).")


def cmd_ask(args: argparse.Namespace) -> int:
    from agent.conversation import ConversationRunner, try_open_store
    from agent.pipeline import Agent

    settings = settings_from_args(args)
    agent = Agent(settings)
    store, why = None, None
    if not args.no_store:
        store, why = try_open_store(settings)
        if store is None:
            print(printable(f"warning: this turn will not be stored: {why}"), file=sys.stderr)
    runner = ConversationRunner(agent, store)
    agent.validate(args.question)
    if args.conversation and store is None:
        raise MomentsError("--conversation continues a stored conversation: it needs the store ("
                           f"{'drop --no-store' if args.no_store else why})")
    cid = runner.resolve(args.conversation) if args.conversation else None
    agent.warm_up()  # load (first run: provision) before the turn, so its timings are the turn's own
    not_stored = why if store is None and not args.no_store else None
    if cid is None and store is not None:
        cid, not_stored = runner.open(channel="cli")
    result = print_turn(runner.stream(cid, args.question, explain=args.explain, not_stored=not_stored), settings,
                        as_json=args.json)
    if not result.stored and result.not_stored:
        print(printable(f"warning: this answer was NOT stored: {result.not_stored}"), file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """``moments worker``: run exact-explanation jobs from the queue (:mod:`agent.background.rqueue`)."""
    from agent.malloc import limit_arenas

    settings = settings_from_args(args)
    limit_arenas(settings.malloc_arenas)
    from agent.background.rqueue import run_worker

    return run_worker(settings, burst=args.burst, name=args.name)


def print_turn(events: Iterable[TurnEvent], settings: Settings, *, as_json: bool = False) -> TurnResult:
    """Print a turn as it streams: each token as it comes, then the passages, timings and explanation (or, with
    ``as_json``, one JSON object at the end); every text goes through :func:`printable`. Returns the result."""
    result = None
    for event in events:
        if event.kind == "token" and not as_json:
            print(printable(event.text), end="", flush=True)
        elif event.kind == "done":
            result = event.result
    if result is None:
        raise MomentsError("the turn ended without an answer; try again (moments -v ask ... logs what happened)")
    if as_json:
        print(printable_json(json.dumps(result.to_dict(), ensure_ascii=False, indent=2)))
    else:
        _print_result(result, settings)
    return result


def _print_result(result: TurnResult, settings: Settings) -> None:
    print()
    if result.abstained:
        print(f"(abstained: best retrieval score {result.best_score:.3f} < threshold {settings.abstain_threshold})")
    print("\nPassages:")
    for h in result.hits:
        print(printable(f"  [{h.rank}] {h.score:.3f}  {h.passage.title}  ({h.passage.id})"))
    t = result.timings
    print(printable(f"\nretrieval {t.get('retrieval_ms', 0):.0f} ms, generation {t.get('generation_ms', 0):.0f} ms "
                    f"({len(result.token_ids)} tokens), model {result.versions.get('base_model')}"
                    f"{' + ' + result.versions['adapter'] if result.versions.get('adapter') else ''}"))
    if result.conversation_id:
        print(printable(f"conversation {result.conversation_id} (continue it with --conversation "
                        f"{result.conversation_id[:8]})"))
    if result.explanation is not None:
        print("\nExplanation:")
        print(printable(result.explanation.render_text()))


def cmd_index(args: argparse.Namespace) -> int:
    from retrieval.embedder import set_precision
    from retrieval.index import KnowledgeIndex, index_dir_for

    settings = settings_from_args(args)
    set_precision(settings.embed_precision)
    kb = Path(args.path).expanduser().resolve()
    started = time.perf_counter()
    target = index_dir_for(settings.index_dir, kb)
    if args.force and target.exists():
        import shutil

        shutil.rmtree(target)
    index = KnowledgeIndex.load_or_build(kb, target, settings.embedder, settings.chunk_tokens, progress=True,
                                         max_file_bytes=settings.kb_max_file_bytes)
    state = "built" if getattr(index, "rebuilt", False) else "up to date"
    print(printable(f"index {index.version} {state}: {len(index)} passages from {kb} in "
                    f"{time.perf_counter() - started:.1f} s ({target})"))
    for skipped in index.meta.get("skipped") or []:
        kept = " (its last good version stays indexed)" if skipped.get("kept_previous") else ""
        print(printable(f"warning: skipped {skipped['path']}{kept}: {skipped['reason']}"), file=sys.stderr)
    return 0


def add_common_options(p: argparse.ArgumentParser) -> None:
    """The options every command that runs the agent shares (each also exists as a ``MOMENTS_*`` variable)."""
    p.add_argument("--model", help="preset, HF model dir or .gguf (MOMENTS_MODEL)")
    p.add_argument("--adapter", help="auto, none, name or dir (MOMENTS_ADAPTER)")
    p.add_argument("--kb", dest="kb_path", type=Path, help="knowledge-base folder (MOMENTS_KB_PATH)")
    p.add_argument("--top-k", dest="top_k", type=int, help="passages per question (MOMENTS_TOP_K)")
    p.add_argument("--db", dest="database_url", help="database URL (MOMENTS_DATABASE_URL)")


#: A hook adding commands to the parser's subparsers (see :mod:`ui.cli`).
Commands = Callable[[Any], None]


def build_parser(commands: Sequence[Commands] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moments", description="Moments: answers from your knowledge base, "
                                     "explained token by token.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="answer one question, streamed, with the passages used")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object instead")
    ask.add_argument("--explain", action="store_true", help="attribute every reply token to the passages")
    ask.add_argument("--conversation", metavar="ID",
                     help="continue this stored conversation (its id, or the start of one, as `moments logs` "
                     "prints it): its recent exchanges are the history")
    ask.add_argument("--no-store", action="store_true", help="do not record the turn in the conversation store")
    add_common_options(ask)
    ask.set_defaults(func=cmd_ask)

    index = sub.add_parser("index", help="build or rebuild the knowledge-base index of a folder")
    index.add_argument("path", help="folder (or file) of Markdown, text, JSON/JSONL or CSV FAQ files")
    index.add_argument("--force", action="store_true", help="rebuild even if the saved index is current")
    add_common_options(index)
    index.set_defaults(func=cmd_index)

    worker = sub.add_parser("worker", help="compute exact explanations queued by the app (needs MOMENTS_QUEUE_URL)")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--name", default=None, help="worker name recorded with each explanation (default host:pid)")
    add_common_options(worker)
    worker.set_defaults(func=cmd_worker)

    # `moments train ...` is dispatched to agent.training.train.main before parsing (see main); listed here for --help.
    sub.add_parser("train", help="train the LoRA adapter (moments train --help)", add_help=False)

    from agent.cli.logs import register
    from agent.cli.users import register as register_users

    register(sub)
    register_users(sub)
    for add in commands:
        add(sub)
    return parser


def main(argv: list[str] | None = None, commands: Sequence[Commands] = ()) -> int:
    """Run one command; ``commands`` are hooks adding more (``serve``, from :mod:`ui.cli`). Returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_arguments(argv)
    except InputError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    if argv[:1] == ["train"]:
        from agent.training.train import main as train_main

        return train_main(argv[1:])
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()  # log lines may quote a message: shown, never obeyed
    handler.setFormatter(PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        if not hasattr(args, "db_url"):  # the store's handlers (agent.cli.logs) read the resolved URL from args
            args.db_url = settings_from_args(args).db_url
        return int(args.func(args) or 0)
    except MomentsError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
