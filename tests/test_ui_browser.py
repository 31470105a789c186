"""The operator's console in a real headless Chromium: ask, read the badge and the explanation, inspect a word, open
a citation, rate, hand over, reload and find the conversation restored, then review it (date filter, replay, rate
with a reason, export). Screenshots go to tests/artifacts/ (not committed)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def app(session_home, generator, kb_index, tmp_path_factory):
    from agent.pipeline import Agent
    from agent.store import Store
    from ui.app import build_app
    from ui.render import CSS

    db = tmp_path_factory.mktemp("browser-db") / "b.db"
    # the exact explanation at once: this test reads the console's exact-explanation view (the instant estimate with
    # the exact one in the background is tested in tests/test_background.py)
    settings = make_settings(session_home, max_new_tokens=24, top_k=3, database_url=f"sqlite:///{db}",
                             explain_method="shapley")
    store = Store(settings.db_url)
    demo = build_app(settings, agent=Agent(settings, generator=generator, index=kb_index), store=store)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True)
    yield url, store
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1100", f"--user-data-dir={tempfile.mkdtemp(prefix='moments-chrome-')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


def _css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def _wait(browser, condition, timeout: int = 60):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException:
        _shot(browser, "timed-out")  # what the page showed when the wait gave up
        raise


def _open(browser, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#mo-input textarea"))
    # the page-load events (restore, who is signed in) cover the page with their progress overlay while they run
    _wait(browser, lambda d: not _visible(d.find_elements(By.CSS_SELECTOR, "[data-testid='status-tracker'].full")))


def _send(browser, text: str) -> None:
    box = _css(browser, "#mo-input textarea")
    box.clear()
    box.send_keys(text)
    _css(browser, "#mo-send").click()


def _explanation(browser, marker: str, timeout: int = 400) -> str:
    def done(d):
        html = _css(d, "#mo-explanation").get_attribute("innerHTML")
        return html if marker in html else False

    return _wait(browser, done, timeout)


def _shot(browser, name: str) -> None:
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _visible(elements):
    return [e for e in elements if e.is_displayed()]


def test_chat_inspect_rate_hand_over_and_reload(app, browser):
    from selenium.webdriver.common.by import By

    url, store = app
    _open(browser, url)
    _send(browser, "   ")  # refused: one message under the input, nothing else touched
    _wait(browser, lambda d: "empty" in _css(d, "#mo-status").text)
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")  # no red error badges over the components
    _shot(browser, "chat-refused")

    _send(browser, "How long do I have to return an item?")
    html = _explanation(browser, "mo-insp")
    assert "mo-badge" in html and "Return Policy" in _css(browser, "#mo-passages").text
    chat = _css(browser, "#mo-chat").text
    assert "How long do I have to return an item?" in chat
    assert any(label in chat for label in ("High confidence", "Check before sending", "Low confidence"))  # a badge
    cid = _wait(browser, lambda d: d.current_url.split("?c=")[-1] if "?c=" in d.current_url else False)
    # the reply is quoted from passage [1] (the default answer mode) and says so; the method is named
    assert _css(browser, "#mo-explanation .mo-origin").get_attribute("data-origin") == "quoted"
    assert "Quoted from [1]" in chat
    method = _css(browser, "#mo-explanation .mo-method")
    assert method.get_attribute("data-estimator") == "exact" and "Explained by shapley" in method.text
    marked = _visible(browser.find_elements(By.CSS_SELECTOR, "#mo-p-1 mark.mo-drove"))
    assert marked and marked[0].text.rstrip(".") in chat  # the quoted sentence is highlighted in passage [1]
    _shot(browser, "chat-reply")

    word = _visible(browser.find_elements(By.CSS_SELECTOR, "#mo-explanation .mo-tok"))[1]
    word.click()
    panel = _wait(browser, lambda d: _visible(d.find_elements(By.CSS_SELECTOR, "#mo-explanation .mo-insp")))[0]
    assert panel.get_attribute("data-i") == word.get_attribute("data-i")
    assert "probability" in panel.text and "Top choices here" in panel.text and "What each passage did" in panel.text
    assert "nats" not in panel.text
    _shot(browser, "chat-inspector")

    cite = _visible(browser.find_elements(By.CSS_SELECTOR, "#mo-explanation .mo-sent a.mo-cite"))[-1]
    target = cite.get_attribute("href").split("#")[-1]
    cite.click()
    _wait(browser, lambda d: d.find_element(By.ID, target).get_attribute("open") is not None)
    _shot(browser, "chat-citation")

    _css(browser, "#mo-chat button[aria-label='Like']").click()
    turn = next(t for t in store.get_conversation(uuid.UUID(cid)).turns if t.role == "assistant")
    _wait(browser, lambda d: [f.rating for f in store.get_turn(turn.id).feedback] == ["up"], 30)
    _css(browser, "#mo-chat button[aria-label='Liked']").click()  # un-like: withdrawn, not turned into a down
    _wait(browser, lambda d: store.get_turn(turn.id).feedback == [], 30)

    _css(browser, "#mo-new").click()
    _wait(browser, lambda d: "?c=" not in d.current_url)
    _send(browser, "What is the airspeed velocity of an unladen swallow?")  # nothing in the help centre: abstains
    _explanation(browser, "mo-abstained")
    handover = _wait(browser, lambda d: _visible(d.find_elements(By.CSS_SELECTOR, "#mo-handover")))[0]
    handover.click()
    _wait(browser, lambda d: "Handed over" in _css(d, "#mo-status").text)
    cid = _wait(browser, lambda d: d.current_url.split("?c=")[-1] if "?c=" in d.current_url else False)
    assert store.get_conversation(uuid.UUID(cid)).status == "escalated"
    _shot(browser, "chat-handover")

    browser.refresh()
    _wait(browser, lambda d: "airspeed" in _css(d, "#mo-chat").text)
    assert "How long do I have to return an item?" not in _css(browser, "#mo-chat").text  # the other conversation
    assert "No answer (abstained)" in _css(browser, "#mo-chat").text
    assert "Reopened conversation" in _css(browser, "#mo-status").text and cid in browser.current_url
    _shot(browser, "chat-restored")


def test_review_filter_replay_rate_and_export(app, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, store = app
    _open(browser, url)
    browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Review')]").click()
    since = _wait(browser, lambda d: _visible(d.find_elements(By.CSS_SELECTOR, "#mo-review-since input")))[0]
    since.send_keys(datetime.now(UTC).date().isoformat())
    _css(browser, "#mo-review-search").click()
    _wait(browser, lambda d: "page 1 of 1" in _css(d, "#mo-review-summary").text)
    assert "escalation" in _css(browser, "#mo-review-summary").text
    for plot in ("volume", "rates", "confidence", "cited"):  # the native plots drew something
        _wait(browser, lambda d, p=plot: d.find_elements(By.CSS_SELECTOR, f"#mo-plot-{p} canvas, #mo-plot-{p} svg"))
    browser.execute_script("document.querySelector('#mo-review-figures').scrollIntoView()")
    _shot(browser, "review-plots")
    browser.execute_script("window.scrollTo(0, 0)")
    since.clear()
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    since.send_keys(tomorrow.isoformat(), Keys.ENTER)  # from tomorrow on: nothing yet, the table empties
    _css(browser, "#mo-review-search").click()
    _wait(browser, lambda d: _css(d, "#mo-review-summary").text.startswith("0 conversations"))
    since.clear()
    since.send_keys(datetime.now(UTC).date().isoformat(), Keys.ENTER)
    _css(browser, "#mo-review-search").click()
    _wait(browser, lambda d: "page 1 of 1" in _css(d, "#mo-review-summary").text)
    _wait(browser, lambda d: _visible(d.find_elements(By.CSS_SELECTOR, "#mo-review-table [data-testid='cell-0-1']")))
    _css(browser, "#mo-review-table [data-testid='cell-0-1']").click()  # clicking a row opens it
    _wait(browser, lambda d: "Customer:" in _css(d, "#mo-review-view").text, 60)
    view = _css(browser, "#mo-review-view").text
    assert "Handed over." in view and "Customer asked:" in view  # the escalated conversation, with its summary
    browser.execute_script("document.querySelector('#mo-review-view').scrollIntoView()")
    _shot(browser, "review-replay")

    _css(browser, "#mo-review-rating input[value='down']").click()
    reason = browser.find_element(By.XPATH, "//*[@id='mo-review-reasons']//label[contains(., 'wrong fact')]")
    reason.click()
    _css(browser, "#mo-review-comment textarea").send_keys("the hand-over came too late")
    _css(browser, "#mo-review-save").click()
    _wait(browser, lambda d: "Saved review of reply" in _css(d, "#mo-review-saved").text, 60)
    reviewed = [f for c in store.iter_conversations() for t in c.turns for f in t.feedback if f.source == "reviewer"]
    assert len(reviewed) == 1 and reviewed[0].rating == "down" and reviewed[0].reasons == ["wrong fact"]
    assert reviewed[0].comment == "the hand-over came too late"
    # the form is cleared once the review is saved, so a second click on Save cannot store it twice
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#mo-review-rating input:checked"), 30)
    assert not browser.find_elements(By.CSS_SELECTOR, "#mo-review-reasons input:checked")
    assert _css(browser, "#mo-review-comment textarea").get_attribute("value") == ""
    _shot(browser, "review-saved")
    _css(browser, "#mo-review-save").click()
    _wait(browser, lambda d: "Nothing to save" in _css(d, "#mo-review-saved").text, 60)
    again = [f for c in store.iter_conversations() for t in c.turns for f in t.feedback if f.source == "reviewer"]
    assert len(again) == 1
    # "explain later" on the picked reply, the hand-over: nothing was generated, said plainly
    _css(browser, "#mo-review-exact").click()
    _wait(browser, lambda d: "there is nothing to explain" in d.find_element(By.TAG_NAME, "body").text, 60)

    _css(browser, "#mo-review-export-csv").click()
    link = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#mo-review-file a"), 60)[0]
    assert "moments-csv" in link.get_attribute("href") or "moments-csv" in link.text
    _shot(browser, "review-export")


def test_script_in_message_is_not_executed(app, browser):
    url, _ = app
    _open(browser, url)
    _send(browser, "<img src=x onerror=\"window.__moments_xss=1\"><script>window.__moments_xss=2</script> gift cards?")
    _explanation(browser, "mo-badge")
    assert browser.execute_script("return window.__moments_xss === undefined")
    chat = _css(browser, "#mo-chat").text
    assert "<script>" in chat or "onerror" in chat  # shown as text, not interpreted


@pytest.fixture(scope="module")
def instant_app(session_home, generator, kb_index, tmp_path_factory):
    """The default explanation method: the instant estimate goes out with the reply, the exact one follows from the
    background worker, held here until the test lets it run (so the estimate is seen first)."""
    import threading

    from agent.pipeline import Agent
    from agent.store import Store
    from ui.app import build_app
    from ui.render import CSS

    db = tmp_path_factory.mktemp("browser-instant-db") / "i.db"
    settings = make_settings(session_home, max_new_tokens=24, top_k=3, database_url=f"sqlite:///{db}",
                             explain_method="instant")
    store = Store(settings.db_url)
    demo = build_app(settings, agent=Agent(settings, generator=generator, index=kb_index), store=store)
    gate = threading.Event()
    worker = demo.moments.runner.background
    held = worker._generator

    def waiting():
        gate.wait(300)
        return held()

    worker._generator = waiting
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True)
    yield url, gate
    gate.set()
    demo.close()


def test_the_exact_explanation_replaces_the_estimate_on_screen(instant_app, browser):
    url, gate = instant_app
    _open(browser, url)
    _send(browser, "Do gift cards expire?")
    _explanation(browser, "mo-insp")
    method = _css(browser, "#mo-explanation .mo-method")
    assert method.get_attribute("data-estimator") == "learned" and "estimate" in method.text.lower()
    _shot(browser, "chat-estimate")
    gate.set()  # the background worker computes the exact explanation now; the tab polls and swaps it in
    _wait(browser, lambda d: _css(d, "#mo-explanation .mo-method").get_attribute("data-estimator") == "exact", 300)
    assert "Explained by shapley" in _css(browser, "#mo-explanation .mo-method").text
    assert "mo-badge" in _css(browser, "#mo-chat").get_attribute("innerHTML")
    _shot(browser, "chat-exact-arrived")
