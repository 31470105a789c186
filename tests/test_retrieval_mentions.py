"""Names in the conversation (``HistoryMethod.mention``, :mod:`retrieval.mentions`): which documents a turn names,
which names are distinctive enough to count, and the search that follows a hotel the assistant named.

Real embedder, FAISS and BM25 for the searches; the name logic on plain values."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from retrieval.embedder import load_embedder
from retrieval.followup import DEFAULT_METHOD
from retrieval.index import KnowledgeIndex
from retrieval.mentions import NameMatcher, group_names, mention_scores, mention_turns
from retrieval.types import Passage, Turn
from tests.test_retrieval_assistant import hotel_passages

NAMED = DEFAULT_METHOD  # the name bonus is on by default (tuned on DSTC11)
UNNAMED = replace(DEFAULT_METHOD, mention=0.0)


@pytest.fixture(scope="module")
def hotels() -> KnowledgeIndex:
    """Three hotels as an entity catalogue: FAQ rows titled "<hotel>: <question>" (as DSTC's are), real embedder."""
    return KnowledgeIndex.from_passages(hotel_passages(faq_titles=True), load_embedder())


def _p(i: int, title: str, text: str, source: str) -> Passage:
    return Passage(id=f"p{i}", doc_id=f"d{i}", title=title, text=text, source=source)


def test_an_entity_documents_name_is_the_prefix_its_titles_share():
    passages = [_p(0, "Acorn Guest House: Is there parking?", "Yes.", "a"),
                _p(1, "Acorn  guest House: Pets?", "No.", "a"),
                _p(2, "Return Policy", "30 days.", "r"), _p(3, "Return Policy", "Receipts.", "r"),  # an article
                _p(4, "Inn: parking?", "Short.", "f"),  # too short to be a name
                _p(5, "Taxi: colours?", "Any.", "t"), _p(6, "Train: fares?", "Cheap.", "t")]  # nothing shared
    group_of = np.array([0, 0, 1, 1, 2, 3, 3])
    assert group_names(passages, group_of, 4) == ["acorn guest house", "", "", ""]


def test_a_turn_names_documents_by_whole_words_and_the_most_recent_naming_counts():
    matcher = NameMatcher(["acorn guest house", "acorn", "", "bridge house hotel"])
    assert matcher.named("Is the ACORN  Guest House open?") == {0}  # the longest name, spaces and case folded
    assert matcher.named("acorns and the Bridge House Hotel") == {3}  # "acorns" is not "acorn"
    history = [Turn("I want the Bridge House Hotel"), Turn("The Acorn has rooms.", "assistant"), Turn("ok"),
               Turn("Bridge House Hotel is full.", "assistant")]
    turns, weights = mention_turns(history, decay=0.8, max_user_turns=3)
    assert turns == ("Bridge House Hotel is full.", "ok", "The Acorn has rooms.", "I want the Bridge House Hotel")
    assert weights == pytest.approx((0.8, 0.8, 0.64, 0.64))
    scores = mention_scores(matcher, "does it have wifi?", turns, weights)
    assert scores.tolist() == pytest.approx([0.0, 0.64, 0.0, 0.8])
    assert mention_scores(matcher, "And the Acorn?", turns, weights)[1] == 1.0  # the question names it: full weight


def test_a_name_other_documents_mention_does_not_count(hotels):
    # "Acorn Guest House" etc. appear only in their own passages; a name found in another hotel's text would not count
    names = hotels.name_matcher().group
    assert set(names) == {"acorn guest house", "bridge house hotel", "cedar lodge"}
    passages = [*hotels.passages, Passage(id="x#0", doc_id="x", title="Dune Inn: Prices?", source="hotel:dune",
                                          text="Cheaper than the Cedar Lodge.")]
    crowded = KnowledgeIndex.from_vectors(passages, np.vstack([hotels.vectors(), hotels.vectors()[:1]]),
                                          hotels.model, None)
    assert set(crowded.name_matcher().group) == {"acorn guest house", "bridge house hotel", "dune inn"}


def test_the_hotel_the_assistant_named_is_the_one_a_follow_up_is_about(hotels):
    history = [Turn("I need a guesthouse for two nights."),
               Turn("The Acorn Guest House has a room for you, breakfast included.", "assistant")]
    question = "Can I park my car there for free?"
    assert hotels.search_conversation(question, history, 3, NAMED)[0].passage.doc_id == "acorn-parking"
    assert DEFAULT_METHOD.mention > 0
    assert hotels.search_conversation(question, history, 3, UNNAMED)[0].passage.doc_id != "acorn-parking"
    # a question naming a new hotel is not outvoted by the hotel the last reply named
    switch = hotels.search_conversation("Does Cedar Lodge have free parking?", history, 3, NAMED)
    assert switch[0].passage.doc_id == "cedar-parking"
