"""The Gradio app: a chat tab for operators, a review tab for the team, and typed API endpoints for other apps.

:func:`build_app` wires an :class:`agent.pipeline.Agent` and an optional conversation store into a ``gr.Blocks``;
:func:`serve` builds the defaults and launches it. Handlers are plain (generator) functions of :class:`MomentsApp`
(chat tab) and :class:`ui.api.MomentsApi` (endpoints, typed: see that module).

Chat tab contract: a problem with the operator's message (empty, too long...) is shown once, under the input, and
the conversation stays as it was; every reply gets a confidence badge (:mod:`ui.confidence`), and low-confidence or
abstained replies offer "Hand over to a colleague" (status ``escalated``). The page URL carries the conversation
(``?c=<id>``): a reload or a shared link restores it from the store, explanations included. Thumbs are idempotent:
one operator rating per reply, un-clicking withdraws it.

Sign-in (``MOMENTS_AUTH``, :mod:`ui.access`): :func:`serve` launches with ``auth=`` the gate's check and creates the
first admin on an empty store (:func:`first_admin`); every handler asks the gate who calls and what they may do.

Named endpoints: ``/chat`` (the chat tab's streamed turn), the typed API (``/ask``, ``/ask_stream``, ``/retrieve``,
``/feedback``, ``/conversations``, ``/conversation``, ``/handover``) and the review tab's (see :mod:`ui.review`).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import gradio as gr

from agent.conversation import ConversationRunner, try_open_store
from agent.errors import MomentsError
from agent.pipeline import Agent
from agent.settings import Settings
from agent.turn import TurnResult
from ui import render
from ui.access import Gate
from ui.api import MomentsApi, streamed
from ui.confidence import grade
from ui.layout import ChatTab, build_layout
from ui.origin import origin
from ui.queue import bounded_queue
from ui.review import Review

log = logging.getLogger(__name__)


def new_state() -> dict[str, Any]:
    """Per-browser-session chat state: the conversation id, the stored turn id of each bot message (by message
    index), the operator's feedback id and rating on each turn, and the turn the feedback form applies to. The
    conversation's history is not kept here: every turn reads it from the store."""
    return {"conversation_id": None, "turn_ids": {}, "feedback": {}, "ratings": {}, "turn": None}


def _status(message: str, error: bool = False) -> str:
    return render.error_html(message) if error else f"<div class='mo-legend'>{render.esc(message)}</div>"


class MomentsApp:
    """Chat-tab handlers, bound to one agent and store (so tests can build several apps)."""

    def __init__(self, settings: Settings, agent: Agent, store=None, store_error: str | None = None,
                 gate: Gate | None = None) -> None:
        self.settings = settings
        self.agent = agent
        self.store = store
        self.store_error = store_error
        self.gate = gate or Gate.disabled()
        from agent.background import start_background

        # exact explanations after the turn (in-process, or MOMENTS_QUEUE_URL); the UI can poll runner.exact_state
        self.runner = ConversationRunner(agent, store, background=start_background(settings, store, agent))
        self.api = MomentsApi(settings, self.runner, store_error, self.gate)
        #: the typed endpoints' handlers, also reachable here (embedding code and tests call ``app.ask(...)``)
        self.ask, self.feedback = self.api.ask, self.api.feedback

    # --------------------------------------------------------------------------------------- helpers
    def _conversation(self, state: dict, request: gr.Request | None) -> tuple[uuid.UUID | None, str | None]:
        """The session's conversation (opened on the first message, with the signed-in user as its operator), and
        why the turn will not be stored when the store refused to open it (the turn is answered all the same)."""
        caller = self.gate.ui_caller(request)
        if self.store is None:
            return None, None
        if state.get("conversation_id"):
            cid = uuid.UUID(state["conversation_id"])
            self.gate.check_owner(caller, cid, write=True)
            return cid, None
        cid, not_stored = self.runner.open(channel="ui", operator=self.gate.operator(caller))
        if cid is not None:
            state["conversation_id"] = str(cid)
        return cid, not_stored

    def reply_message(self, result: TurnResult) -> str:
        """A bot message as the chat shows it: the escaped answer, then its confidence badge (and, for a quoted
        reply, which passage it quotes)."""
        g = grade(result, self.settings)
        o = origin(result)
        quoted = f" <span class='mo-badge mo-unknown'>Quoted from [{o.passage + 1}]</span>" if o.kind == "quoted" else ""
        return f"{render.esc(result.answer)}\n\n{render.badge_html(g)}{quoted}"

    # --------------------------------------------------------------------------------------- chat tab
    def chat(self, message: str, messages: list[dict], state: dict, explain: bool, request: gr.Request = None):
        """Streamed chat turn: yields (textbox, chatbot, passages, explanation, state, status, hand-over button,
        conversation id). Invalid input changes nothing but the status line under the input."""
        state = state or new_state()
        messages = list(messages or [])
        try:
            question = self.agent.validate(message)
            cid, not_stored = self._conversation(state, request)
        except (MomentsError, gr.Error) as exc:
            yield (gr.skip(),) * 5 + (_status(str(exc), error=True), gr.skip(), gr.skip())
            return
        messages += [{"role": "user", "content": render.esc(question)}, {"role": "assistant", "content": ""}]
        passages_html, explanation_html, answer = "", "<i>Thinking…</i>", ""
        hide = gr.update(visible=False)
        cid_text = str(cid) if cid else ""
        yield "", messages, passages_html, explanation_html, state, "", hide, cid_text
        try:
            for event in self.runner.stream(cid, question, explain=explain, not_stored=not_stored):
                if event.kind == "retrieved":
                    passages_html, explanation_html = render.passages_html(event.hits), "<i>Writing the answer…</i>"
                elif event.kind == "token":
                    answer += event.text
                    messages[-1] = {"role": "assistant", "content": render.esc(answer)}
                elif event.kind == "explaining":
                    k = len(event.result.hits)
                    messages[-1] = {"role": "assistant", "content": f"{render.esc(event.result.answer)}\n\n<span "
                                    "class='mo-badge mo-unknown'>Checking the sources…</span>"}
                    explanation_html = (f"<i>Explaining: re-scoring the reply under all {2 ** k} subsets of the "
                                        f"{k} passages…</i>")
                elif event.kind not in ("done", "retrieved") and getattr(event.result, "explanation", None):
                    # an explanation arrived before the turn ended (e.g. an instant estimate, the exact one later):
                    # show it now, labelled with its method; the final one replaces it on "done"
                    explanation_html, passages_html = self._explained(event.result, pending=True)
                elif event.kind == "done":
                    result = event.result
                    messages[-1] = {"role": "assistant", "content": self.reply_message(result)}
                    explanation_html, passages_html = self._explained(result)
                    self._remember(state, len(messages) - 1, result)
                    offer = grade(result, self.settings).offer_handover and cid is not None
                    status = _status(f"This reply was NOT stored: {result.not_stored}", error=True) \
                        if result.not_stored else ""
                    yield "", messages, passages_html, explanation_html, state, status, gr.update(visible=offer), \
                        cid_text
                    continue
                yield "", messages, passages_html, explanation_html, state, "", hide, cid_text
        except MomentsError as exc:
            messages[-1] = {"role": "assistant", "content": render.esc(f"⚠ {exc}")}
            yield "", messages, passages_html, "", state, _status(str(exc), True), gr.update(visible=True), cid_text
        except Exception as exc:
            log.exception("chat turn failed")
            msg = f"Something went wrong while answering ({type(exc).__name__}: {exc}). Your message was kept; " \
                  "try again or start a new conversation."
            messages[-1] = {"role": "assistant", "content": render.esc(f"⚠ {msg}")}
            yield "", messages, passages_html, "", state, _status(msg, True), gr.update(visible=True), cid_text

    def _explained(self, result: TurnResult, pending: bool = False) -> tuple[str, str]:
        """(explanation, passages) panels of a turn (``pending``: more of the explanation is still to come)."""
        return render.explanation_html(result, self.settings, pending), render.turn_passages_html(result)

    @staticmethod
    def _remember(state: dict, message_index: int, result: TurnResult) -> None:
        if result.turn_id is not None:
            state["turn_ids"][str(message_index)] = result.turn_id
            state["turn"] = state["last_turn"] = result.turn_id

    # --------------------------------------------------------------------------------------- feedback
    def _turn_of(self, state: dict, index: Any) -> int | None:
        i = index if isinstance(index, int) else index[0]
        return (state or {}).get("turn_ids", {}).get(str(i))

    def _rate(self, state: dict, turn_id: int, rating: str | None, reasons: list[str], comment: str,
              request: gr.Request | None = None) -> None:
        """Make the operator's feedback on ``turn_id`` exactly this (replacing any earlier one; nothing when
        rating, reasons and comment are all empty)."""
        old = state["feedback"].pop(str(turn_id), None)
        if old is not None:
            self.store.remove_feedback(old)
        state["ratings"][str(turn_id)] = rating
        if rating or reasons or comment:
            state["feedback"][str(turn_id)] = self.store.add_feedback(
                turn_id, source="operator", rating=rating, reasons=reasons, comment=comment or None,
                author=self.gate.operator(self.gate.caller(request)))

    def like(self, state: dict, data: gr.LikeData, request: gr.Request = None) -> tuple[dict, str]:
        """Thumbs on a bot message: like → up, dislike → down, un-click → the rating is withdrawn (never flipped)."""
        state = state or new_state()
        turn_id = self._turn_of(state, data.index)
        if turn_id is None or self.store is None:
            return state, _status("Feedback not recorded: this reply is not stored.", error=True)
        rating = "up" if data.liked is True else "down" if data.liked is False else None
        try:
            self._rate(state, turn_id, rating, [], "", request)
        except (MomentsError, gr.Error) as exc:
            return state, _status(f"Feedback not recorded: {exc}", error=True)
        state["turn"] = turn_id
        word = {"up": "thumbs up", "down": "thumbs down", None: "rating withdrawn"}[rating]
        return state, _status(f"Feedback on reply {turn_id}: {word}. Add reasons or a comment below if you like.")

    def send_feedback(self, state: dict, reasons: list[str], comment: str,
                      request: gr.Request = None) -> tuple[dict, str, Any, str]:
        """The feedback form: reasons and a comment on the reply last answered, rated or selected."""
        state = state or new_state()
        turn_id = state.get("turn")
        if turn_id is None or self.store is None:
            return state, _status("Ask a question first: feedback goes to a stored reply.", error=True), \
                gr.skip(), gr.skip()
        try:
            self._rate(state, turn_id, state["ratings"].get(str(turn_id)), list(reasons or []),
                       (comment or "").strip(), request)
        except (MomentsError, gr.Error) as exc:
            return state, _status(f"Feedback not recorded: {exc}", error=True), gr.skip(), gr.skip()
        return state, _status(f"Feedback on reply {turn_id} saved."), [], ""

    # --------------------------------------------------------------------------------------- conversation
    def hand_over(self, state: dict, request: gr.Request = None) -> tuple[str, Any]:
        """The chat tab's "Hand over to a colleague" button (see :meth:`ui.api.MomentsApi.handover`)."""
        cid = (state or {}).get("conversation_id")
        if not cid:
            return _status("Nothing to hand over yet.", error=True), gr.skip()
        try:
            out = self.api.handover(cid, request=request)
        except gr.Error as exc:
            return _status(str(exc), error=True), gr.skip()
        return _status(f"Handed over to a colleague (conversation escalated). Summary for them: {out['summary']}"), \
            gr.update(visible=False)

    def new_conversation(self):
        return [], "", "", new_state(), "", gr.update(visible=False), ""

    def restore(self, request: gr.Request):
        """Page load: reopen the conversation named by ``?c=<id>`` from the store (messages, badges, the last
        reply's explanation and passages); a fresh page otherwise."""
        wanted = (request.query_params.get("c") or "").strip() if request is not None else ""
        if not wanted or self.store is None:
            return self.new_conversation()
        try:
            cid = self.api.conversation_id(wanted, self.gate.ui_caller(request))
            conv = self.store.get_conversation(cid)
        except (MomentsError, ValueError, gr.Error) as exc:
            return [], "", "", new_state(), _status(f"Could not reopen conversation {wanted!r}: {exc}", True), \
                gr.update(visible=False), ""
        state, messages, last = new_state(), [], None
        state["conversation_id"] = str(cid)
        for t in sorted(conv.turns, key=lambda t: t.index):
            if t.role == "user":
                messages.append({"role": "user", "content": render.esc(t.text)})
                continue
            last = self.store.get_result(t.id)
            messages.append({"role": "assistant", "content": self.reply_message(last)})
            self._remember(state, len(messages) - 1, last)
        explanation, passages = self._explained(last) if last is not None else ("", "")
        offer = last is not None and conv.status != "escalated" and grade(last, self.settings).offer_handover
        note = f"Reopened conversation {cid} ({conv.status})."
        return messages, passages, explanation, state, _status(note), gr.update(visible=offer), str(cid)

    def signed_in(self, request: gr.Request = None) -> tuple[str, Any]:
        """Page load: who is signed in (with a sign-out link), and the review tab for reviewers only."""
        if not self.gate.enabled:
            return "", gr.update(visible=True)
        caller = self.gate.ui_caller(request)
        line = (f"<div class='mo-legend'>Signed in as <b>{render.esc(caller.name)}</b> ({render.esc(caller.role)}) · "
                "<a href='/logout'>sign out</a></div>")
        return line, gr.update(visible=caller.can("reviewer"))

    # --------------------------------------------------------------------------------------- exact explanation
    def arm_exact(self, state: dict) -> tuple[dict, Any]:
        """After a turn (or a reload): when the last reply went out with an estimate and its exact explanation is
        being computed in the background, remember it and start polling for it; stop polling otherwise."""
        state = state or new_state()
        turn = state.get("last_turn")
        job = self.runner.exact_state(turn) if turn is not None else None
        pending = job is not None and job["status"] in ("queued", "running")
        state["pending_exact"] = turn if pending else None
        return state, gr.Timer(active=pending)

    def refresh_exact(self, state: dict, messages: list[dict]):
        """Timer tick: once the pending exact explanation is stored, show it (and the reply's badge, which the
        exact credits may change) in place of the estimate; the explanation panel only when it still shows that
        reply. Returns (explanation, passages, chatbot, state, status, timer); nothing changes while it runs."""
        state = state or new_state()
        turn = state.get("pending_exact")
        job = self.runner.exact_state(turn) if turn is not None else None
        if job is None or job["status"] not in ("done", "failed"):
            keep = job is not None
            return gr.skip(), gr.skip(), gr.skip(), state, gr.skip(), (gr.skip() if keep else gr.Timer(active=False))
        state["pending_exact"] = None
        stop = gr.Timer(active=False)
        if job["status"] == "failed":
            return gr.skip(), gr.skip(), gr.skip(), state, \
                _status("The exact explanation of the last reply failed; the estimate shown stays. A reviewer can "
                        "queue it again from Review."), stop
        result = self.store.get_result(turn) if self.store is not None else None
        if result is None:
            return gr.skip(), gr.skip(), gr.skip(), state, gr.skip(), stop
        messages = list(messages or [])
        for index, tid in (state.get("turn_ids") or {}).items():
            if tid == turn and int(index) < len(messages):
                messages[int(index)] = {"role": "assistant", "content": self.reply_message(result)}
        if state.get("turn") == turn:
            explanation, passages = self._explained(result)
        else:  # the operator is looking at another reply: leave the panels alone
            explanation, passages = gr.skip(), gr.skip()
        return explanation, passages, messages, state, gr.skip(), stop

    def select(self, state: dict, data: gr.SelectData):
        """Clicking a bot message shows its explanation and passages (and points the feedback form at it)."""
        turn_id = self._turn_of(state or {}, data.index)
        result = self.store.get_result(turn_id) if turn_id is not None and self.store is not None else None
        if result is None:
            return gr.skip(), gr.skip(), state
        state["turn"] = turn_id
        explanation, passages = self._explained(result)
        return explanation, passages, state


def build_app(settings: Settings, *, agent: Agent | None = None, store=None, open_store: bool = True) -> gr.Blocks:
    """Build the Blocks app. With ``open_store`` and no ``store``, the store at ``settings.db_url`` is opened;
    if that fails the app still answers, and says that turns are not being stored."""
    agent = agent or Agent(settings)
    store_error = None
    if store is None and open_store:
        store, store_error = try_open_store(settings)
    gate = Gate(settings, store) if settings.auth != "none" else Gate.disabled()
    app = MomentsApp(settings, agent, store, store_error, gate)
    with gr.Blocks(title="Moments") as demo:
        tab: ChatTab = build_layout(store_error, Review(store, store_error, settings, gate, runner=app.runner),
                                     auth=gate.enabled)
        wire(app, tab)
        demo.load(app.restore, outputs=[tab.chatbot, tab.passages, tab.explanation, tab.state, tab.status,
                                         tab.handover, tab.cid], api_visibility="private").then(
            app.arm_exact, inputs=[tab.state], outputs=[tab.state, tab.exact_timer], api_visibility="private")
        demo.load(app.signed_in, outputs=[tab.who, tab.review_tab], api_visibility="private")
        for name in ("ask", "retrieve", "feedback", "conversations", "conversation", "handover"):
            gr.api(getattr(app.api, name), api_name=name)
        gr.api(streamed(app.api.ask_stream), api_name="ask_stream")
    demo.moments = app  # handy for tests and embedding
    return demo


#: Puts the conversation id into the page URL (``?c=<id>``) so that a reload or a copied link restores it.
URL_JS = """(cid) => {
  const url = new URL(window.location.href);
  if (cid) { url.searchParams.set('c', cid); } else { url.searchParams.delete('c'); }
  window.history.replaceState(null, '', url);
  return cid;
}"""


def wire(app: MomentsApp, t: ChatTab) -> None:
    """Connect the chat tab's events to the app's handlers."""
    outputs = [t.msg, t.chatbot, t.passages, t.explanation, t.state, t.status, t.handover, t.cid]
    gr.on([t.send.click, t.msg.submit], app.chat, inputs=[t.msg, t.chatbot, t.state, t.explain], outputs=outputs,
          api_name="chat", show_progress="minimal").then(
        app.arm_exact, inputs=[t.state], outputs=[t.state, t.exact_timer], api_visibility="private")
    t.exact_timer.tick(app.refresh_exact, inputs=[t.state, t.chatbot],
                       outputs=[t.explanation, t.passages, t.chatbot, t.state, t.status, t.exact_timer],
                       api_visibility="private", show_progress="hidden")
    t.new.click(app.new_conversation, outputs=[t.chatbot, t.passages, t.explanation, t.state, t.status, t.handover,
                                               t.cid], api_visibility="private")
    t.chatbot.like(app.like, inputs=[t.state], outputs=[t.state, t.status], api_visibility="private")
    t.chatbot.select(app.select, inputs=[t.state], outputs=[t.explanation, t.passages, t.state],
                     api_visibility="private")
    t.save_feedback.click(app.send_feedback, inputs=[t.state, t.reasons, t.comment],
                          outputs=[t.state, t.status, t.reasons, t.comment], api_visibility="private")
    t.handover.click(app.hand_over, inputs=[t.state], outputs=[t.status, t.handover], api_visibility="private")
    t.cid.change(None, inputs=[t.cid], outputs=None, js=URL_JS, api_visibility="private")


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          prevent_thread_lock: bool = False):
    """Load everything, then launch the app (blocking unless ``prevent_thread_lock``)."""
    agent = Agent(settings)
    agent.warm_up()
    demo = build_app(settings, agent=agent)
    gate = demo.moments.gate
    if gate.enabled:
        first_admin(gate)
    else:
        log.warning("authentication is OFF (MOMENTS_AUTH=none): anyone who can reach %s:%s uses Moments as admin",
                    host, port)
    bounded_queue(demo, settings.queue_max)
    return demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock,
                       css=render.CSS, footer_links=["api"], show_error=True, auth=gate.auth,
                       app_kwargs=gate.app_kwargs(),
                       auth_message="Sign in to Moments (an admin adds users with `moments users add`).")


def first_admin(gate: Gate) -> str | None:
    """On the first start (no users in the store), create the ``admin`` user and log its random password once."""
    password = gate.accounts.first_admin()
    if password is not None:
        log.warning("\n%s\nFirst start: created the user 'admin' (role admin) with the password\n\n    %s\n\n"
                    "It is shown only this once: sign in with it, then add users with `moments users add NAME --role "
                    "operator|reviewer|admin`.\n%s", "=" * 72, password, "=" * 72)
    return password
