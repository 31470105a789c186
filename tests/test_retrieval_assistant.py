"""Follow-up search that reads the assistant's turns as well as the user's (``HistoryMethod.assistant``).

Real embedder, real FAISS and BM25 for the search; the turn selection and the agent's history are plain logic.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from agent.generation.prompt import Exchange
from agent.pipeline import Agent
from retrieval.embedder import load_embedder
from retrieval.followup import DEFAULT_METHOD, build_query
from retrieval.index import KnowledgeIndex
from retrieval.types import Passage, Turn

#: The assistant-turn weight tuned on DSTC11 (opt-in: the default leaves the assistant's turns out).
READ_REPLIES = replace(DEFAULT_METHOD, assistant=1.25)
HOTELS = {
    "acorn": ("Acorn Guest House", "Guests of the Acorn Guest House can leave a car in its yard without charge."),
    "bridge": ("Bridge House Hotel", "Parking: yes, free parking is available at the Bridge House Hotel."),
    "cedar": ("Cedar Lodge", "Free parking? Yes, Cedar Lodge has a free car park for guests."),
}


def hotel_passages(faq_titles: bool = False) -> list[Passage]:
    """Three passages (about, parking, pets) per hotel; titled by the hotel's name, or as an entity catalogue's FAQ
    rows ("<hotel>: <question>", as DSTC's are) with ``faq_titles``."""
    passages = []
    for key, (name, parking) in HOTELS.items():
        rows = [("about", "What is it like?", f"{name} is a guesthouse with {len(key)} rooms, breakfast included."),
                ("parking", "Is there parking?", parking), ("pets", "Are pets allowed?", "Pets are welcome for a small fee.")]
        passages += [Passage(id=f"{key}#{n}", doc_id=f"{key}-{what}", title=f"{name}: {q}" if faq_titles else name,
                             text=text, source=f"hotel:{key}") for n, (what, q, text) in enumerate(rows)]
    return passages


@pytest.fixture(scope="module")
def hotels() -> KnowledgeIndex:
    return KnowledgeIndex.from_passages(hotel_passages(), load_embedder())


def test_assistant_turns_are_weighted_by_recency_and_ignored_at_weight_zero():
    history = ["I need a hotel", Turn("The Acorn has rooms.", "assistant"), Turn("Is it central?"),
               Turn("Yes, it is central.", "assistant"), Turn("   ", "assistant")]
    method = replace(DEFAULT_METHOD, assistant=0.5, decay=0.8, turns=3)
    query = build_query("do they allow pets?", history, method)
    assert query.turns == ("Yes, it is central.", "Is it central?", "The Acorn has rooms.", "I need a hotel")
    assert query.weights == pytest.approx((0.5, 1.0, 0.5 * 0.8, 0.8))
    ignored = build_query("do they allow pets?", history, replace(method, assistant=0.0))
    assert ignored.turns == ("Is it central?", "I need a hotel") and ignored.weights == pytest.approx((1.0, 0.8))
    one = build_query("pets?", history, replace(method, turns=1))  # the last exchange only
    assert one.turns == ("Yes, it is central.", "Is it central?")
    with pytest.raises(ValueError):
        replace(DEFAULT_METHOD, assistant=-1.0)


def test_the_assistant_naming_the_hotel_finds_its_passage(hotels):
    history = [Turn("I need a guesthouse for two nights."),
               Turn("The Acorn Guest House has a room for you, breakfast included.", "assistant")]
    question = "Can I park my car there for free?"
    tuned = hotels.search_conversation(question, history, 3, READ_REPLIES)
    assert tuned[0].passage.doc_id == "acorn-parking" and -1.0 <= tuned[0].score <= 1.0
    without = hotels.search_conversation(question, history, 3)  # the default: user turns only
    assert DEFAULT_METHOD.assistant == 0.0 and without[0].passage.doc_id != "acorn-parking"


def test_a_question_naming_a_new_hotel_is_not_outvoted_by_the_last_reply(hotels):
    history = [Turn("Tell me about the Acorn Guest House."),
               Turn("The Acorn Guest House is a guesthouse with 5 rooms, breakfast included.", "assistant")]
    hits = hotels.search_conversation("Does Cedar Lodge have free parking?", history, 3, READ_REPLIES)
    assert hits[0].passage.doc_id == "cedar-parking"


def test_agent_passes_replies_but_not_hand_overs(settings):
    agent = SimpleNamespace(settings=settings)
    history = [Exchange("Where is my order?", settings.abstain_message),
               Exchange("How do gift cards work?", "Gift cards never expire [1].")]
    turns = Agent.search_history(agent, history)
    assert turns == [Turn("Where is my order?"), Turn("How do gift cards work?"),
                     Turn("Gift cards never expire [1].", "assistant")]
