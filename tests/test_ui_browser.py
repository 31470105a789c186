"""The chat UI in a real headless Chromium: type, send, see the streamed reply, its passages and its explanation."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from tests.conftest import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def app_url(session_home, generator, kb_index, tmp_path_factory):
    from agent.pipeline import Agent
    from agent.store import Store
    from ui.app import build_app
    from ui.render import CSS

    db = tmp_path_factory.mktemp("browser-db") / "b.db"
    settings = make_settings(session_home, max_new_tokens=24, top_k=3, database_url=f"sqlite:///{db}")
    demo = build_app(settings, agent=Agent(settings, generator=generator, index=kb_index), store=Store(settings.db_url))
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={tempfile.mkdtemp(prefix='moments-chrome-')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def _send(browser, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.CSS_SELECTOR, "#mo-input textarea")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#mo-send").click()


def _wait_explained(browser, timeout: int = 400) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        html = d.find_element(By.CSS_SELECTOR, "#mo-explanation").get_attribute("innerHTML")
        return html if ("mo-tok" in html or "Abstained" in html or "mo-error" in html) else False

    return WebDriverWait(browser, timeout, poll_frequency=0.5).until(done)


def test_chat_turn_in_browser(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#mo-input textarea"))
    _send(browser, "How long do I have to return an item?")
    explanation = _wait_explained(browser)
    assert "mo-tok" in explanation  # tokens rendered with their attribution
    chat = browser.find_element(By.CSS_SELECTOR, "#mo-chat").text
    assert "How long do I have to return an item?" in chat
    passages = browser.find_element(By.CSS_SELECTOR, "#mo-passages").text
    assert "Return Policy" in passages and "[1]" in passages
    browser.save_screenshot(str(tmp_path / "chat.png"))


def test_script_in_message_is_not_executed(app_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#mo-input textarea"))
    _send(browser, "<img src=x onerror=\"window.__moments_xss=1\"><script>window.__moments_xss=2</script> gift cards?")
    _wait_explained(browser)
    assert browser.execute_script("return window.__moments_xss === undefined")
    chat = browser.find_element(By.CSS_SELECTOR, "#mo-chat").text
    assert "<script>" in chat or "onerror" in chat  # shown as text, not interpreted
