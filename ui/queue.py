"""The app's bounded request queue: one turn at a time on the model, at most ``max_size`` waiting, and a clear
"busy" answer beyond that.

:func:`bounded_queue` sets up Gradio's queue (``default_concurrency_limit=1``: the model answers one turn at a time;
``max_size``: how many may wait) and replaces the full queue's message with one a person can act on: "Moments is
busy: N requests are waiting. Try again in about S s." (S: the waiting requests times the mean time a request took
so far, at least 5 s). HTTP callers get it as the 503 answer of ``queue/join``; waiting callers see their position
in the queue (Gradio's ``rank``, ``job.status()`` in gradio_client).
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr


def busy_message(waiting: int, mean_s: float) -> str:
    """What a caller refused by a full queue is told."""
    wait = max(5, math.ceil(waiting * max(mean_s, 0.0)))
    return f"Moments is busy: {waiting} requests are waiting. Try again in about {wait} s."


def bounded_queue(demo: gr.Blocks, max_size: int) -> gr.Blocks:
    """Queue ``demo`` as described in the module docstring; returns it."""
    demo.queue(default_concurrency_limit=1, max_size=max_size)
    queue = demo._queue
    push = queue.push

    async def push_or_busy(*args: Any, **kwargs: Any):
        ok, detail, state = await push(*args, **kwargs)
        if state == "queue_full":
            times = [t.avg_time for t in queue.process_time_per_fn.values() if t.count]
            detail = busy_message(len(queue), sum(times) / len(times) if times else 0.0)
        return ok, detail, state

    queue.push = push_or_busy
    return demo
