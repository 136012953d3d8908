"""Search through a service the user runs, such as SearxNG's JSON API.

    GET {url}?q=<query>&format=json  ->  {"results": [{"title", "url", "content", "score"?}, ...]}

Other services that answer in that shape (or with `link`/`uri` for the address and
`snippet`/`description` for the text) work too. Failures (connection, timeout, an error status,
a body that is not such JSON) raise SearchError.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from .base import SearchError, SearchResult, trim_snippet

log = logging.getLogger(__name__)


class HttpSearch:
    def __init__(self, name: str, url: str, *, timeout_s: float = 10.0, api_key: str | None = None,
                 params: dict | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise SearchError(f"search {name!r}: url must start with http:// or https://, not {url!r}")
        self.name = name
        self.url = url
        self.timeout_s = timeout_s
        self.api_key = api_key
        self.params = dict(params or {})

    async def search(self, query: str, *, limit: int = 3) -> list[SearchResult]:
        query = " ".join((query or "").split())
        if not query or limit <= 0:
            return []
        params: dict[str, Any] = {"format": "json", **self.params, "q": query}
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=True) as client:
                response = await client.get(self.url, params=params, headers=headers)
        except httpx.TimeoutException as e:
            raise SearchError(f"search {self.name!r}: {self.url} did not answer within {self.timeout_s:g} s") from e
        except httpx.HTTPError as e:
            raise SearchError(f"search {self.name!r}: cannot reach {self.url}: {e!r}") from e
        if response.status_code >= 400:
            raise SearchError(f"search {self.name!r}: {self.url} answered HTTP {response.status_code}: "
                              f"{response.text[:200]!r}")
        try:
            body = response.json()
        except ValueError as e:
            raise SearchError(f"search {self.name!r}: {self.url} did not answer JSON "
                              f"(is format=json enabled?): {response.text[:200]!r}") from e
        return parse_results(body, limit=limit, source=f"search {self.name!r}")


def _first_str(item: dict, *keys: str) -> str:
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def parse_results(body: Any, *, limit: int, source: str = "search") -> list[SearchResult]:
    """SearchResults from a SearxNG-style JSON body, best first, one per address."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise SearchError(f"{source}: the answer has no \"results\" list")
    results: list[SearchResult] = []
    seen: set[str] = set()
    for rank, item in enumerate(body["results"]):
        if not isinstance(item, dict):
            continue
        uri = _first_str(item, "url", "link", "uri")
        if not uri or uri in seen:
            continue
        seen.add(uri)
        score = item.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            score = 1.0 / (1 + rank)
        results.append(SearchResult(
            title=_first_str(item, "title") or uri,
            uri=uri,
            snippet=trim_snippet(_first_str(item, "content", "snippet", "description")),
            score=float(score),
        ))
        if len(results) >= limit:
            break
    return results
