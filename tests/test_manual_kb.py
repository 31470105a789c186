"""bench/manual_kb: a rendered manual page is split into its directive entries (the technical-manual benchmark's
knowledge base), on a fixed sample and on the real systemd pages when the machine has them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.manual_kb import Section, sections, write_kb

QUESTIONS = Path(__file__).resolve().parent.parent / "data" / "eval" / "systemd_manual" / "questions.jsonl"
SAMPLE = """SYSTEMD.SERVICE(5)                       systemd.service                       SYSTEMD.SERVICE(5)

NAME
       systemd.service - Service unit configuration

OPTIONS
       Service unit files may include [Unit] and [Install] sections, which are described in
       systemd.unit(5).

       Type=
           Configures the mechanism via which the service notifies the manager that the service start-up
           has finished. One of simple, exec, forking, oneshot, dbus, notify or idle:

           •   If set to simple (the default if ExecStart= is specified), the service manager will
               consider the unit started immediately.

       RestartSec=
           Configures the time to sleep before restarting a service. Defaults to 100ms.

       Example 1. A simple service
           [Service]

EXAMPLES
       Sample Entry
           Not a reference section.
"""


def test_a_rendered_page_splits_into_its_entries():
    found = sections("systemd.service", SAMPLE.splitlines())
    assert [s.term for s in found] == ["Type=", "RestartSec="]  # not the intro, the example, nor EXAMPLES
    kind = found[0]
    assert kind == Section("systemd.service", "Options", "Type=", kind.body) and kind.slug == "systemd.service--type"
    assert "the default if ExecStart= is specified" in kind.body and "Defaults to 100ms" not in kind.body
    assert found[1].body == "Configures the time to sleep before restarting a service. Defaults to 100ms."


@pytest.mark.skipif(shutil.which("man") is None, reason="no man here")
def test_the_systemd_pages_make_a_manual_of_similar_sections(tmp_path):
    from bench.manual_kb import ManualMissing

    try:
        secs = write_kb(tmp_path / "kb")
    except ManualMissing as exc:
        pytest.skip(str(exc))
    files = {p.stem: p.read_text(encoding="utf-8") for p in (tmp_path / "kb").glob("*.md")}
    assert len(secs) == len(files) > 200
    assert "on-failure" in files["systemd.service--restart"] and files["systemd.service--restart"].startswith("# ")
    # the evaluation questions name articles the generator writes, and their facts are in them
    questions = [json.loads(x) for x in QUESTIONS.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(questions) == 276
    assert all(all(f.lower() in files[q["article"]].lower() for f in q["facts"]) for q in questions)
