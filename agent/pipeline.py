"""The turn pipeline: question + history → retrieval → evidence focus → (abstain | quoted or generated reply) →
optional explanation.

:class:`Agent` owns a generator and a knowledge index (both loaded lazily, or passed in by tests) and turns one
question into a stream of :class:`TurnEvent`s: ``retrieved`` (the focused passages, as the model and the operator
see them: :mod:`agent.generation.focus`), ``token`` (each reply token: quoted, :mod:`agent.generation.quoting`, or
generated as it is chosen, per ``Settings.answer_mode``), ``explaining`` and ``explained`` (when asked for), and a final ``done`` carrying the
:class:`~agent.turn.TurnResult`; a reply records the method that wrote it in ``versions["generation"]["answer_method"]``
(``quote``, or ``generate``, also when a quote-mode turn had no sentence to quote). Storing turns is not done here (see :mod:`agent.conversation`), so the pipeline can
run without a database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from agent.errors import InputError
from agent.generation.decoding import stream_tokens
from agent.generation.focus import Selection
from agent.generation.prompt import Exchange, build_prompt
from agent.settings import Settings
from agent.text_input import text_problem
from agent.turn import TurnResult
from retrieval.followup import DEFAULT_METHOD
from retrieval.types import Hit, Turn, best_score

log = logging.getLogger(__name__)


@dataclass
class TurnEvent:
    """One step of a streamed turn."""

    kind: Literal["retrieved", "token", "explaining", "explained", "done"]
    hits: list[Hit] | None = None
    text: str = ""
    result: TurnResult | None = None


class Agent:
    """Answers questions from the knowledge base. Heavy parts load on first use (or call :meth:`warm_up`)."""

    def __init__(self, settings: Settings, *, generator=None, index=None) -> None:
        self.settings = settings
        self._generator = generator
        self._index = index
        self._focus = None
        if generator is None or index is None:
            from agent.generation.loading import apply_threads

            apply_threads(settings)

    # ------------------------------------------------------------------------------------------ parts
    @property
    def generator(self):
        if self._generator is None:
            from agent.generation.loading import load_generator

            self._generator = load_generator(self.settings)
        return self._generator

    @property
    def focus(self):
        """The evidence focus over this agent's index embedder (see :mod:`agent.generation.focus`)."""
        if self._focus is None:
            from agent.generation.focus import Focus
            from agent.generation.selector import Idf, load_selector
            from retrieval.embedder import embed

            model = self.index.model
            s = self.settings
            selector = load_selector(s.answer_selector, s.embedder) if s.answer_mode == "quote" else None
            self._focus = Focus(lambda texts: embed(model, list(texts)), keep=self.settings.focus_sentences,
                                selector=selector, idf=Idf(self.index.passages) if selector else None)
        return self._focus

    @property
    def answer_threshold(self) -> float:
        """The support below which a quote is handed over (``Settings.answer_threshold``, else the selector's)."""
        from agent.generation.selector import COSINE_THRESHOLD

        if self.settings.answer_threshold is not None:
            return self.settings.answer_threshold
        selector = self.focus.selector
        return selector.threshold if selector is not None else COSINE_THRESHOLD

    @property
    def index(self):
        from retrieval.embedder import set_precision

        set_precision(self.settings.embed_precision)  # the embedder's (process-wide), before anything is embedded
        if self._index is None:
            from retrieval.index import KnowledgeIndex, index_dir_for

            s = self.settings
            self._index = KnowledgeIndex.load_or_build(
                s.kb_path, index_dir_for(s.index_dir, s.kb_path), s.embedder, s.chunk_tokens,
                max_file_bytes=s.kb_max_file_bytes,
            )
        return self._index

    def warm_up(self) -> None:
        """Load (and on first run provision) the generator and the index."""
        _ = self.index, self.generator

    def versions(self) -> dict[str, Any]:
        """Versions recorded with every turn."""
        g, s = self.generator, self.settings
        return {
            "base_model": g.model_id,
            "model_dir": g.model_dir.name,
            "adapter": g.adapter_id,
            "adapter_hash": g.adapter_hash,
            "embedder": s.embedder,
            "index_version": self.index.version,
            "prompt_version": self.prompt_version,
            "generation": {"decoding": "greedy" if s.answer_mode == "generate" else "quote", "max_new_tokens": s.max_new_tokens, "top_k": s.top_k,
                           "abstain_threshold": s.abstain_threshold, "focus_sentences": s.focus_sentences,
                           "decoder": s.decoder, "answer_mode": s.answer_mode,
                           "answer_selector": s.answer_selector, "answer_threshold": self.answer_threshold,
                           "quote_sentences": s.quote_sentences, "answer_pool": s.answer_pool},
        }

    @property
    def prompt_version(self) -> str:
        """The prompt in force: ``settings.prompt``, or the generator's own (its adapter's) when ``auto``."""
        return self.generator.prompt_version if self.settings.prompt == "auto" else self.settings.prompt

    # ------------------------------------------------------------------------------------------ turn
    def validate(self, question: str) -> str:
        """The question, stripped; raises :class:`InputError` for empty or too long messages, and for text that is not
        valid Unicode (lone surrogates: undecodable bytes) or holds a NUL character (:func:`text_problem`)."""
        text = (question or "").strip()
        problem = text_problem(text)
        if problem:
            raise InputError(f"Your message {problem}. Send it again as plain UTF-8 text (re-type or re-paste it).")
        if not text:
            raise InputError("Your message is empty. Type a question about an order, a return, an account, ...")
        limit = self.settings.max_message_chars
        if len(text) > limit:
            raise InputError(f"Your message is {len(text):,} characters long; the limit is {limit:,}. "
                             "Shorten it to the question itself and send it again.")
        return text

    def search_history(self, history: Sequence[Exchange]) -> list[Turn]:
        """The earlier turns follow-up search sees: each user message and the assistant's reply (a hand-over
        message names no subject, so it is left out)."""
        turns = []
        for ex in history:
            turns.append(Turn(ex.user))
            if ex.assistant and ex.assistant.strip() != self.settings.abstain_message.strip():
                turns.append(Turn(ex.assistant, "assistant"))
        return turns

    def stream(self, question: str, history: Sequence[Exchange] = (), *, explain: bool = False,
               method: str = "shapley") -> Iterator[TurnEvent]:
        """Run one turn, yielding events as they happen (see module docstring)."""
        question = self.validate(question)
        s = self.settings
        history = list(history)[-s.history_turns:] if s.history_turns else []
        timings: dict[str, float] = {}

        started = time.perf_counter()
        followup = replace(DEFAULT_METHOD, turns=s.history_turns)  # one history limit: the settings'
        pool = max(s.top_k, s.answer_pool) if s.answer_mode == "quote" else s.top_k  # quotes: a wider pool
        hits = self.index.search_conversation(question, self.search_history(history), pool, followup)
        quoting = s.answer_mode == "quote"  # a generated reply reads the hits in the focus's (or retrieval's) order
        selection = self.focus.select(question, hits, s.quote_sentences, show=s.top_k if quoting else None)
        hits = selection.hits
        timings["retrieval_ms"] = (time.perf_counter() - started) * 1000
        yield TurnEvent("retrieved", hits=hits)

        result = TurnResult(question=question, hits=hits, timings=timings, versions=self.versions())
        if self._hand_over(hits, selection):
            result.status = "abstained"
            result.answer = s.abstain_message
            timings["generation_ms"] = 0.0
            yield TurnEvent("token", text=result.answer)
            yield TurnEvent("done", result=result)
            return

        g = self.generator
        with g.lock:
            layout = build_prompt(g.tokenizer, question, [h.passage for h in hits], history,
                                  version=self.prompt_version)
            result.use_prompt(layout)
            started = time.perf_counter()
            first = None
            steps, answer_method = self._reply_steps(selection, layout)
            result.versions["generation"]["answer_method"] = answer_method  # what wrote the reply: quote | generate
            for step in steps:
                if first is None:
                    first = time.perf_counter()
                result.token_ids.append(step.token_id)
                result.token_texts.append(step.text)
                if step.text:
                    yield TurnEvent("token", text=step.text)
            ended = time.perf_counter()
        timings["generation_ms"] = (ended - started) * 1000
        timings["first_token_ms"] = ((first or ended) - started) * 1000
        result.answer = "".join(result.token_texts).strip()
        if explain and result.token_ids:
            yield TurnEvent("explaining", result=result)
            result.explanation, result.subsets = self.explain(result, method=method)
            timings["attribution_ms"] = result.explanation.seconds * 1000
            yield TurnEvent("explained", result=result)
        yield TurnEvent("done", result=result)

    def _hand_over(self, hits: Sequence[Hit], selection: Selection) -> bool:
        """Abstain: no hit, the best retrieval score below ``abstain_threshold``, or (quoting) the selected
        sentence's support below the answer threshold (:attr:`answer_threshold`)."""
        s = self.settings
        if not hits or best_score(hits) < s.abstain_threshold:
            return True
        if s.answer_mode == "quote":
            from agent.generation.quoting import too_far

            return too_far(selection, self.answer_threshold)
        return False

    def _reply_steps(self, selection: Selection, layout) -> tuple[Iterator, str]:
        """The reply's tokens and the method writing them: ``quote`` (``answer_mode`` ``quote``: the selected
        sentence, cited; see :mod:`agent.generation.quoting`) or ``generate`` (greedy decoding); a quote falls back to
        generation when no passage has a sentence to quote."""
        g, s = self.generator, self.settings
        if s.answer_mode == "quote":
            from agent.generation.quoting import cite, quote, quote_steps

            text = quote(selection)
            if text is not None:
                steps = quote_steps(g.tokenizer, text)
                if len(steps) > s.max_new_tokens and selection.single:  # too long: the best sentence alone
                    steps = quote_steps(g.tokenizer, cite(selection.single, selection.cited))
                return iter(steps[: s.max_new_tokens]), "quote"  # max_new_tokens bounds every reply
        return stream_tokens(g.model, g.tokenizer, layout.input_ids, s.max_new_tokens), "generate"

    def explain(self, result: TurnResult, method: str = "shapley"):
        """Attribute ``result``'s reply tokens to its passages (see :mod:`agent.attribution`): the explanation and
        the subset table it was computed from (None for methods that build none)."""
        from agent.attribution import attribute

        # attribute() holds the generator's lock while the model runs (do not take it here: it is not re-entrant).
        return attribute(self.generator, result.layout, result.token_ids, result.token_texts,
                         [h.passage for h in result.hits], [h.score for h in result.hits], method=method)

    def ask(self, question: str, history: Sequence[Exchange] = (), *, explain: bool = False,
            method: str = "shapley") -> TurnResult:
        """Run one turn to the end and return its result."""
        for event in self.stream(question, history, explain=explain, method=method):
            if event.kind == "done":
                return event.result
        raise RuntimeError("turn ended without a result")  # pragma: no cover - stream always ends with done
