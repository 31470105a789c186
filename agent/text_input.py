"""Text that cannot enter a turn as it is, found before anything is stored or tokenised.

:func:`text_problem` names the first such character of a string, for every channel (the pipeline's
:meth:`~agent.pipeline.Agent.validate`, the command line's arguments):

* a lone surrogate (U+D800–U+DFFF): what bytes that are not UTF-8 become when Python decodes ``argv`` (the
  ``surrogateescape`` handler), or what a JSON ``"\\udcff"`` escape sent to the API decodes to; no database, tokenizer
  or terminal can encode it;
* a NUL character: PostgreSQL's text columns cannot hold one.
"""

from __future__ import annotations

import re

_BAD = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """What is wrong with ``text`` ("is not valid UTF-8 text: ..."), or None when it can be taken as it is."""
    match = _BAD.search(text)
    if match is None:
        return None
    where = f"character {match.start() + 1}"
    if match.group() == "\x00":
        return f"contains a NUL character ({where})"
    return f"is not valid UTF-8 text ({where} is a lone surrogate, U+{ord(match.group()):04X})"
