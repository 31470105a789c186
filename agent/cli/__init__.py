"""The ``moments`` command line of the agent layer: ask, index, logs, export, train (``serve`` is added by :mod:`ui.cli`).

* :mod:`~agent.cli.main` — the parser, ``ask`` and ``index``, and :func:`main`;
* :mod:`~agent.cli.logs` — ``logs`` and ``export`` over the conversation store.
"""

from agent.cli.main import main

__all__ = ["main"]
