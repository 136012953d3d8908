"""The small interface every search provider implements, and grounding metadata built from it.

A provider turns a free-text query (usually written by the LLM as a `googleSearch` call) into a
few ranked results, each with the passage that matched. `grounding_metadata` then describes, in
the Live API's wire shape (camelCase), which results back which sentences of the model's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

SNIPPET_CHARS = 600  # the most text of one result handed to the model and to clients


class SearchError(RuntimeError):
    """A search could not be done: the service failed, timed out or answered nonsense."""


@dataclass(frozen=True)
class SearchResult:
    title: str
    uri: str
    snippet: str  # the passage that matched best, at most SNIPPET_CHARS characters
    score: float  # higher is better; only comparable between results of one provider


@runtime_checkable
class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, *, limit: int = 3) -> list[SearchResult]:
        """The best `limit` results for `query`, best first; [] when nothing matches.

        Any text must be accepted as a query (it comes from a model); failures of the backing
        service raise SearchError.
        """
        ...


# Words too common to say anything about what a query or sentence is about.
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
don't down during each few for from further had hadn't has hasn't have haven't having he he'd
he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into
is isn't it it's its itself let's me more most mustn't my myself no nor not of off on once only or
other ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so
some such than that that's the their theirs them themselves then there there's these they they'd
they'll they're they've this those through to too under until up very was wasn't we we'd we'll
we're we've were weren't what what's when when's where where's which while who who's whom why
why's with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves
also just will near tell know please find search information s t d ll m re ve
""".split())

_WORD = re.compile(r"\w+(?:'\w+)?")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of `text` (letters and digits of any script)."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """`words` without stopwords, in order, duplicates kept."""
    return [w for w in words(text) if w not in STOPWORDS]


def _stem(word: str) -> str:
    """A crude English stem, enough to match "opens" with "open" and "moons" with "moon"."""
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _content_stems(text: str) -> set[str]:
    return {_stem(w) for w in content_words(text)}


_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])[\"')\]\u201d\u2019]*(?=\s|$)|\n\s*\n|\n(?=\s*(?:[-*\u2022]|\d+[.)])\s)")


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, surrounding whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def support_score(sentence: str, passage: str) -> float:
    """How well `passage` backs `sentence`, in 0..1: the share of the sentence's content words
    (crudely stemmed) that the passage contains; 0 when fewer than two are shared (or the one
    word of a one-word sentence is missing)."""
    said = _content_stems(sentence)
    if not said:
        return 0.0
    shared = said & _content_stems(passage)
    if len(shared) < min(2, len(said)):
        return 0.0
    return len(shared) / len(said)


def grounding_metadata(queries: list[str], results: list[SearchResult], answer: str,
                       *, min_confidence: float = 0.3) -> dict:
    """The `groundingMetadata` of a reply (camelCase wire dict).

    `groundingChunks` are `results` in order; `groundingSupports` has, for each sentence of
    `answer` backed by at least one result (support_score >= min_confidence), its segment and
    the backing chunks, best first, with the scores as confidences. Segment indices are UTF-8
    byte offsets into `answer`, as in the real service (end exclusive).
    """
    seen: set[str] = set()
    web_queries = []
    for q in queries:
        q = q.strip()
        if q and q not in seen:
            seen.add(q)
            web_queries.append(q)
    chunks = [{"web": {"uri": r.uri, "title": r.title}} for r in results]
    passages = [f"{r.title}\n{r.snippet}" for r in results]
    supports = []
    for s, e in _sentences(answer):
        sentence = answer[s:e]
        scored = [(support_score(sentence, p), i) for i, p in enumerate(passages)]
        scored = sorted(((c, i) for c, i in scored if c >= min_confidence), key=lambda ci: (-ci[0], ci[1]))
        if not scored:
            continue
        start = len(answer[:s].encode("utf-8"))
        supports.append({
            "segment": {"startIndex": start, "endIndex": start + len(sentence.encode("utf-8")), "text": sentence},
            "groundingChunkIndices": [i for _, i in scored],
            "confidenceScores": [round(c, 3) for c, _ in scored],
        })
    return {"webSearchQueries": web_queries, "groundingChunks": chunks, "groundingSupports": supports}


def trim_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """`text` with whitespace collapsed, cut at a word boundary to at most `limit` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "\u2026"
