"""Search providers: local FTS5 search over tests/data/docs, HTTP search against a real local
server speaking SearxNG's JSON format, and the grounding metadata built from results."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from openlive.engines.search import (HttpSearch, LocalSearch, SearchError, SearchProvider, SearchResult,
                                     fts5_available, grounding_metadata)
from openlive.engines.search.local import chunk_blocks, fts_query, parse_document

DOCS = Path(__file__).resolve().parent.parent / "data" / "docs"
ZORVATH_QUESTION = "What time does the Zorvath Institute cafeteria open on weekdays?"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A private copy of the test documents, free to change."""
    folder = tmp_path / "docs"
    shutil.copytree(DOCS, folder)
    return folder


def test_sqlite_has_fts5() -> None:
    assert fts5_available()


async def test_indexes_the_folder_recursively(docs: Path) -> None:
    search = LocalSearch("docs", docs)
    assert isinstance(search, SearchProvider)
    stats = await search.start()
    assert (stats.added, stats.updated, stats.removed) == (6, 0, 0)
    again = await search.refresh()
    assert (again.changed, again.unchanged) == (0, 6)
    # a document in a subfolder is found, and its uri keeps the subfolder
    [hit] = await search.search("ferry to Gullrock Island", limit=1)
    assert hit.title == "Saltery Harbor Ferry"
    assert hit.uri == (docs / "travel" / "harbor-ferry.md").resolve().as_uri()


async def test_the_one_document_with_the_answer_ranks_first() -> None:
    search = LocalSearch("docs", DOCS)
    results = await search.search(ZORVATH_QUESTION)
    assert 1 <= len(results) <= 3
    top = results[0]
    assert top.title == "Zorvath Institute Visitor Guide"
    assert top.uri == (DOCS / "zorvath-institute.md").resolve().as_uri()
    # the snippet is the relevant paragraph, not the top of the file
    assert "7:15" in top.snippet and "weekdays" in top.snippet
    assert "Lot C" not in top.snippet and len(top.snippet) <= 600
    assert all(a.score >= b.score for a, b in zip(results, results[1:]))
    assert len({r.uri for r in results}) == len(results)  # one result per document


@pytest.mark.parametrize(("question", "title", "file", "needle"), [
    ("How many moons orbit Quillon Prime?", "Quillon Prime Fact Sheet", "planet-quillon.md", "three moons"),
    ("how long to simmer emberfern stew", "Emberfern Stew", "emberfern-stew.md", "twenty-two minutes"),
    ("Brindlewick Lanterns office hours on Friday", "brindlewick-office-hours.txt",
     "brindlewick-office-hours.txt", "13:00"),
    ("glimmerball high ring goal points", "Glimmerball Rules", "glimmerball-rules.html", "five points"),
])
async def test_titles_from_heading_title_tag_or_file_name(question: str, title: str, file: str, needle: str) -> None:
    search = LocalSearch("docs", DOCS, base_uri="https://docs.example.com/kb")
    top = (await search.search(question))[0]
    assert (top.title, top.uri) == (title, f"https://docs.example.com/kb/{file}")
    assert needle in top.snippet


async def test_html_scripts_and_styles_are_not_indexed() -> None:
    search = LocalSearch("docs", DOCS)
    assert await search.search("trackingPixel indexed") == []
    assert await search.search("serif font-family") == []


@pytest.mark.parametrize("query", [
    "", "   ", "\n\t", '"', '""', "'", "(", ")", "()", "*", "**", "^", "-", ":", "+", "NEAR", "AND", "OR", "NOT",
    'cafeteria AND', 'OR cafeteria', 'NOT cafeteria', 'NEAR(cafeteria opens, 2)', 'cafeteria NEAR/3 opens',
    '"unbalanced quote cafeteria', "cafeteria's opening (hours", "title:cafeteria", "{title body}: moons",
    "caf* open*", "^Zorvath", "moons -Kibb", "a" * 5000, "word " * 500, "\x00\x01 nul", "🙂 emoji only 🚀",
    "日本語のクエリ", "Ünïcödé çåfétérïå", "what is the", "\\", "%_", "'; drop table files; --",
])
async def test_weird_queries_never_raise(query: str) -> None:
    search = LocalSearch("docs", DOCS)
    results = await search.search(query)
    assert isinstance(results, list) and all(isinstance(r, SearchResult) for r in results)


def test_fts_query_quotes_and_ors_content_words() -> None:
    assert fts_query('When does the "cafeteria" open (NEAR title:lunch*)?') == '"cafeteria" OR "open" OR "title" OR "lunch"'
    assert fts_query("what is the") is None
    assert fts_query("  ") is None


async def test_accents_and_case_do_not_matter() -> None:
    search = LocalSearch("docs", DOCS)
    results = await search.search("ZÖRVATH CAFÉTERIA")
    assert results and results[0].title == "Zorvath Institute Visitor Guide"


async def test_reindexes_changed_added_and_removed_files(docs: Path) -> None:
    search = LocalSearch("docs", docs)
    assert (await search.search("cafeteria opens", limit=1))[0].snippet.count("7:15") == 1
    doc = docs / "zorvath-institute.md"
    text = doc.read_text().replace("opens at 7:15 on weekdays", "opens at 6:45 on weekdays, earlier than before")
    doc.write_text(text)
    [hit] = await search.search("cafeteria opens weekdays", limit=1)
    assert "6:45" in hit.snippet and "7:15" not in hit.snippet
    # a change that keeps the size still counts (mtime)
    same_size = text.replace("6:45", "6:50")
    doc.write_text(same_size)
    st = doc.stat()
    os.utime(doc, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert "6:50" in (await search.search("cafeteria opens weekdays", limit=1))[0].snippet
    # a new file is found, a deleted one disappears
    (docs / "new-note.md").write_text("# Velvet Otter Sanctuary\n\nThe sanctuary feeds its otters at noon.\n")
    assert (await search.search("otters sanctuary"))[0].title == "Velvet Otter Sanctuary"
    (docs / "planet-quillon.md").unlink()
    assert await search.search("Quillon moons Orrin") == []


async def test_persistent_index_is_reused(docs: Path, tmp_path: Path) -> None:
    index = tmp_path / "index" / "search.sqlite"
    first = LocalSearch("docs", docs, index_path=index)
    assert (await first.start()).added == 6
    first.close()
    second = LocalSearch("docs", docs, index_path=index)
    stats = await second.start()
    assert (stats.changed, stats.unchanged) == (0, 6)
    assert (await second.search(ZORVATH_QUESTION))[0].title == "Zorvath Institute Visitor Guide"
    second.close()


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SearchError, match="not a folder"):
        LocalSearch("docs", tmp_path / "nope")


def test_chunks_are_paragraphs_of_bounded_size() -> None:
    long_para = " ".join(f"Sentence number {i} talks about lanterns." for i in range(60))
    title, chunks = parse_document(Path("x.md"), f"# Big\n\n## Part\n\n{long_para}\n\n## Other\n\nShort text.\n")
    assert title == "Big"
    assert all(len(c) <= 600 for c in chunks)
    assert chunks[0].startswith("Big. Part. Sentence number 0")
    assert chunks[-1] == "Other. Short text."
    assert chunk_blocks([("x" * 2000, False)])  # one unbroken word still gets cut
    assert all(len(c) <= 600 for c in chunk_blocks([("x" * 2000, False)]))


# ---- HTTP search -----------------------------------------------------------------------------

class _SearxHandler(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict, dict]] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        type(self).requests.append((url.path, query, dict(self.headers)))
        if url.path == "/search":
            body = {"query": query.get("q"), "results": [
                {"title": "Zorvath Institute", "url": "https://zorvath.example/cafeteria",
                 "content": "The cafeteria opens at 7:15 on weekdays.", "score": 3.5},
                {"title": "Duplicate", "url": "https://zorvath.example/cafeteria", "content": "dup"},
                {"title": "No address", "content": "skipped"},
                {"title": "Second", "url": "https://second.example/", "content": "x " * 1000, "score": 1.25},
                {"url": "https://third.example/", "content": "untitled"},
            ]}
            self._send(200, json.dumps(body).encode())
        elif url.path == "/error":
            self._send(503, b"upstream engines are down")
        elif url.path == "/html":
            self._send(200, b"<html>format=json is not enabled</html>", "text/html")
        elif url.path == "/wrong-shape":
            self._send(200, b'{"answers": []}')
        elif url.path == "/slow":
            time.sleep(1.5)
            self._send(200, b'{"results": []}')
        else:
            self._send(404, b"not found")

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def searx():
    _SearxHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SearxHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_http_search_parses_searxng_json(searx: str) -> None:
    search = HttpSearch("web", f"{searx}/search", api_key="sekret", params={"language": "en", "safesearch": 1})
    assert isinstance(search, SearchProvider)
    results = await search.search("zorvath  cafeteria\nhours", limit=5)
    assert [r.uri for r in results] == ["https://zorvath.example/cafeteria", "https://second.example/",
                                        "https://third.example/"]
    assert results[0] == SearchResult("Zorvath Institute", "https://zorvath.example/cafeteria",
                                      "The cafeteria opens at 7:15 on weekdays.", 3.5)
    assert len(results[1].snippet) <= 600
    assert results[2].title == "https://third.example/"
    path, query, headers = _SearxHandler.requests[-1]
    assert query == {"q": "zorvath cafeteria hours", "format": "json", "language": "en", "safesearch": "1"}
    assert {k.lower(): v for k, v in headers.items()}["authorization"] == "Bearer sekret"
    assert len(await search.search("zorvath", limit=1)) == 1
    assert await search.search("   ") == []


@pytest.mark.parametrize(("path", "message"), [
    ("/error", "HTTP 503"),
    ("/html", "did not answer JSON"),
    ("/wrong-shape", "no \"results\" list"),
])
async def test_http_search_failures_raise_search_error(searx: str, path: str, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        await HttpSearch("web", searx + path).search("anything")


async def test_http_search_timeout_raises_search_error(searx: str) -> None:
    started = time.monotonic()
    with pytest.raises(SearchError, match="did not answer within 0.3 s"):
        await HttpSearch("web", f"{searx}/slow", timeout_s=0.3).search("anything")
    assert time.monotonic() - started < 1.4


async def test_http_search_unreachable_raises_search_error(searx: str) -> None:
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SearchError, match="cannot reach"):
        await HttpSearch("web", f"http://127.0.0.1:{port}/search", timeout_s=2).search("anything")


def test_http_search_rejects_a_bad_url() -> None:
    with pytest.raises(SearchError):
        HttpSearch("web", "localhost:8888/search")


# ---- grounding metadata ----------------------------------------------------------------------

async def test_grounding_metadata_shape() -> None:
    results = await LocalSearch("docs", DOCS).search(ZORVATH_QUESTION)
    answer = ("The Zorvath Institute's cafeteria opens at 7:15 on weekdays. "
              "On Saturdays it opens at 9:05 instead. "
              "I hope you enjoy your visit!")
    meta = grounding_metadata([ZORVATH_QUESTION, ZORVATH_QUESTION, " "], results, answer)
    assert set(meta) == {"webSearchQueries", "groundingChunks", "groundingSupports"}
    assert meta["webSearchQueries"] == [ZORVATH_QUESTION]
    assert meta["groundingChunks"] == [{"web": {"uri": r.uri, "title": r.title}} for r in results]
    supports = meta["groundingSupports"]
    assert [s["segment"]["text"] for s in supports] == [
        "The Zorvath Institute's cafeteria opens at 7:15 on weekdays.", "On Saturdays it opens at 9:05 instead."]
    for support in supports:
        assert set(support) == {"segment", "groundingChunkIndices", "confidenceScores"}
        assert set(support["segment"]) == {"startIndex", "endIndex", "text"}
        seg = support["segment"]
        assert answer.encode()[seg["startIndex"]:seg["endIndex"]].decode() == seg["text"]
        indices, scores = support["groundingChunkIndices"], support["confidenceScores"]
        assert indices and len(indices) == len(scores)
        assert all(0 <= i < len(results) for i in indices)
        assert all(0 < c <= 1 for c in scores) and scores == sorted(scores, reverse=True)
        assert indices[0] == 0  # the Zorvath guide backs both sentences best
    json.dumps(meta)  # plain JSON


def test_grounding_offsets_are_utf8_bytes_and_unsupported_sentences_are_omitted() -> None:
    results = [SearchResult("Café Ümlaut", "https://a.example/", "The café serves crème brûlée daily.", 1.0),
               SearchResult("Other", "https://b.example/", "Totally unrelated gardening advice.", 0.5)]
    answer = "Grüße! The café serves crème brûlée daily. Nothing else matches here."
    meta = grounding_metadata(["café"], results, answer)
    [support] = meta["groundingSupports"]
    seg = support["segment"]
    assert seg["text"] == "The café serves crème brûlée daily."
    assert answer.encode()[seg["startIndex"]:seg["endIndex"]].decode() == seg["text"]
    assert support["groundingChunkIndices"] == [0] and support["confidenceScores"] == [1.0]
    assert grounding_metadata([], [], "Anything.") == {"webSearchQueries": [], "groundingChunks": [],
                                                       "groundingSupports": []}
