"""Safe fetching: what a model-chosen URL may reach, and how much may be read."""

from __future__ import annotations

import time

import pytest
from web_servers import local_web, no_external_network  # noqa: F401

from search_envs.web import FetchError, FetchPolicy, RetryPolicy, SafeFetcher, check_url, extract_main_text

pytestmark = pytest.mark.usefixtures("no_external_network")

LOCAL = FetchPolicy(allow_loopback=True, retry=RetryPolicy(max_retries=2, backoff=0.05))


@pytest.fixture()
def fetcher():
    f = SafeFetcher(LOCAL)
    yield f
    f.close()


@pytest.mark.parametrize(
    "url,why",
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://127.0.0.1/x", "only http and https"),
        ("gopher://127.0.0.1:70/", "only http and https"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.7/admin", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.5.4:8080/", "private"),
        ("http://100.64.0.1/", "private"),  # carrier-grade NAT: not global
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://user:pw@127.0.0.1/", "credentials"),
    ],
)
def test_refused_before_any_connection(url, why, fetcher, no_external_network):
    with pytest.raises(FetchError, match=why):
        fetcher.fetch(url)
    assert no_external_network == []  # the check happened before connecting


def test_loopback_refused_by_default(local_web, no_external_network):
    safe = SafeFetcher()
    for url in (local_web.page_url("marie-curie"), f"http://localhost:{local_web.port}/", "http://[::1]/",
                "http://[::ffff:127.0.0.1]/", "http://127.1.2.3/"):
        with pytest.raises(FetchError, match="loopback"):
            safe.fetch(url)
    assert local_web.state.requests == []


def test_hostnames_are_checked_on_their_resolved_addresses(fetcher):
    def resolve(host, port):
        return {"intranet.example": ["10.1.2.3"], "mixed.example": ["93.184.216.34", "127.0.0.1"]}[host]

    with pytest.raises(FetchError, match="intranet.example.*private"):
        check_url("http://intranet.example/", FetchPolicy(), resolve)
    with pytest.raises(FetchError, match="loopback"):  # one bad address in the answer is enough
        check_url("https://mixed.example/", FetchPolicy(), resolve)
    assert check_url("https://public.example/", FetchPolicy(), lambda h, p: ["93.184.216.34"]).address == "93.184.216.34"


def test_connects_to_the_checked_address_with_the_host_name_in_host(local_web):
    calls = []

    def resolve(host, port):  # a name the system cannot resolve: only the checked address can be used
        calls.append(host)
        return ["127.0.0.1"]

    fetcher = SafeFetcher(LOCAL, resolve=resolve)
    page = fetcher.fetch(f"http://pages.test:{local_web.port}/pages/eiffel-tower.html")
    assert "Gustave Eiffel" in page.text and calls == ["pages.test"]
    assert local_web.state.requests[-1]["headers"]["Host"] == f"pages.test:{local_web.port}"


def test_redirects_are_followed_and_rechecked(local_web, fetcher, no_external_network):
    target = local_web.page_url("marie-curie")
    page = fetcher.fetch(f"{local_web.url}/redirect?to={target}")
    assert page.final_url == target and "radioactivity" in page.text
    for bad in ("http://192.168.0.10/router", "http://169.254.169.254/latest/meta-data/iam/", "file:///etc/shadow"):
        with pytest.raises(FetchError, match="refused"):
            fetcher.fetch(f"{local_web.url}/redirect?to={bad}")
    assert no_external_network == []


def test_redirect_loops_are_capped(local_web):
    f = SafeFetcher(FetchPolicy(allow_loopback=True, max_redirects=3))
    loop = f"{local_web.url}/redirect?to=/redirect%3Fto%3D/redirect%253Fto%253D/redirect%25253Fto%25253D/pages/marie-curie.html"
    with pytest.raises(FetchError, match="too many redirects"):
        f.fetch(loop)
    assert len(local_web.state.requests) == 4


def test_oversized_pages_are_refused(local_web):
    f = SafeFetcher(FetchPolicy(allow_loopback=True, max_bytes=1_000_000))
    with pytest.raises(FetchError, match="too large .3600026 bytes"):  # by Content-Length, body unread
        f.fetch(f"{local_web.url}/big")
    with pytest.raises(FetchError, match="too large .more than 1000000"):  # while streaming
        f.fetch(f"{local_web.url}/big-stream")


def test_only_text_content_types(local_web, fetcher):
    with pytest.raises(FetchError, match="not a text page .content type 'image/png'"):
        fetcher.fetch(f"{local_web.url}/image.png")
    page = fetcher.fetch(f"{local_web.url}/pages/notes.txt")
    assert page.content_type == "text/plain" and "repainted" in page.text


def test_timeouts_and_deadline(local_web):
    f = SafeFetcher(FetchPolicy(allow_loopback=True, timeout=0.3, deadline=1.0, retry=RetryPolicy(max_retries=10, backoff=0.05)))
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        f.fetch(f"{local_web.url}/slow?s=3")
    assert time.monotonic() - start < 10  # retries stop at the 1 s deadline (all 10 take over 30 s)


def test_5xx_and_429_retried_then_success(local_web, fetcher):
    local_web.state.plan.extend([503, ("retry_after", 429, 0)])
    page = fetcher.fetch(local_web.page_url("python-language"))
    assert "Guido van Rossum" in page.text and len(local_web.state.requests) == 3
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher.fetch(f"{local_web.url}/pages/missing.html")


def test_extraction_drops_boilerplate(local_web, fetcher):
    page = fetcher.fetch(local_web.page_url("marie-curie"))
    text = extract_main_text(page.text, page.content_type, page.url)
    assert "first woman to win a Nobel Prize" in text and "polonium" in text
    for junk in ("Accept all cookies", "Privacy policy", "Advertisement", "Random article", "window.analytics", "font-family"):
        assert junk not in text and junk in page.text
