"""/docs, /redoc and the page at / in headless Chromium with every host but 127.0.0.1 unreachable.

Screenshots go to ``tests/artifacts/`` (or ``$RERANK_TEST_ARTIFACTS``). The service runs with the fake
(word-overlap) scorer, so the playground's ranking is known in advance, and with an API key, so the page
has to ask for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.browser import Browser, find_chromium
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.services import Stack

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="needs Chromium (Debian: apt install chromium; .ci/run does)"
)

KEY = "page-test-key"
ARTIFACTS = Path(os.environ.get("RERANK_TEST_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis = RedisServer(port=free_port())
    redis.start()
    stack = Stack(redis.url, Path("fake"), tmp_path_factory.mktemp("browser-logs"), SCORER="fake", API_KEY=KEY)
    try:
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        redis.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    chromium = find_chromium()
    assert chromium is not None
    b = Browser(chromium, tmp_path / "profile")
    yield b
    b.close()


def _only_local(browser: Browser, base: str) -> None:
    outside = [u for u in browser.requests if not u.startswith((base, "data:", "blob:", "about:"))]
    assert not outside, f"the page asked for outside resources: {outside}"
    assert not browser.errors, browser.errors


def test_swagger_ui_renders_every_operation_offline(service: Stack, browser: Browser) -> None:
    browser.goto(f"{service.url}/docs")
    count = browser.wait_for("document.querySelectorAll('.opblock').length", 60, "Swagger UI's operations")
    assert count >= 8
    assert browser.eval("document.body.innerText.includes('/v1/rerank')")
    browser.screenshot(ARTIFACTS / "docs.png")
    _only_local(browser, service.url)


def test_redoc_renders_offline(service: Stack, browser: Browser) -> None:
    browser.goto(f"{service.url}/redoc")
    browser.wait_for("document.querySelector('.api-content h2') !== null", 60, "ReDoc's operations")
    assert browser.eval("document.body.innerText.includes('/v1/rerank')")
    browser.screenshot(ARTIFACTS / "redoc.png")
    _only_local(browser, service.url)


def test_the_page_asks_for_the_key_shows_the_state_and_ranks(service: Stack, browser: Browser) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    bulk = {"items": [{"id": "a", "query": "q", "candidates": ["q", "x"]}]}
    job = httpx.post(f"{service.url}/v1/jobs", json=bulk, headers=auth, timeout=10)
    assert job.status_code in (200, 202), job.text

    browser.goto(f"{service.url}/")
    browser.wait_for("!document.getElementById('key-form').hidden", 30, "the API key form")
    browser.screenshot(ARTIFACTS / "page-key.png")
    browser.eval(f"document.getElementById('key').value = {KEY!r}")
    browser.eval("document.querySelector('#key-form button').click()")
    summary = browser.wait_for(
        "document.getElementById('summary').textContent.includes('fake on cpu') && "
        "document.getElementById('summary').textContent",
        30,
        "the workers' model and device",
    )
    assert "1 worker" in summary
    assert browser.eval("document.querySelectorAll('#workers tbody tr').length") == 1
    assert browser.eval("document.getElementById('redis').textContent") == "ok"
    browser.wait_for(f"document.querySelector('#bulk tbody').textContent.includes({job.json()['id']!r})", 30, "job")

    browser.eval("document.getElementById('query').value = 'machine learning'")
    passages = "cooking recipes\\nmachine learning models\\nlearning to cook"
    browser.eval(f"document.getElementById('passages').value = '{passages}'")
    browser.eval("document.getElementById('rerank').click()")
    browser.wait_for("document.querySelectorAll('#ranking li').length === 3", 30, "the ranking")
    order = browser.eval("[...document.querySelectorAll('#ranking li')].map((li) => Number(li.dataset.index))")
    texts = browser.eval("[...document.querySelectorAll('#ranking li')].map((li) => li.lastChild.textContent)")
    assert order == [1, 2, 0]
    assert texts == ["machine learning models", "learning to cook", "cooking recipes"]
    # Two readings after the playground's request: the rates show.
    browser.wait_for("document.getElementById('req-rate').textContent !== '\u2013'", 30, "the request rate")
    browser.screenshot(ARTIFACTS / "page.png", full_page=True)
    _only_local(browser, service.url)
