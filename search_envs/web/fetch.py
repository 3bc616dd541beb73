"""Safe HTTP fetching of model-chosen URLs.

An agent picks the URLs, so by default a fetch refuses anything that could
reach inside the machine or its network: schemes other than http(s), and hosts
whose addresses are loopback, private, link-local (cloud metadata at
169.254.169.254), multicast, reserved or unspecified. The check runs on the
resolved addresses *before* connecting, and the connection then goes to the
checked address itself (the Host header and TLS SNI carry the name), so a DNS
answer that changes between check and connect (DNS rebinding) cannot slip
through. Redirects are followed by hand and every hop is checked again.
Responses are streamed and capped in size and time; only text pages are read.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from search_envs.web.errors import FetchError
from search_envs.web.retry import Deadline, RetryPolicy, retry_call, status_error

TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
REDIRECT_CODES = (301, 302, 303, 307, 308)
USER_AGENT = "search-envs/0.1 (research agent environment; +https://pypi.org/project/search-envs/)"

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may reach and how much it may read.

    The defaults are the safe ones; tests that serve pages from 127.0.0.1 opt
    in with `FetchPolicy(allow_loopback=True)`.
    """

    allow_loopback: bool = False
    allow_private: bool = False
    timeout: float = 10.0
    """Seconds for each connect / read / write of one request."""
    deadline: float = 30.0
    """Seconds for one whole fetch: every redirect, retry and body byte."""
    max_bytes: int = 5_000_000
    """Larger bodies are refused (checked on Content-Length and while streaming)."""
    max_redirects: int = 5
    content_types: tuple[str, ...] = TEXT_TYPES
    user_agent: str = USER_AGENT
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_retries=2))


@dataclass(frozen=True)
class Page:
    url: str
    final_url: str
    status: int
    content_type: str
    text: str


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to (IP literals resolve to themselves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r} ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: a site's own translator, so private
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo server and client,
    NAT64, IPv4-compatible): a packet to it may end up at them."""
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    if ip in NAT64_WELL_KNOWN or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def address_refusal(address: str, policy: FetchPolicy) -> str | None:
    """Why `policy` refuses to connect to `address`, or None if it may.

    An IPv6 address that carries IPv4 addresses (6to4, Teredo, NAT64, mapped) is
    judged by them: it is refused if any of them is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return None if policy.allow_private else "a private address (a local NAT64 prefix)"
        inner = embedded_ipv4(ip)
        if inner:
            for v4 in inner:
                reason = _refusal(v4, policy)
                if reason:
                    return f"{reason} ({v4} inside {ip})" if ip.ipv4_mapped is None else reason
            return None
    return _refusal(ip, policy)


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: FetchPolicy) -> str | None:
    if ip.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return None if policy.allow_private else "a private address"
    return None


@dataclass(frozen=True)
class Target:
    """A URL that passed the policy, with the address to connect to."""

    url: httpx.URL
    address: str


def check_url(url: str, policy: FetchPolicy, resolve: Resolver = resolve_host) -> Target:
    """Refuse `url` (FetchError) unless the policy allows every address its host has."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"invalid URL {_short(url)}: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"refused {_short(url)}: only http and https URLs can be opened")
    if not parsed.host:
        raise FetchError(f"invalid URL {_short(url)}: no host")
    if parsed.userinfo:
        raise FetchError(f"refused {_short(url)}: URLs with credentials are not opened")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve(parsed.host, port)
    if not addresses:
        raise FetchError(f"cannot resolve host {parsed.host!r}")
    for address in addresses:
        why = address_refusal(address, policy)
        if why is not None:
            raise FetchError(f"refused {_short(url)}: host {parsed.host!r} is {why} ({address})")
    return Target(parsed, addresses[0])


class SafeFetcher:
    """Fetches text pages under a `FetchPolicy`. Thread-safe; close() when done."""

    def __init__(self, policy: FetchPolicy | None = None, resolve: Resolver = resolve_host) -> None:
        self.policy = policy or FetchPolicy()
        self.resolve = resolve
        # trust_env=False: no proxy from the environment may reroute a checked connection.
        # No keep-alive: a pooled connection is keyed by address, and reusing one opened
        # (and TLS-verified) for another host name on the same address would be wrong.
        self._client = httpx.Client(
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": self.policy.user_agent, "Accept": "text/html,application/xhtml+xml,text/plain"},
        )

    def fetch(self, url: str, deadline: Deadline | None = None) -> Page:
        """The page at `url`, or FetchError saying why not."""
        deadline = deadline or Deadline(self.policy.deadline)
        return retry_call(lambda: self._fetch_once(url, deadline), self.policy.retry, deadline)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"SafeFetcher({self.policy!r})"

    # -- one attempt ------------------------------------------------------------
    def _fetch_once(self, url: str, deadline: Deadline) -> Page:
        current = url
        for _ in range(self.policy.max_redirects + 1):
            target = check_url(current, self.policy, self.resolve)
            if deadline.expired:
                raise FetchError(f"timed out fetching {_short(url)}")
            try:
                with self._client.stream(**self._request_args(target, deadline)) as response:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_CODES and location:
                        current = str(target.url.join(location))
                        continue
                    return self._read(url, str(target.url), response, deadline)
            except httpx.TimeoutException:
                raise FetchError(f"timed out fetching {_short(url)}", retryable=True) from None
            except httpx.TransportError as exc:
                raise FetchError(f"connection failed for {_short(url)} ({type(exc).__name__})", retryable=True) from None
            except httpx.HTTPError as exc:  # e.g. a body that does not decode
                raise FetchError(f"could not read {_short(url)} ({type(exc).__name__})") from None
        raise FetchError(f"too many redirects for {_short(url)} (more than {self.policy.max_redirects})")

    def _request_args(self, target: Target, deadline: Deadline) -> dict:
        """Connect to the checked address; name the host in Host and TLS SNI."""
        url = target.url.copy_with(host=target.address)
        extensions = {"timeout": httpx.Timeout(deadline.timeout(self.policy.timeout)).as_dict()}
        if target.url.scheme == "https":
            extensions["sni_hostname"] = target.url.host
        host_header = target.url.netloc.decode("ascii")
        return {"method": "GET", "url": url, "headers": {"Host": host_header}, "extensions": extensions}

    def _read(self, url: str, final_url: str, response: httpx.Response, deadline: Deadline) -> Page:
        error = status_error(f"page {_short(url)}", response.status_code, response.headers.get("retry-after"), FetchError)
        if error is not None:
            raise error
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in self.policy.content_types:
            raise FetchError(f"{_short(url)} is not a text page (content type {content_type or 'missing'!r})")
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(f"{_short(url)} is too large ({int(declared)} bytes; the limit is {limit})")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise FetchError(f"{_short(url)} is too large (more than {limit} bytes)")
            if deadline.expired:
                raise FetchError(f"timed out reading {_short(url)}")
        try:
            text = bytes(body).decode(response.charset_encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = bytes(body).decode("utf-8", errors="replace")
        return Page(url, final_url, response.status_code, content_type, text)


def _short(url: str, limit: int = 120) -> str:
    url = str(url)
    return repr(url if len(url) <= limit else url[:limit] + "...")
