"""Search providers against a local server speaking each API's real format."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from web_servers import ARTICLES, KEYS, local_web, no_external_network  # noqa: F401

from search_envs.web import Deadline, ProviderError, RateLimiter, RetryPolicy, make_provider, parse_ddgs_results
from search_envs.web.providers import DuckDuckGoProvider

pytestmark = pytest.mark.usefixtures("no_external_network")

FAST = RetryPolicy(max_retries=3, backoff=0.05, max_backoff=0.2)
KEYED = ["serper", "serpapi", "brave", "tavily"]


def provider(name, web, **kw):
    kw.setdefault("retry", FAST)
    if name in KEYS:
        kw.setdefault("api_key", KEYS[name])
    kw.setdefault("base_url", web.provider_base(name))
    return make_provider(name, **kw)


@pytest.mark.parametrize("name", KEYED + ["searxng"])
def test_each_provider_maps_its_results_to_documents(name, local_web):
    docs = provider(name, local_web).search("Eiffel tower Paris", 3, Deadline(10))
    assert [d.title for d in docs][:2] == ["Eiffel Tower", "Marie Curie"]
    top = docs[0]
    assert top.url == local_web.page_url("eiffel-tower") and top.id == top.url
    assert top.text == ARTICLES["eiffel-tower"][1][0]  # snippet as plain text (Brave's <strong>, &amp; removed)
    assert docs[0].score > docs[1].score


def test_requests_follow_each_api_format(local_web):
    for name in KEYED + ["searxng"]:
        provider(name, local_web).search("radium", 2, Deadline(10))
    serper, serpapi, brave, tavily, searxng = local_web.state.requests
    assert serper["method"] == "POST" and serper["body"] == {"q": "radium", "num": 2}
    assert serper["headers"]["X-API-KEY"] == KEYS["serper"]
    assert serpapi["method"] == "GET" and serpapi["query"]["engine"] == ["google"]
    assert serpapi["query"]["api_key"] == [KEYS["serpapi"]] and serpapi["query"]["q"] == ["radium"]
    assert brave["query"]["count"] == ["2"] and brave["headers"]["X-Subscription-Token"] == KEYS["brave"]
    assert brave["headers"]["Accept"] == "application/json"
    assert tavily["headers"]["Authorization"] == f"Bearer {KEYS['tavily']}"
    assert tavily["body"]["query"] == "radium" and tavily["body"]["max_results"] == 2
    assert searxng["query"]["format"] == ["json"] and searxng["query"]["q"] == ["radium"]


def test_k_caps_results_and_no_hits_is_empty(local_web):
    assert len(provider("searxng", local_web).search("Paris", 1, Deadline(10))) == 1
    assert provider("serpapi", local_web).search("zzzqqq", 3, Deadline(10)) == []  # SerpApi's "no results" error field
    assert provider("serper", local_web).search("zzzqqq", 3, Deadline(10)) == []


@pytest.mark.parametrize("name,env", [("serper", "SERPER_API_KEY"), ("serpapi", "SERPAPI_API_KEY"),
                                      ("brave", "BRAVE_API_KEY"), ("tavily", "TAVILY_API_KEY")])
def test_keys_come_from_the_environment(name, env, local_web, monkeypatch):
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(ProviderError, match=env):
        make_provider(name)
    monkeypatch.setenv(env, KEYS[name])
    assert make_provider(name, base_url=local_web.provider_base(name)).search("radium", 1, Deadline(10))


@pytest.mark.parametrize("name", KEYED)
def test_keys_never_appear_in_reprs_errors_or_logs(name, local_web, caplog):
    caplog.set_level(logging.DEBUG)
    p = provider(name, local_web)
    p.search("Curie", 2, Deadline(10))
    assert KEYS[name] not in repr(p) and KEYS[name] not in str(p) and KEYS[name] not in repr(vars(p))
    local_web.state.plan.extend([503] * 4)
    with pytest.raises(ProviderError) as err:
        p.search("Curie", 2, Deadline(10))
    assert "HTTP 503" in str(err.value) and KEYS[name] not in str(err.value)
    p.close()
    dead = provider(name, local_web, base_url="http://127.0.0.1:9", retry=RetryPolicy(max_retries=0))
    with pytest.raises(ProviderError, match="could not be reached") as err:
        dead.search("Curie", 2, Deadline(5))
    assert KEYS[name] not in str(err.value)
    assert KEYS[name] not in caplog.text
    if name == "serpapi":  # httpx logged the request URL, key redacted
        assert "api_key=***" in caplog.text


@pytest.mark.parametrize("name", KEYED)
def test_wrong_key_is_a_clear_error(name, local_web):
    with pytest.raises(ProviderError, match=r"HTTP (401|403).*API key") as err:
        provider(name, local_web, api_key="wrong-key-0000").search("Curie", 2, Deadline(10))
    assert "wrong-key-0000" not in str(err.value)


def test_429_then_success_honours_retry_after(local_web):
    local_web.state.plan.append(("retry_after", 429, 1))
    start = time.monotonic()
    docs = provider("serper", local_web).search("Curie", 2, Deadline(10))
    assert docs and docs[0].title == "Marie Curie"
    assert time.monotonic() - start >= 0.9  # waited for Retry-After: 1, not the 0.05 s backoff
    assert len(local_web.state.requests) == 2


def test_retry_after_is_capped(local_web):
    local_web.state.plan.append(("retry_after", 429, 3600))
    start = time.monotonic()
    p = provider("tavily", local_web, retry=RetryPolicy(max_retries=2, backoff=0.05, max_retry_after=0.3))
    assert p.search("Curie", 2, Deadline(60))
    assert time.monotonic() - start < 30  # waited 0.3 s, not the hour asked nor up to the 60 s deadline


def test_5xx_retried_with_backoff_then_gives_up(local_web):
    local_web.state.plan.extend([500, 502])
    assert provider("brave", local_web).search("Curie", 2, Deadline(10))
    assert len(local_web.state.requests) == 3
    local_web.state.plan.extend([503] * 10)
    with pytest.raises(ProviderError, match="server error .HTTP 503"):
        provider("brave", local_web).search("Curie", 2, Deadline(10))
    assert len(local_web.state.requests) == 3 + 4  # first try + 3 retries


def test_a_retry_never_waits_past_the_deadline(local_web):
    local_web.state.plan.append(("retry_after", 429, 60))
    p = provider("serper", local_web, retry=RetryPolicy(max_retries=3, max_retry_after=120))
    deadline = Deadline(10)
    with pytest.raises(ProviderError, match="rate-limited"):
        p.search("Curie", 2, deadline)
    assert not deadline.expired  # gave up at once rather than wait 60 s for a retry the deadline would cut


def test_malformed_json_is_a_clear_error(local_web):
    local_web.state.plan.append("malformed")
    with pytest.raises(ProviderError, match="malformed JSON"):
        provider("serper", local_web).search("Curie", 2, Deadline(10))
    assert len(local_web.state.requests) == 1  # not retried: it would not get better


def test_timeout(local_web):
    local_web.state.plan.extend([("sleep", 5.0)] * 3)
    start = time.monotonic()
    with pytest.raises(ProviderError, match="timed out"):
        provider("tavily", local_web, timeout=0.3, retry=RetryPolicy(max_retries=1, backoff=0.05)).search(
            "Curie", 2, Deadline(60)
        )
    assert time.monotonic() - start < 5  # two 0.3 s timeouts: gave up before the server's first answer


def test_searxng_without_json_format_explains_the_fix(local_web):
    local_web.state.searxng_json = False
    with pytest.raises(ProviderError, match="settings.yml"):
        provider("searxng", local_web).search("Curie", 2, Deadline(10))


def test_searxng_needs_a_base_url(monkeypatch):
    monkeypatch.delenv("SEARXNG_URL", raising=False)
    with pytest.raises(ProviderError, match="SEARXNG_URL"):
        make_provider("searxng")
    with pytest.raises(ValueError, match="unknown web search provider"):
        make_provider("altavista")


def test_rate_limiter_spaces_calls(local_web):
    p = provider("searxng", local_web, min_interval=0.2)
    start = time.monotonic()
    for _ in range(3):
        p.search("Curie", 1, Deadline(10))
    assert time.monotonic() - start >= 0.38
    limiter = RateLimiter(5.0)
    limiter.acquire()
    with pytest.raises(Exception, match="deadline"):
        limiter.acquire(Deadline(0.5))


# -- DuckDuckGo (ddgs): offline we test its result mapping and its failure path --------------

DDGS_ROWS = [  # shaped like ddgs 9 DDGS().text() output
    {"title": "Marie Curie - Wikipedia", "href": "https://en.wikipedia.org/wiki/Marie_Curie",
     "body": "Marie Salomea Skłodowska-Curie (7 November 1867 – 4 July 1934) was a Polish and naturalised-French physicist..."},
    {"title": "Marie Curie – Biographical - NobelPrize.org", "href": "https://www.nobelprize.org/prizes/physics/1903/marie-curie/biographical/",
     "body": "Marie Curie, née Maria Sklodowska, was born in Warsaw on November 7, 1867, the daughter of a secondary-school teacher."},
    {"title": "Duplicate", "href": "https://en.wikipedia.org/wiki/Marie_Curie", "body": "same page again"},
    {"title": "No link", "href": "", "body": "dropped"},
]


def test_ddgs_rows_map_to_documents():
    docs = parse_ddgs_results(DDGS_ROWS)
    assert [d.url for d in docs] == [DDGS_ROWS[0]["href"], DDGS_ROWS[1]["href"]]
    assert docs[0].title == "Marie Curie - Wikipedia" and docs[0].text.startswith("Marie Salomea")
    assert docs[0].score == 1.0 and docs[1].score == 0.5
    assert parse_ddgs_results(None) == [] and parse_ddgs_results([None, 3]) == []


def test_ddgs_network_failure_is_a_clear_error():
    """ddgs's traffic goes to an HTTP proxy on 127.0.0.1 that hangs up on every
    CONNECT: a real network failure, and proof nothing went anywhere else."""
    connects: list[bytes] = []
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(32)

    def serve() -> None:
        while True:
            try:
                conn, _ = proxy.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    connects.append(conn.recv(256))
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        p = DuckDuckGoProvider(proxy=f"http://127.0.0.1:{proxy.getsockname()[1]}", timeout=3, min_interval=0,
                               retry=RetryPolicy(max_retries=0))
        with pytest.raises(ProviderError, match=r"DuckDuckGo \(ddgs\) search failed"):
            p.search("Marie Curie", 3, Deadline(20))
    finally:
        proxy.close()
    assert connects and all(c.startswith(b"CONNECT ") for c in connects)


def test_retry_after_formats():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from search_envs.web.retry import parse_retry_after

    assert parse_retry_after("7") == 7.0
    in_a_minute = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    assert 55 <= parse_retry_after(in_a_minute) <= 61
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
