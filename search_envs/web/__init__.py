"""Live web search and page browsing for search environments.

`WebSearchEngine` (in `search_envs.engines.web`) searches through a provider;
`WebBrowser` opens result pages safely (`FetchPolicy`); `WebCache` records and
replays both. See docs/web.md.
"""

from search_envs.web.browser import WebBrowser, extract_main_text
from search_envs.web.cache import MODES, WebCache
from search_envs.web.errors import CacheMiss, FetchError, ProviderError, WebError
from search_envs.web.fetch import FetchPolicy, Page, SafeFetcher, check_url
from search_envs.web.providers import PROVIDERS, Provider, Secret, make_provider, parse_ddgs_results
from search_envs.web.retry import Deadline, RateLimiter, RetryPolicy
from search_envs.registration import make_web_env  # noqa: E402  (the env factories live with the ids)

__all__ = [
    "CacheMiss",
    "Deadline",
    "FetchError",
    "FetchPolicy",
    "MODES",
    "PROVIDERS",
    "Page",
    "Provider",
    "ProviderError",
    "RateLimiter",
    "RetryPolicy",
    "SafeFetcher",
    "Secret",
    "WebBrowser",
    "WebCache",
    "WebError",
    "check_url",
    "extract_main_text",
    "make_provider",
    "make_web_env",
    "parse_ddgs_results",
]
