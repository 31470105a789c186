"""``moments logs`` and ``moments export``: read the conversation store back from the command line.

    moments logs [filters] [-n 20] [--json]        recent conversations with their explanation summary
    moments logs show ID [--json]                  one conversation: turns, passages, explanation, feedback
    moments logs stats [filters] [--json]          aggregate figures
    moments logs purge --older-than 90d            delete conversations last active before then
    moments export --format jsonl|csv|finetune [-o FILE] [filters]

:func:`register` adds the commands to the main CLI's subparsers; each handler takes the parsed ``args`` (with
``args.db_url``, the database URL in force, set by the main CLI) and returns an exit code. Store errors propagate as
:class:`~agent.errors.StoreError` (the main CLI prints them). This module and ``agent/cli/main.py`` are the only ones
that print. Stored text (messages, replies, titles, passages, feedback) is printed through
:func:`agent.cli.terminal.printable` (JSON through ``printable_json``); an export goes to a file or a pipe exactly as
stored, and to a terminal with its control characters escaped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

from agent.cli.terminal import TerminalWriter, printable, printable_json
from agent.errors import StoreError
from agent.vocabulary import CHANNELS, CONVERSATION_STATUSES, RATINGS, WEAK_SCORE

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
EXPORT_FORMATS = ("jsonl", "csv", "finetune")


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` or combinations (``1d12h``) as a timedelta."""
    compact = text.strip().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts).lower() != compact.lower():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 90d, 12h, 2w, 30m or 1d12h")
    total = timedelta()
    for number, unit in parts:
        total += timedelta(**{_UNITS[unit.lower()]: float(number)})
    if total <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be longer than zero")
    return total


def parse_when(text: str) -> datetime:
    """An ISO date or datetime (UTC unless it says otherwise), or a duration meaning that long ago (``7d``)."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write e.g. 2026-11-01, 2026-11-01T09:30 or 7d (seven days ago)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


# --- options ------------------------------------------------------------------------------------------------------


def _db_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a sub-command's unset option must not overwrite the value given before it
    parser.add_argument("--db", dest="database_url", default=argparse.SUPPRESS,
                        help="database URL (MOMENTS_DATABASE_URL; default: moments.db in the data home)")


def _filter_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("filters")
    group.add_argument("--since", type=parse_when, default=default, metavar="WHEN",
                       help="active since (2026-11-01, 2026-11-01T09:30, or 7d for seven days ago)")
    group.add_argument("--until", type=parse_when, default=default, metavar="WHEN", help="started before")
    group.add_argument("--operator", default=default, help="operator (username)")
    group.add_argument("--channel", choices=CHANNELS, default=default)
    group.add_argument("--status", choices=CONVERSATION_STATUSES, default=default)
    group.add_argument("--rating", choices=RATINGS, default=default, help="some answer got this thumb")
    reviewed = group.add_mutually_exclusive_group()
    reviewed.add_argument("--reviewed", dest="reviewed", action="store_true", default=default,
                          help="some feedback was reviewed")
    reviewed.add_argument("--not-reviewed", dest="reviewed", action="store_false", default=default,
                          help="no feedback was reviewed yet")
    group.add_argument("--confidence-below", type=float, default=default, metavar="X",
                       help="some answer's explanation confidence is below X")
    group.add_argument("--cites", dest="cites_doc", default=default, metavar="DOC_ID",
                       help="some answer was given a passage of this document")
    group.add_argument("--score-below", type=float, default=default, metavar="X",
                       help="some answer's best retrieval score is below X (weak retrieval)")
    group.add_argument("-q", "--search", dest="text", default=default, metavar="TEXT",
                       help="words in a question or an answer (full-text: stemmed, in this order; case-insensitive)")


FILTER_FIELDS = ("since", "until", "operator", "channel", "status", "rating", "reviewed", "confidence_below",
                 "cites_doc", "score_below", "text")


def filters_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The conversation filters given on the command line, as keywords for the store's queries."""
    return {name: getattr(args, name) for name in FILTER_FIELDS if getattr(args, name, None) is not None}


def register(subparsers: Any) -> None:
    """Add ``logs`` (with ``show``, ``stats``, ``purge``) and ``export`` to the main CLI's subparsers."""
    logs = subparsers.add_parser("logs", help="recent conversations from the store (show, stats, purge)",
                                 description="List recent conversations, most recently active first.")
    _filter_options(logs)
    logs.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    logs.add_argument("--offset", type=int, default=0, help="skip this many (paging)")
    logs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _db_option(logs)
    logs.set_defaults(func=cmd_logs)
    actions = logs.add_subparsers(dest="logs_command", metavar="{show,stats,purge}")

    show = actions.add_parser("show", help="one conversation with turns, passages, explanations, feedback")
    show.add_argument("id", help="conversation id, or the start of one (as `moments logs` prints it)")
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    _db_option(show)
    show.set_defaults(func=cmd_logs_show)

    stats = actions.add_parser("stats", help="turns, abstain/escalation rates, thumbs, confidence, top documents")
    _filter_options(stats, suppress=True)
    stats.add_argument("--weak-score", type=float, default=WEAK_SCORE, metavar="X",
                       help=f"best passage score under which retrieval counts as weak (default {WEAK_SCORE})")
    stats.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    _db_option(stats)
    stats.set_defaults(func=cmd_logs_stats)

    purge = actions.add_parser("purge", help="delete conversations last active longer ago than --older-than")
    purge.add_argument("--older-than", type=parse_duration, required=True, metavar="AGE",
                       help="e.g. 90d, 12w, 36h")
    _db_option(purge)
    purge.set_defaults(func=cmd_logs_purge)

    exp = subparsers.add_parser("export", help="export stored conversations (JSONL, CSV, fine-tuning chat format)",
                                description="Export the conversations matching the filters.")
    exp.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl",
                     help="jsonl: one conversation per line, everything; csv: one row per turn; "
                     "finetune: corrected answers as chat examples (default jsonl)")
    exp.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    _filter_options(exp)
    _db_option(exp)
    exp.set_defaults(func=cmd_export)


# --- handlers -----------------------------------------------------------------------------------------------------


def _open_store(args: argparse.Namespace):  # -> agent.store.Store (imported lazily: keep `moments --help` fast)
    """The store at ``args.db_url``: the URL in force, resolved by the main CLI from ``--db`` and the settings."""
    from agent.store import Store

    return Store(args.db_url)


def _short(value: str | None, width: int) -> str:
    text = printable(" ".join((value or "").split()))  # escapes first: the width is the width shown
    return text if len(text) <= width else text[: width - 1] + "…"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _echo(text: str = "") -> None:
    """Print a line for people; the stored and user text in it is shown, never obeyed (:func:`printable`)."""
    print(printable(text))


def cmd_logs(args: argparse.Namespace) -> int:
    """List recent conversations (``--json`` for machine-readable output)."""
    filters = filters_from_args(args)
    with _open_store(args) as store:
        rows = store.list_conversations(limit=args.limit, offset=args.offset, **filters)
        total = store.count_conversations(**filters)
    if args.json:
        print(printable_json(json.dumps([r.model_dump(mode="json") for r in rows], ensure_ascii=False, indent=2)))
        return 0
    if not rows:
        _echo("no conversations match" if filters or args.offset else "no conversations stored yet")
        return 0
    _echo(f"{'ID':<8}  {'UPDATED (UTC)':<16}  {'CH':<3}  {'OPERATOR':<10}  {'STATUS':<9}  {'TURNS':>5}  "
          f"{'CONF':>4}  {'GRND':>4}  {'TOP DOC':<16}  TITLE")
    for r in rows:
        _echo(f"{str(r.id)[:8]:<8}  {_when(r.updated_at):<16}  {r.channel:<3}  {_short(r.operator or '-', 10):<10}  "
              f"{r.status:<9}  {r.turn_count:>5}  {_num(r.last_confidence):>4}  "
              f"{_num(r.last_grounded_share, '{:.0%}'):>4}  {_short(r.last_top_doc_id or '-', 16):<16}  "
              f"{_short(r.title, 60)}")
    shown_to = args.offset + len(rows)
    if shown_to < total or args.offset:
        more = f"; --offset {shown_to} for more" if shown_to < total else ""
        _echo(f"({args.offset + 1}-{shown_to} of {total}{more})")
    return 0


def _print_turn(turn: Any) -> None:
    head = [f"#{turn.index} {turn.role}", turn.created_at.astimezone(UTC).strftime("%H:%M:%S")]
    if turn.role == "assistant":
        head.insert(1, turn.status)
        timings = [f"{name} {turn.latency[f'{name}_ms']:.0f} ms" for name in ("retrieval", "generation", "attribution")
                   if isinstance(turn.latency.get(f"{name}_ms"), (int, float))]
        if timings:
            head.append(", ".join(timings))
    _echo(" · ".join(head))
    for line in (turn.text or "").splitlines() or [""]:
        _echo(f"    {line}")
    if turn.error:
        _echo(f"    error: {turn.error}")
    v = turn.versions
    if v:
        model = v.get("base_model", "?") + (f" + {v['adapter']}" if v.get("adapter") else "")
        extras = [f"{k} {v[k]}" for k in ("adapter_hash", "embedder", "index_version", "prompt_version") if v.get(k)]
        _echo("    model " + " · ".join([model, *extras]))
    if turn.passages:
        _echo("    passages:")
        for p in turn.passages:
            _echo(f"      [{p.rank}] {p.score:.3f}  {_short(p.doc_id, 30)}  {_short(p.title, 50)}")
    e = turn.explanation
    if e is not None:
        _echo(f"    explanation ({e.method}): confidence {_num(e.confidence)} · grounded "
              f"{_num(e.grounded_share, '{:.0%}')} · top document {e.top_doc_id or '-'}")
    for f in turn.feedback:
        parts = [f"{f.rating or 'no rating'} ({f.source})"]
        if f.reasons:
            parts.append(", ".join(f.reasons))
        if f.comment:
            parts.append(f"“{_short(f.comment, 80)}”")
        if f.corrected_answer:
            parts.append(f"corrected: “{_short(f.corrected_answer, 80)}”")
        if f.reviewed:
            parts.append(f"reviewed by {f.reviewer or '?'}")
        _echo("    feedback: " + " · ".join(parts))


def cmd_logs_show(args: argparse.Namespace) -> int:
    """Print one conversation in full (``--json``: everything, explanations included)."""
    with _open_store(args) as store:
        conversation = store.get_conversation(store.resolve_conversation_id(args.id))
    if conversation is None:  # purged between the two reads
        raise StoreError(f"conversation {args.id} no longer exists")
    if getattr(args, "json", False):
        print(printable_json(conversation.model_dump_json(indent=2)))
        return 0
    c = conversation
    header = [f"conversation {c.id}", c.channel, f"operator {c.operator or '-'}", f"status {c.status}"]
    if c.tags:
        header.append("tags " + ", ".join(c.tags))
    _echo(" · ".join(header))
    _echo(f"started {_when(c.created_at)} UTC · last active {_when(c.updated_at)} UTC · {c.turn_count} turns")
    if c.title:
        _echo(f"title: {c.title}")
    for turn in c.turns:
        _echo()
        _print_turn(turn)
    return 0


def cmd_logs_stats(args: argparse.Namespace) -> int:
    """Print aggregate figures over the matching conversations."""
    with _open_store(args) as store:
        f = store.stats(weak_score=args.weak_score, **filters_from_args(args))
    if getattr(args, "json", False):
        print(printable_json(f.model_dump_json(indent=2)))
        return 0
    _echo(f"conversations      {f.conversations}")
    _echo(f"turns              {f.turns} ({f.questions} questions, {f.answers} answers)")
    _echo(f"abstain rate       {_num(f.abstain_rate, '{:.1%}')}")
    _echo(f"error rate         {_num(f.error_rate, '{:.1%}')}")
    _echo(f"escalation rate    {_num(f.escalation_rate, '{:.1%}')}")
    _echo(f"thumbs up/down     {f.thumbs_up}/{f.thumbs_down} (ratio {_num(f.thumbs_ratio, '{:.0%}')})")
    _echo(f"mean confidence    {_num(f.mean_confidence)}")
    _echo(f"mean grounded      {_num(f.mean_grounded_share, '{:.0%}')}")
    if f.top_cited_documents:
        _echo("top cited documents:")
        for d in f.top_cited_documents:
            _echo(f"  {d.answers:>5}  {d.doc_id}")
    if f.weak_retrieval:
        _echo(f"weak retrieval (best passage score < {f.weak_retrieval_threshold}):")
        for w in f.weak_retrieval:
            _echo(f"  {w.best_score:.3f}  {w.conversation_id[:8]}  {_short(w.question, 70)}")
    return 0


def cmd_logs_purge(args: argparse.Namespace) -> int:
    """Delete conversations (and everything in them) last active longer ago than ``--older-than``."""
    cutoff = datetime.now(UTC) - args.older_than
    with _open_store(args) as store:
        n = store.purge(args.older_than)
    _echo(f"purged {n} conversation{'s' if n != 1 else ''} last active before {_when(cutoff)} UTC")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the matching conversations as JSONL, CSV or fine-tuning examples to ``-o FILE`` or standard output."""
    filters = filters_from_args(args)
    with _open_store(args) as store:
        write = {"jsonl": store.export_jsonl, "csv": store.export_csv, "finetune": store.export_finetune}[args.format]
        if args.output and args.output != "-":
            path = Path(args.output).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8", newline="") as fh:
                n = write(fh, **filters)
            unit = {"jsonl": "conversations", "csv": "turns", "finetune": "examples"}[args.format]
            print(printable(f"wrote {n} {unit} to {path}"), file=sys.stderr)
        else:
            write(_export_stream(sys.stdout, args.format), **filters)
            sys.stdout.flush()
    return 0


def _export_stream(out: IO[str], fmt: str) -> IO[str]:
    """``out`` itself when it is a file or a pipe (the export stays exact); on a terminal, a writer that shows control
    characters as escapes: JSON ``\\uXXXX`` escapes for JSONL and fine-tuning records (still the same JSON), visible
    ``\\x1b`` escapes for CSV."""
    if not out.isatty():
        return out
    return cast(IO[str], TerminalWriter(out, printable if fmt == "csv" else printable_json))
