"""Word error rate, for checking speech recognition against a known transcript."""

from __future__ import annotations

import re
import unicodedata

# Anything that is not a letter, digit or apostrophe separates words, so "times," == "times"
# and "worst-case" == "worst case"; apostrophes stay so "it's" is one word.
_NON_WORD = re.compile(r"[^\w']+|_")


def normalize_words(text: str) -> list[str]:
    """Lowercase words with punctuation removed (Unicode-aware, so "Straße" stays one word)."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return [w.strip("'") for w in _NON_WORD.split(text) if w.strip("'")]


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions (word-level Levenshtein distance)."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    prev = list(range(len(hyp) + 1))  # distance from ref[:0] to each hyp prefix
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference` (0.0 = perfect; can exceed 1.0)."""
    n = len(normalize_words(reference))
    if n == 0:
        return 0.0 if not normalize_words(hypothesis) else float("inf")
    return word_errors(reference, hypothesis) / n
