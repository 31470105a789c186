"""What the command line prints of untrusted text: customer messages, replies, passage text and titles, error messages.

Terminals obey control characters: ``ESC [2J`` clears the screen, ``ESC ]0;…BEL`` sets the window title, ``\\x9b``
(the 8-bit CSI) starts a command on some terminals, ``\\r`` lets a line overwrite itself, the bidirectional overrides
(U+202A–U+202E, U+2066–U+2069) reorder what is shown. Every such character is shown as a visible escape instead:

* :func:`printable` — for text meant for people (tables, transcripts, streamed answers, errors): C0 controls except
  ``\\n``, ``\\t`` and the ``\\r`` of a ``\\r\\n`` line end, DEL, C1 controls, bidirectional controls and lone
  surrogates become ``\\x1b``, ``\\x9b``, ``\\u202e``, ``\\udcff`` (a backslash and hex digits: nothing is hidden).
* :func:`printable_json` — for JSON text: the same characters as JSON ``\\uXXXX`` escapes, which decode to the same
  value, so JSON printed to a terminal or a pipe stays exact (``json.dumps`` already escapes C0 controls, not C1).
* :class:`TerminalWriter` — a text stream that passes everything written to it through one of them (``moments export``
  to a terminal; exports to files or pipes are written unchanged).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from typing import IO

#: C0 controls but \t and \n (and \r before \n: a line end), DEL and the C1 controls, bidirectional
#: embeddings/overrides/isolates, lone surrogates.
UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]|\r(?!\n)")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` (made a string) with every character a terminal would act on shown as a visible escape."""
    return UNSAFE.sub(_visible, str(text))


def printable_json(text: str) -> str:
    """JSON ``text`` with those characters as ``\\uXXXX`` escapes: the same JSON value, harmless on a terminal."""
    return UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class TerminalWriter(io.TextIOBase):
    """A writable text stream over ``out`` that passes each write through ``clean`` (:func:`printable` or
    :func:`printable_json`)."""

    def __init__(self, out: IO[str], clean: Callable[[str], str] = printable) -> None:
        super().__init__()
        self.out = out
        self.clean = clean

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.out.write(self.clean(text))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


class PrintableFormatter(logging.Formatter):
    """Log records as :func:`printable` text (a logged error may quote a customer's message)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))
