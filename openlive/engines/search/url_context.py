"""The urlContext tool: reading the pages at the URLs a user's turn names.

    reader = UrlReader(config.url_context)
    page = await reader.read("https://example.com/a.html", question="what does it say about X?")
    page.status  # "URL_RETRIEVAL_STATUS_SUCCESS" or "URL_RETRIEVAL_STATUS_ERROR", as urlContextMetadata says
    page.text    # the page's text for the model, at most max_chars, the parts most about `question` kept

A fetch is bounded in every way a hostile page or URL could stretch it: http and https only, one
deadline for the whole fetch (redirects included), a bounded number of redirects, a byte limit on
the body (checked against Content-Length first, then while reading), text-like content types only.

Safety (SSRF): the server, not the client, makes the request, so a URL could point it at its own
network. Unless `allow_private` is set, every hop's host is resolved here and refused when any of
its addresses is not globally routable (loopback, private, link-local, CGNAT, multicast, reserved);
the request then goes to the address that was checked (the Host header and TLS name stay the
host's), so a DNS answer that changes between the check and the connection changes nothing.
Environment proxies are not used. Logs name a URL without its query string or user info.

HTML becomes text with the standard library's parser (the local search provider's, local.py),
off the event loop.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from .base import _content_stems
from .local import _HTMLText, _text_blocks, chunk_blocks

if TYPE_CHECKING:
    from ...config import UrlContextConfig

log = logging.getLogger(__name__)

SUCCESS = "URL_RETRIEVAL_STATUS_SUCCESS"
ERROR = "URL_RETRIEVAL_STATUS_ERROR"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTML = frozenset({"text/html", "application/xhtml+xml"})
_TEXT = frozenset({"application/json", "application/xml", "application/javascript", "application/x-ndjson",
                   "application/yaml", "application/x-yaml", "application/toml", ""})  # "": none said; sniffed
_HEADERS = {"User-Agent": "openlive-url-context/1 (a Live API server reading a page its user named)",
            "Accept": "text/html, application/xhtml+xml, text/plain;q=0.9, application/json;q=0.9, */*;q=0.1",
            # Compressed bodies would be inflated past the byte limit before it could be checked.
            "Accept-Encoding": "identity"}
# An address in text: up to the first space, quote or bracket; punctuation that ends a sentence is
# not part of it ("see https://example.com/a.")
_URL = re.compile(r"""\bhttps?://[^\s<>"'`{}|\\^\[\]]+""", re.IGNORECASE)
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
CHUNK_CHARS = 600  # the pieces a long page is cut into, to keep the ones about the question


class PageError(Exception):
    """A page could not be read; the message says why (never the URL: it may hold secrets)."""


@dataclass(frozen=True)
class Page:
    url: str  # as the user wrote it
    status: str  # SUCCESS or ERROR
    title: str = ""
    text: str = ""  # for the model: at most max_chars
    error: str = ""  # why it could not be read

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


def find_urls(text: str) -> list[str]:
    """The http(s) addresses in `text`, in order, each once, sentence punctuation trimmed."""
    found: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?")
        if url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1]  # "(see https://example.com/a)"
        if url not in found and len(url) > len("https://"):
            found.append(url)
    return found


def redact_url(url: str) -> str:
    """`url` as a log may show it: no user info, query string or fragment (they may hold secrets)."""
    try:
        parsed = httpx.URL(url)
        shown = f"{parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}{parsed.path}"
        return shown + ("?…" if parsed.query else "")
    except (httpx.InvalidURL, TypeError, ValueError):
        return re.split(r"[?#]", url, maxsplit=1)[0][:200] + ("?…" if "?" in url else "")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is globally routable: the only ones a server reads pages from by default."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
        if address.teredo is not None:
            return all(is_public(a) for a in address.teredo)
    return address.is_global and not (address.is_private or address.is_loopback or address.is_link_local
                                       or address.is_multicast or address.is_reserved or address.is_unspecified)


class UrlReader:
    def __init__(self, config: UrlContextConfig) -> None:
        self.allow_private = config.allow_private
        self.max_bytes = config.max_bytes
        self.timeout_s = config.timeout_s
        self.max_redirects = config.max_redirects
        self.max_urls = config.max_urls
        self.max_chars = config.max_chars

    async def read(self, url: str, question: str = "") -> Page:
        """The page at `url` as text for the model; never raises (a failure is a Page with ERROR)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                body, mime, charset = await self._fetch(url)
            title, text = await asyncio.to_thread(self._text, body, mime, charset, question)
        except TimeoutError:
            return self._failed(url, f"no answer within {self.timeout_s:g} s")
        except PageError as exc:
            return self._failed(url, str(exc))
        except httpx.HTTPError as exc:
            # The exception's text may quote the URL: only its kind is said.
            return self._failed(url, f"cannot reach the server ({type(exc).__name__})")
        except httpx.InvalidURL:
            return self._failed(url, "not a valid URL")
        if not text.strip():
            return self._failed(url, "the page has no text")
        log.info("url_context: read %s (%d bytes of %s, %d characters for the model) in %.1f s", redact_url(url),
                 len(body), mime or "no content type", len(text), time.monotonic() - started)
        return Page(url, SUCCESS, title, text)

    @staticmethod
    def _failed(url: str, why: str) -> Page:
        log.info("url_context: could not read %s: %s", redact_url(url), why)
        return Page(url, ERROR, error=why)

    async def _fetch(self, url: str) -> tuple[bytes, str, str | None]:
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise PageError("not a valid URL") from None
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=self.timeout_s) as client:
            for _ in range(self.max_redirects + 1):
                if current.scheme not in ("http", "https"):
                    raise PageError("only http and https URLs are read")
                host = current.raw_host.decode("ascii", "replace")
                if not host:
                    raise PageError("the URL names no host")
                https = current.scheme == "https"
                address = await self._address(host, current.port or (443 if https else 80))
                # To the address just checked; the host is still named in Host and, for TLS, in SNI
                # and the certificate check.
                target = current.copy_with(host=address, fragment=None)
                headers = {**_HEADERS, "Host": current.netloc.decode("ascii", "replace")}
                extensions = {"sni_hostname": host} if https else {}
                async with client.stream("GET", target, headers=headers, extensions=extensions) as response:
                    status = response.status_code
                    if status in _REDIRECTS:
                        location = response.headers.get("location")
                        if not location:
                            raise PageError(f"HTTP {status} without a Location")
                        try:
                            current = current.join(location)
                        except (httpx.InvalidURL, ValueError):
                            raise PageError(f"HTTP {status} to an invalid Location") from None
                        continue
                    if not 200 <= status < 300:
                        raise PageError(f"HTTP {status}")
                    mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not (mime in _HTML or mime in _TEXT or mime.startswith("text/") or mime.endswith(("+json",
                                                                                                         "+xml"))):
                        raise PageError(f"content type {mime[:60]} is not text")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise PageError(f"larger than {self.max_bytes} bytes ({declared})")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise PageError(f"larger than {self.max_bytes} bytes")
                    return bytes(body), mime, response.charset_encoding
            raise PageError(f"more than {self.max_redirects} redirects")

    async def _address(self, host: str, port: int) -> str:
        """The address to connect to for `host`; refused if any of its addresses is not public
        (unless private ones are allowed)."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError):
                raise PageError("the host name does not resolve") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise PageError("the host name does not resolve")
        if not self.allow_private and not all(is_public(a) for a in addresses):
            raise PageError("refused: the host is not a public address (see [url_context] allow_private)")
        return str(addresses[0])

    def _text(self, body: bytes, mime: str, charset: str | None, question: str) -> tuple[str, str]:
        """(title, text for the model) of a page's body."""
        sniffed = body[:4096]
        html = mime in _HTML or mime.endswith("+xml") or mime in ("application/xml", "text/xml") or (
            not mime and sniffed.lstrip()[:1] == b"<")
        if charset is None and html:
            found = _CHARSET.search(sniffed)
            charset = found.group(1).decode("ascii") if found else None
        try:
            codecs.lookup(charset or "utf-8")
        except LookupError:
            charset = None
        text = body.decode(charset or "utf-8", errors="replace").lstrip("\ufeff")
        if html:
            parser = _HTMLText()
            try:
                parser.feed(text)
                parser.close()
                title, blocks = parser.title or parser.h1 or "", parser.blocks
            except Exception:  # HTMLParser is lenient; be safe anyway
                title, blocks = "", _text_blocks(re.sub(r"<[^>]+>", " ", text))
        else:
            title, blocks = "", _text_blocks(text)
        return title[:200], excerpt(blocks, question, self.max_chars)


def excerpt(blocks: list[tuple[str, bool]], question: str, limit: int) -> str:
    """A page's text in at most `limit` characters: all of it when it fits, else the passages
    sharing the most words with `question` (the earlier first among equals, so the opening when
    none does), in the page's order, "…" where cut."""
    chunks = chunk_blocks(blocks, min(CHUNK_CHARS, limit))
    if sum(len(c) + 1 for c in chunks) <= limit + 1:
        return "\n".join(chunks)
    wanted = _content_stems(" ".join(_URL.sub(" ", question).split()))
    ranked = sorted(range(len(chunks)), key=lambda i: (-len(wanted & _content_stems(chunks[i])), i))
    keep: set[int] = set()
    used = 0
    for i in ranked:
        if used + len(chunks[i]) + 2 <= limit:
            keep.add(i)
            used += len(chunks[i]) + 2
    if not keep:
        return chunks[ranked[0]][:limit]
    out: list[str] = []
    for i in sorted(keep):
        if i > 0 and i - 1 not in keep:
            out.append("…")
        out.append(chunks[i])
    if max(keep) < len(chunks) - 1:
        out.append("…")
    return "\n".join(out)[:limit]
