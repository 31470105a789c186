"""A technical-manual knowledge base built from public text: systemd's unit-file manual pages, one article per directive.

Help centres are short and varied; a product manual is long and repetitive: hundreds of sections that look alike
(``CPUQuota=`` and ``CPUWeight=``, ``Restart=`` and ``RestartSec=``). This module renders six systemd manual pages
installed on the machine (Debian package ``systemd``, 252.x here: ``systemd.exec(5)``, ``systemd.service(5)``,
``systemd.unit(5)``, ``systemd.resource-control(5)``, ``systemd.timer(5)``, ``systemd.socket(5)``) with ``man`` and
splits them into their directive entries (a line at the entry indent followed by a more indented body), ~290 of them,
each written as one Markdown article ``<page>--<slug>.md``. The text is not copied into the project: it is generated
on demand into a cache folder. The questions (``data/eval/systemd_manual/questions.jsonl``, written for this
benchmark, evaluation only) name the article that answers them.

    python -m bench.manual_kb [--out ~/.cache/moments/bench/systemd_manual]   # writes the folder, prints its size
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bench.manual_kb")

PAGES: tuple[str, ...] = ("systemd.exec", "systemd.service", "systemd.unit", "systemd.resource-control",
                          "systemd.timer", "systemd.socket")
#: Top-level manual headings whose entries are not reference sections.
SKIP_HEADINGS = frozenset({"EXAMPLES", "EXAMPLE", "NOTES", "SEE ALSO", "HISTORY"})
DEFAULT_OUT = Path("~/.cache/moments/bench/systemd_manual").expanduser()


@dataclass(frozen=True)
class Section:
    """One directive entry of a manual page."""

    page: str
    heading: str
    term: str
    body: str

    @property
    def slug(self) -> str:
        first = self.term.split(",")[0].strip().rstrip("=")
        return f"{self.page}--" + re.sub(r"[^a-z0-9]+", "-", first.lower()).strip("-")


class ManualMissing(RuntimeError):
    """The manual pages cannot be rendered on this machine."""


def render(page: str, section: str = "5") -> list[str]:
    """``man`` output for a page as plain lines (no overstrike, no hyphenation or justification)."""
    if shutil.which("man") is None:
        raise ManualMissing("`man` is not installed: apt-get install man-db systemd")
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    proc = subprocess.run(["man", "--nh", "--nj", "-P", "cat", section, page], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ManualMissing(f"no manual page {page}({section}) here: {proc.stderr.strip()[:200]}")
    return [re.sub(r".\x08", "", line) for line in proc.stdout.splitlines()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_term(text: str) -> bool:
    """A directive (``Restart=``, ``CPUWeight=weight, StartupCPUWeight=weight``) or a short titled subsection."""
    return "=" in text or (text[:1].isupper() and len(text.split()) <= 6 and not text.endswith("."))


def sections(page: str, lines: Sequence[str]) -> list[Section]:
    """Entries of a rendered page: a line whose next non-blank line is indented deeper, with that deeper body."""
    out: list[Section] = []
    heading = ""
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _indent(line) == 0:
            heading = line.strip()
            i += 1
            continue
        j = i + 1
        while j < n and not lines[j].strip():
            j += 1
        if j < n and _indent(lines[j]) > _indent(line) > 0:
            k = j
            while k < n and (not lines[k].strip() or _indent(lines[k]) > _indent(line)):
                k += 1
            term = re.split(r"\s{2,}", line.strip())[0]
            rest = line.strip()[len(term):].strip()
            body = " ".join(x.strip() for x in [rest, *lines[j:k]] if x.strip())
            if heading not in SKIP_HEADINGS and _is_term(term) and not term.startswith(("•", "-", "Example")):
                out.append(Section(page, heading.title(), term, re.sub(r"\s+", " ", body)))
            i = k
            continue
        i += 1
    return out


def manual_sections(pages: Sequence[str] = PAGES) -> list[Section]:
    """Every page's sections, with unique slugs (a repeated slug gets ``-2``, ``-3``)."""
    result: list[Section] = []
    seen: dict[str, int] = {}
    for page in pages:
        for s in sections(page, render(page)):
            seen[s.slug] = seen.get(s.slug, 0) + 1
            if seen[s.slug] > 1:
                s = Section(s.page, s.heading, f"{s.term} ({seen[s.slug]})", s.body)
            result.append(s)
    return result


def write_kb(out: Path, pages: Sequence[str] = PAGES) -> list[Section]:
    """Write one Markdown article per section into ``out`` (replacing what was there); return the sections."""
    secs = manual_sections(pages)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for s in secs:
        (tmp / f"{s.slug}.md").write_text(f"# {s.term}\n\n*{s.page}(5), {s.heading}*\n\n{s.body}\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("wrote %d sections of %s to %s", len(secs), ", ".join(pages), out)
    return secs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        secs = write_kb(args.out)
    except ManualMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    words = sorted(len(s.body.split()) for s in secs)
    print(f"{len(secs)} sections in {args.out}; words per section: median {words[len(words) // 2]}, max {words[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
