"""Explain later from Review (#15): a stored answer with only the instant estimate is queued for its exact
explanation from the review desk of a launched app (``/review_explain``, the button's endpoint), the app's
background worker computes it, and the replay says where it stands."""

from __future__ import annotations

import pytest
from gradio_client import Client

from tests.conftest import make_settings

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(600)
def test_an_answer_with_only_its_estimate_is_explained_exactly_from_review(session_home, generator, kb_index,
                                                                           tmp_path):
    from agent.conversation import ConversationRunner
    from agent.pipeline import Agent
    from agent.store import Store
    from agent.store.exactjobs import exact_status
    from agent.turn import TurnResult
    from ui.app import build_app
    from ui.render import CSS
    from ui.review import Review

    settings = make_settings(session_home, max_new_tokens=40, database_url=f"sqlite:///{tmp_path / 'later.db'}")
    agent = Agent(settings, generator=generator, index=kb_index)
    store = Store(settings.db_url)
    # answered where no worker ran (a CLI turn, a worker that was down): only the instant estimate is stored
    alone = ConversationRunner(agent, store)
    cid = alone.start(channel="api")
    answer = alone.ask(cid, "How long do I have to return an item?", explain=True, method="learned")
    _, handover_id = store.add_exchange(cid, TurnResult(question="Can I talk to a person?", status="abstained",
                                                        answer=settings.abstain_message))
    assert answer.token_ids and answer.explanation.estimator == "learned"
    assert exact_status(store, answer.turn_id) is None

    demo = build_app(settings, agent=agent, store=store)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True)
    try:
        runner = demo.moments.runner
        review = Review(store, settings=settings, runner=runner)
        html, _ = review.replay(str(cid))
        assert "Only the instant estimate is stored" in html

        client = Client(url, verbose=False)
        assert "/review_explain" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        said = client.predict(answer.turn_id, api_name="/review_explain")
        assert f"reply {answer.turn_id} is" in said and ("queued" in said or "running" in said), said
        assert exact_status(store, answer.turn_id).status in ("queued", "running", "done")

        assert runner.background.wait(timeout=400), "the exact explanation did not finish"
        done = store.get_result(answer.turn_id)
        assert done.explanation.estimator == "exact" and done.explanation.method == "shapley"
        assert done.subsets is not None and done.subsets.logp.shape == (1 << len(done.hits), len(done.token_ids))
        job = exact_status(store, answer.turn_id)
        assert job.status == "done" and job.estimate_method == "learned" and job.attempts == 1
        assert job.agreement["estimator"] == "learned" and -1.0 <= job.agreement["lds_token"] <= 1.0
        html, _ = review.replay(str(cid))
        assert "Exact explanation computed in the background" in html and "token LDS" in html

        again = client.predict(answer.turn_id, api_name="/review_explain")
        assert "already has its exact explanation" in again
        assert exact_status(store, answer.turn_id).attempts == 1  # not computed twice
        with pytest.raises(Exception, match="nothing to explain"):  # a hand-over: nothing was generated
            client.predict(handover_id, api_name="/review_explain")
        assert exact_status(store, handover_id) is None
        with pytest.raises(Exception, match="no stored answer"):
            client.predict(999_999, api_name="/review_explain")
    finally:
        demo.close()
        store.close()
