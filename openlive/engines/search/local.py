"""Offline search over a folder of documents, ranked by SQLite FTS5 (bm25).

Documents (.md, .markdown, .txt, .html, .htm, found recursively, hidden files skipped) are split
into paragraph-sized chunks and each chunk is indexed with its document's title, so a result's
snippet is the passage that matched rather than the top of the file. The index is brought up to
date (files added, changed by mtime or size, or removed) before every search, which is cheap: one
stat per file. All SQLite work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
import sqlite3
import threading
import urllib.parse
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from .base import SNIPPET_CHARS, STOPWORDS, SearchError, SearchResult, trim_snippet, words

log = logging.getLogger(__name__)

EXTENSIONS = frozenset({".md", ".markdown", ".txt", ".html", ".htm"})
MAX_FILE_BYTES = 8 * 1024 * 1024  # larger files are skipped (logged once per change)
MAX_QUERY_TERMS = 32
TITLE_WEIGHT = 2.0  # bm25 weight of a title match relative to a body match


def fts5_available() -> bool:
    try:
        sqlite3.connect(":memory:").execute("create virtual table t using fts5(x)")
        return True
    except sqlite3.Error:
        return False


@dataclass(frozen=True)
class IndexStats:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0  # unreadable or too large

    @property
    def changed(self) -> int:
        return self.added + self.updated + self.removed


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression for free text: its words, each quoted, OR-ed together.

    Stopwords are dropped. Every term is a quoted string made only of word characters, so no
    input can form FTS5 syntax (AND/OR/NOT/NEAR, column filters, `*`, `^`, parentheses). None
    when no word is left (an empty query, or only stopwords: "what is the" matches nothing).
    """
    terms = [t for t in dict.fromkeys(words(text)) if t not in STOPWORDS][:MAX_QUERY_TERMS]
    if not terms:
        return None
    # \w+('\w+)? tokens: only the apostrophe needs care inside a quoted string, and it is fine;
    # double quotes cannot occur, but escape them anyway in case the tokenizer ever changes.
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


# ---- turning files into (title, chunks) -----------------------------------------------------

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)


def _markdown_title(text: str) -> str | None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _MD_HEADING.match(line)
        if m:
            return _strip_inline_markdown(m.group(1))
        if i + 1 < len(lines) and line.strip() and _SETEXT.match(lines[i + 1]) and lines[i + 1].strip()[0] == "=":
            return _strip_inline_markdown(line.strip())
    return None


def _strip_inline_markdown(text: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: keep the label
    text = re.sub(r"(\*\*|__|\*|_|`)(\S(?:.*?\S)?)\1", r"\2", text)
    return text.strip()


def _markdown_blocks(text: str) -> list[tuple[str, bool]]:
    """(text, is_heading) paragraphs of Markdown, headings on their own."""
    text = _FRONT_MATTER.sub("", text)
    blocks: list[tuple[str, bool]] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            body = _strip_inline_markdown(" ".join(s.strip() for s in para))
            if body:
                blocks.append((body, False))
            para.clear()

    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _MD_HEADING.match(line)
        if m:
            flush()
            blocks.append((_strip_inline_markdown(m.group(1)), True))
        elif _SETEXT.match(line) and para and len(para) == 1 and line.strip():
            heading = para[0]
            para.clear()
            blocks.append((_strip_inline_markdown(heading.strip()), True))
        elif not line.strip() or line.strip().startswith("```"):
            flush()
        else:
            para.append(line.strip().lstrip(">").strip())
    flush()
    return blocks


def _text_blocks(text: str) -> list[tuple[str, bool]]:
    return [(" ".join(p.split()), False) for p in re.split(r"\n\s*\n", text) if p.strip()]


class _HTMLText(HTMLParser):
    BLOCK = frozenset("p div br li ul ol tr table section article header footer h1 h2 h3 h4 h5 h6 "
                      "blockquote pre dd dt dl main nav aside figure figcaption hr title".split())
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, bool]] = []
        self.title: str | None = None
        self.h1: str | None = None
        self._buf: list[str] = []
        self._skip = 0
        self._in_title = False
        self._title_buf: list[str] = []
        self._heading: str | None = None

    def _flush(self) -> None:
        text = " ".join("".join(self._buf).split())
        self._buf.clear()
        if text:
            is_heading = self._heading is not None
            self.blocks.append((text, is_heading))
            if self._heading == "h1" and self.h1 is None:
                self.h1 = text

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self._flush()
            if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                self._heading = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            if self.title is None:
                self.title = " ".join("".join(self._title_buf).split()) or None
        elif tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self._flush()
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_buf.append(data)
        elif not self._skip:
            self._buf.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def parse_document(path: Path, text: str) -> tuple[str, list[str]]:
    """(title, chunks) of one document's text; the title falls back to the file name."""
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        parser = _HTMLText()
        try:
            parser.feed(text)
            parser.close()
        except Exception:  # HTMLParser is lenient; be safe anyway
            log.warning("could not parse %s as HTML; indexing its text", path)
            return path.name, chunk_blocks(_text_blocks(html.unescape(re.sub(r"<[^>]+>", " ", text))))
        title = parser.title or parser.h1 or path.name
        return title, chunk_blocks(parser.blocks)
    if suffix in (".md", ".markdown"):
        return _markdown_title(text) or path.name, chunk_blocks(_markdown_blocks(text))
    return path.name, chunk_blocks(_text_blocks(text))


def _split_long(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence ends, else at spaces."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        while len(sentence) > limit:  # a run-on "sentence": cut at a space
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return [p for p in pieces if p]


def _join_heading(heading: str, text: str) -> str:
    """A heading followed by its text, read as one passage: "Cafeteria. The cafeteria opens..."."""
    if not heading:
        return text
    sep = " " if heading[-1] in ".!?:;" else ". "
    return heading + sep + text


def chunk_blocks(blocks: list[tuple[str, bool]], limit: int = SNIPPET_CHARS) -> list[str]:
    """Paragraph-sized chunks of at most `limit` characters.

    Short paragraphs are merged with their neighbours and a heading is kept with the text that
    follows it (a new heading starts a new chunk), so each chunk is one readable passage.
    """
    chunks: list[str] = []
    current = ""  # text of the chunk being built
    heading = ""  # heading(s) waiting for their first paragraph (then current == "")
    for text, is_heading in blocks:
        if is_heading:
            if current:
                chunks.append(current)
                current = ""
            heading = _join_heading(heading, text) if heading else text
            if len(heading) > limit // 2:  # a run of headings: keep only the nearest
                heading = text[: limit // 2]
            continue
        if heading:
            room = limit - len(_join_heading(heading, ""))
            first, *rest = _split_long(text, room)
            current, heading = _join_heading(heading, first), ""
            pieces = _split_long(" ".join(rest), limit) if rest else []
        else:
            pieces = _split_long(text, limit)
        for piece in pieces:
            joined = f"{current}\n{piece}" if current else piece
            if len(joined) <= limit:
                current = joined
            else:
                chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    if heading:
        chunks.append(heading)
    return chunks


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="replace")


# ---- the index ------------------------------------------------------------------------------

_SCHEMA = """
create table if not exists files (
    path text primary key,  -- relative to the folder, POSIX separators
    mtime_ns integer not null,
    size integer not null,
    title text not null
);
create virtual table if not exists chunks using fts5(
    title, body, path unindexed, seq unindexed,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
create table if not exists meta (key text primary key, value text not null);
"""
_SCHEMA_VERSION = "1"


class LocalSearch:
    """Search over the documents under `folder` (see the module docstring)."""

    def __init__(self, name: str, folder: Path, *, index_path: Path | None = None,
                 base_uri: str | None = None) -> None:
        self.name = name
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise SearchError(f"search {name!r}: {self.folder} is not a folder")
        if not fts5_available():
            raise SearchError("this Python's sqlite3 lacks FTS5, which local search needs")
        self.index_path = Path(index_path).expanduser() if index_path is not None else None
        self.base_uri = base_uri
        self._lock = threading.Lock()
        self._skipped_logged: dict[str, tuple[int, int]] = {}
        if self.index_path is not None:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.index_path) if self.index_path else ":memory:",
                                   check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        row = self._db.execute("select value from meta where key = 'schema'").fetchone()
        root = self._db.execute("select value from meta where key = 'root'").fetchone()
        if row is None or row[0] != _SCHEMA_VERSION or root is None or root[0] != str(self.folder):
            # a fresh, old or foreign index: start over
            self._db.execute("delete from files")
            self._db.execute("delete from chunks")
            self._db.execute("insert or replace into meta values ('schema', ?)", (_SCHEMA_VERSION,))
            self._db.execute("insert or replace into meta values ('root', ?)", (str(self.folder),))

    # -- public -------------------------------------------------------------------------------

    async def start(self) -> IndexStats:
        """Index the folder now (otherwise the first search does it)."""
        return await self.refresh()

    async def refresh(self) -> IndexStats:
        """Bring the index up to date with the folder."""
        return await asyncio.to_thread(self.refresh_sync)

    async def search(self, query: str, *, limit: int = 3) -> list[SearchResult]:
        return await asyncio.to_thread(self.search_sync, query, limit=limit)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def uri_for(self, rel: str) -> str:
        if self.base_uri:
            base = self.base_uri if self.base_uri.endswith("/") else self.base_uri + "/"
            return base + urllib.parse.quote(rel)
        return (self.folder / rel).as_uri()

    def refresh_sync(self) -> IndexStats:
        with self._lock:
            return self._refresh_locked()

    def search_sync(self, query: str, *, limit: int = 3) -> list[SearchResult]:
        expr = fts_query(query or "")
        if expr is None or limit <= 0:
            with self._lock:
                self._refresh_locked()
            return []
        with self._lock:
            self._refresh_locked()
            try:
                rows = self._db.execute(
                    "select path, title, body, bm25(chunks, ?, 1.0) as rank from chunks "
                    "where chunks match ? order by rank limit ?",
                    (TITLE_WEIGHT, expr, max(50, limit * 10)),
                ).fetchall()
            except sqlite3.Error as e:  # should not happen: the expression is always well formed
                raise SearchError(f"local search failed for {query!r}: {e}") from e
        results: list[SearchResult] = []
        seen: set[str] = set()
        for path, title, body, rank in rows:
            if path in seen:
                continue  # one result per document: its best chunk
            seen.add(path)
            results.append(SearchResult(title=title, uri=self.uri_for(path), snippet=trim_snippet(body),
                                        score=round(-float(rank), 6)))
            if len(results) >= limit:
                break
        return results

    # -- indexing -----------------------------------------------------------------------------

    def _scan(self) -> dict[str, tuple[Path, int, int]]:
        found: dict[str, tuple[Path, int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in filenames:
                if fn.startswith(".") or Path(fn).suffix.lower() not in EXTENSIONS:
                    continue
                path = Path(dirpath) / fn
                try:
                    st = path.stat()
                except OSError:
                    continue
                rel = path.relative_to(self.folder).as_posix()
                found[rel] = (path, st.st_mtime_ns, st.st_size)
        return found

    def _refresh_locked(self) -> IndexStats:
        found = self._scan()
        known = {p: (m, s) for p, m, s in self._db.execute("select path, mtime_ns, size from files")}
        added = updated = removed = unchanged = skipped = 0
        db = self._db
        db.execute("begin")
        try:
            for rel in known.keys() - found.keys():
                db.execute("delete from files where path = ?", (rel,))
                db.execute("delete from chunks where path = ?", (rel,))
                removed += 1
            for rel, (path, mtime_ns, size) in sorted(found.items()):
                if known.get(rel) == (mtime_ns, size):
                    unchanged += 1
                    continue
                if size > MAX_FILE_BYTES:
                    if self._skipped_logged.get(rel) != (mtime_ns, size):
                        log.warning("search %r: skipping %s (%d bytes, over %d)", self.name, path, size, MAX_FILE_BYTES)
                        self._skipped_logged[rel] = (mtime_ns, size)
                    skipped += 1
                    if rel in known:  # it was indexed before it grew: drop the stale version
                        db.execute("delete from files where path = ?", (rel,))
                        db.execute("delete from chunks where path = ?", (rel,))
                        removed += 1
                    continue
                try:
                    text = _read_text(path)
                except OSError as e:
                    log.warning("search %r: cannot read %s: %s", self.name, path, e)
                    skipped += 1
                    continue
                title, chunks = parse_document(path, text)
                if rel in known:
                    db.execute("delete from chunks where path = ?", (rel,))
                    updated += 1
                else:
                    added += 1
                db.execute("insert or replace into files values (?, ?, ?, ?)", (rel, mtime_ns, size, title))
                db.executemany("insert into chunks (title, body, path, seq) values (?, ?, ?, ?)",
                               [(title, c, rel, i) for i, c in enumerate(chunks)])
            db.execute("commit")
        except BaseException:
            db.execute("rollback")
            raise
        stats = IndexStats(added, updated, removed, unchanged, skipped)
        if stats.changed:
            log.info("search %r: indexed %s (%d added, %d updated, %d removed)",
                     self.name, self.folder, added, updated, removed)
        return stats
