"""IPv6 forms that carry an IPv4 address (6to4, Teredo, NAT64, IPv4-compatible) are judged by it."""

from __future__ import annotations

import pytest
from web_servers import no_external_network  # noqa: F401

from search_envs.web import FetchError, FetchPolicy, SafeFetcher
from search_envs.web.fetch import address_refusal

pytestmark = pytest.mark.usefixtures("no_external_network")

BLOCKED = [
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
    ("http://[2002:a9fe:a9fe::1]/", "link-local"),  # 6to4 of 169.254.169.254 (cloud metadata)
    ("http://[2002:c0a8:101::1]/", "private"),  # 6to4 of 192.168.1.1
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "loopback"),  # Teredo, client 127.0.0.1 (obfuscated)
    ("http://[2001:0:a00:1::1]/", "private"),  # Teredo server 10.0.0.1
    ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64 of 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 of 169.254.169.254
    ("http://[64:ff9b:1::a00:1]/", "private"),  # local-use NAT64 prefix
    ("http://[::127.0.0.1]/", "loopback"),  # IPv4-compatible
    ("http://[::10.0.0.1]/", "private"),
]


@pytest.mark.parametrize("url,why", BLOCKED)
def test_tunnelled_forms_of_blocked_addresses_are_refused(url, why, no_external_network):
    fetcher = SafeFetcher()
    with pytest.raises(FetchError, match=why):
        fetcher.fetch(url)
    fetcher.close()
    assert no_external_network == []


def test_tunnelled_public_addresses_pass_and_loopback_opt_in_still_works():
    safe = FetchPolicy()
    assert address_refusal("2002:5db8:d822::1", safe) is None  # 6to4 of 93.184.216.34
    assert address_refusal("64:ff9b::5db8:d822", safe) is None  # NAT64 of 93.184.216.34
    assert address_refusal("2002:7f00:1::", FetchPolicy(allow_loopback=True)) is None
    assert "loopback" in address_refusal("::ffff:127.0.0.1", safe)
