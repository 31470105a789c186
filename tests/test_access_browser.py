"""Signing in to the console in a real headless Chromium: the login page, who is signed in, the Review tab for
reviewers only, a name locked after repeated failures told so and for how long, and the notice a page shows when
``MOMENTS_AUTH=none`` (no model runs: nothing is asked)."""

from __future__ import annotations

import pytest

from tests.conftest import launch_app, make_settings
from tests.test_ui_browser import _css, _wait, browser  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PASSWORDS = {"alice": "alice-secret-1", "rita": "rita-secret-333"}


def _launch(session_home, tmp_path, auth: str):
    from agent.access import Accounts
    from agent.store import Store

    settings = make_settings(session_home, database_url=f"sqlite:///{tmp_path / f'{auth}.db'}", auth=auth)
    store = Store(settings.db_url)
    if auth != "none":
        Accounts(store).add("alice", "operator", PASSWORDS["alice"])
        Accounts(store).add("rita", "reviewer", PASSWORDS["rita"])
    demo, url = launch_app(settings, store)
    return demo, store, url


def _review_tab_shown(driver) -> bool:
    from selenium.webdriver.common.by import By

    tabs = driver.find_elements(By.CSS_SELECTOR, "button[role='tab']")
    return any(t.text.strip() == "Review" and t.is_displayed() for t in tabs)


def _sign_in(driver, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.delete_all_cookies()
    driver.get(url)
    password = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type='password']"))[0]
    username = driver.find_elements(By.CSS_SELECTOR, "input[type='text'], input:not([type])")[0]
    username.send_keys(name)
    password.send_keys(PASSWORDS[name] + Keys.RETURN)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mo-who")
          and name in d.find_element(By.CSS_SELECTOR, "#mo-who").text)


def test_operators_sign_in_without_the_review_tab_and_reviewers_with_it(browser, session_home, tmp_path):  # noqa: F811
    demo, store, url = _launch(session_home, tmp_path, "password")
    try:
        _sign_in(browser, url, "alice")
        assert "operator" in _css(browser, "#mo-who").text and not _review_tab_shown(browser)
        assert not browser.find_elements("css selector", "#mo-auth-off")
        _sign_in(browser, url, "rita")
        _wait(browser, lambda d: _review_tab_shown(d))
        assert "reviewer" in _css(browser, "#mo-who").text
    finally:
        demo.close()
        store.close()


def _attempt(driver, name: str, password: str) -> None:
    """One sign-in through the login form; returns once the page has had the answer (fields cleared after a wrong
    password, or the locked line shown)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type='password']"))[0]
    username = driver.find_elements(By.CSS_SELECTOR, "input[type='text'], input:not([type])")[0]
    locked_before = driver.find_elements(By.CSS_SELECTOR, "#mo-signin-locked")
    before = locked_before[0].text if locked_before else None
    username.clear()
    username.send_keys(name)
    field.clear()
    field.send_keys(password + Keys.RETURN)

    def answered(d) -> bool:
        line = d.find_elements(By.CSS_SELECTOR, "#mo-signin-locked")
        if line and line[0].text != before:
            return True
        return d.find_elements(By.CSS_SELECTOR, "input[type='password']")[0].get_attribute("value") == ""

    _wait(driver, answered)


def test_a_locked_name_is_told_on_the_login_page_and_for_how_long(browser, session_home, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    demo, store, url = _launch(session_home, tmp_path, "password")
    try:
        browser.delete_all_cookies()
        browser.get(url)
        for _ in range(4):
            _attempt(browser, "alice", "not-her-password")
            assert not browser.find_elements(By.CSS_SELECTOR, "#mo-signin-locked")  # plain wrong password so far
        _attempt(browser, "alice", "not-her-password")  # the fifth: locked
        line = _css(browser, "#mo-signin-locked")
        assert line.get_attribute("role") == "alert" and line.is_displayed()
        assert "Sign-in for 'alice' is locked for" in line.text and "s left)" in line.text
        _attempt(browser, "alice", PASSWORDS["alice"])  # the right password, still locked: still told, not let in
        assert "is locked for" in _css(browser, "#mo-signin-locked").text
        assert not browser.find_elements(By.CSS_SELECTOR, "#mo-who")
        demo.moments.gate.limiter.succeeded("alice")  # the lockout ends (cleared here instead of waiting 30 s)
        _sign_in(browser, url, "alice")
    finally:
        demo.close()
        store.close()


def test_with_auth_none_the_page_says_so(browser, session_home, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    demo, store, url = _launch(session_home, tmp_path, "none")
    try:
        browser.delete_all_cookies()
        browser.get(url)
        notice = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#mo-auth-off"))[0]
        assert "MOMENTS_AUTH=none" in notice.text and _review_tab_shown(browser)
    finally:
        demo.close()
        store.close()
