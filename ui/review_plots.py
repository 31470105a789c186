"""The review desk's plots, as the pandas tables Gradio's native plots draw (``gr.LinePlot`` / ``gr.BarPlot``).

Built from the store's typed figures only (:class:`agent.store.StatsPublic` and :class:`agent.store.series.SeriesPublic`)
over the conversations the review filters select: answers per day by outcome, abstain / escalation / thumbs-up rates
per day, the answers' confidence histogram and the most cited documents. Days are UTC; a rate is left out on a day with nothing to
divide by (no answers, no conversations or no thumbs), never drawn as 0. Days are text (``2026-12-01``), one bar or
point per day with activity, so that a desk with a single day of data still shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from agent.store import StatsPublic
from agent.store.series import BIN, SeriesPublic


@dataclass(frozen=True)
class Plots:
    """The four tables, in the order the tab shows them."""

    volume: pd.DataFrame  # day, answers, outcome (answered | abstained | failed)
    rates: pd.DataFrame  # day, percent, what (abstained | escalated | thumbs up)
    confidence: pd.DataFrame  # confidence (bin label), answers
    cited: pd.DataFrame  # document, answers

    def as_tuple(self) -> tuple[pd.DataFrame, ...]:
        return self.volume, self.rates, self.confidence, self.cited


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def volume_frame(series: SeriesPublic) -> pd.DataFrame:
    """Answers per day by outcome (stacked bars: the bar's height is the day's answers)."""
    rows = [(d.day, n, what) for d in series.days
            for what, n in (("answered", d.answers - d.abstained - d.errors), ("abstained", d.abstained),
                            ("failed", d.errors))]
    return pd.DataFrame(rows, columns=["day", "answers", "outcome"])


def rates_frame(series: SeriesPublic) -> pd.DataFrame:
    rows = []
    for d in series.days:
        for what, value in (("abstained (of answers)", _rate(d.abstained, d.answers)),
                            ("escalated (of conversations)", _rate(d.escalated, d.conversations)),
                            ("thumbs up (of thumbs)", _rate(d.thumbs_up, d.thumbs_up + d.thumbs_down))):
            if value is not None:
                rows.append((d.day, value, what))
    return pd.DataFrame(rows, columns=["day", "percent", "what"])


def confidence_frame(series: SeriesPublic) -> pd.DataFrame:
    labels = [f"{i * BIN:.1f}–{(i + 1) * BIN:.1f}" for i in range(len(series.confidence_bins))]
    return pd.DataFrame({"confidence": labels, "answers": series.confidence_bins})


def cited_frame(stats: StatsPublic, top: int = 8) -> pd.DataFrame:
    docs = stats.top_cited_documents[:top]
    return pd.DataFrame({"document": [d.doc_id for d in docs], "answers": [d.answers for d in docs]})


def plots(stats: StatsPublic, series: SeriesPublic) -> Plots:
    """Every plot's table for one set of conversations."""
    return Plots(volume_frame(series), rates_frame(series), confidence_frame(series), cited_frame(stats))
