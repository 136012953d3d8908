"""The labelled conversation set of bench/conversation.py, and how each item is scored. No I/O.

Six categories, written to be general (everyday questions, not tuned to any model):

- knowledge:  one question with a well-known answer; every expected group must appear in the reply
- arithmetic: small sums, products, differences, quotients; the number in digits or words
- recall:     a fact in turn 1, two unrelated turns, then the question, so the fact is three turns back
- tool_args:  `get_weather` declared; the single call must name the city in English ("Munich", not "München")
- no_tool:    `get_weather` declared but not needed: no call, and a non-empty reply
- language:   "Answer in French: …": a stopword count must put the asked language first

To extend the set, append an `Item` to a category list; `ITEMS` and the scoring pick it up.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CATEGORIES = ("knowledge", "arithmetic", "recall", "tool_args", "no_tool", "language")


@dataclass(frozen=True)
class Item:
    category: str
    turns: tuple[str, ...]  # the user's turns, in order; the last reply is scored
    expect: tuple[tuple[str, ...], ...] = ()  # every group must match, by any one of its alternatives
    compact: bool = False  # compare letters and digits only ("QX-5518" = "qx 5518" = "QX5518")
    city: str | None = None  # tool_args: the English city the call must name
    language: str | None = None  # language: "fr", "es", "de", "it"

    @property
    def tools(self) -> bool:
        """Whether the `get_weather` tool is declared for this item."""
        return self.category in ("tool_args", "no_tool")

    @property
    def question(self) -> str:
        return self.turns[-1]


# ---------------------------------------------------------------------------------------------
# Numbers, as digits or words.

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English words for 0 ≤ n < 1000 ("forty two", "one hundred twenty one")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    head = f"{_ONES[n // 100]} hundred"
    return head if rest == 0 else f"{head} {number_words(rest)}"


def number(n: int) -> tuple[str, ...]:
    """The alternatives that count as saying `n`: digits, words, and "… hundred and …"."""
    words = number_words(n)
    alternatives = [str(n), words]
    if n >= 100 and n % 100:
        alternatives.append(words.replace(" hundred ", " hundred and "))
    if n == 100:
        alternatives.append("a hundred")
    return tuple(alternatives)


def _one(*alternatives: str) -> tuple[tuple[str, ...], ...]:
    return (tuple(alternatives),)


# ---------------------------------------------------------------------------------------------
# The items.

KNOWLEDGE = [
    Item("knowledge", ("How many legs does a spider have?",), (number(8),)),
    Item("knowledge", ("What is the boiling point of water in degrees Celsius at sea level?",), (number(100),)),
    Item("knowledge", ("What is the largest planet in our solar system?",), _one("jupiter")),
    Item("knowledge", ("Who wrote Romeo and Juliet?",), _one("shakespeare")),
    Item("knowledge", ("What is the capital of Japan?",), _one("tokyo")),
    Item("knowledge", ("How many continents are there on Earth?",), (number(7),)),
    Item("knowledge", ("What is the chemical symbol for gold?",), _one("au")),
    Item("knowledge", ("Who painted the Mona Lisa?",), _one("leonardo", "da vinci")),
    Item("knowledge", ("Which gas do plants take in from the air to make their food?",),
         _one("carbon dioxide", "co2", "co₂")),
    Item("knowledge", ("Which planet is known as the Red Planet?",), _one("mars")),
    Item("knowledge", ("What is the largest ocean on Earth?",), _one("pacific")),
    Item("knowledge", ("How many sides does a hexagon have?",), (number(6),)),
]

ARITHMETIC = [
    Item("arithmetic", ("What is 17 plus 25?",), (number(42),)),
    Item("arithmetic", ("What is 9 times 8?",), (number(72),)),
    Item("arithmetic", ("What is 100 minus 37?",), (number(63),)),
    Item("arithmetic", ("What is 144 divided by 12?",), (number(12),)),
    Item("arithmetic", ("What is 13 plus 48?",), (number(61),)),
    Item("arithmetic", ("What is 11 multiplied by 11?",), (number(121),)),
    Item("arithmetic", ("What do you get if you subtract 19 from 56?",), (number(37),)),
]

# Two unrelated turns between the fact and the question, varied per item.
_BETWEEN = [
    ("What is the capital of Italy?", "Tell me a short fact about cats."),
    ("How many minutes are in an hour?", "Name a famous painter."),
    ("What colour are bananas when they are ripe?", "Tell me a short fact about the ocean."),
    ("What is the opposite of cold?", "Give me a tip for sleeping better."),
    ("Which animal is known as the king of the jungle?", "Tell me a short fact about the moon."),
    ("How many wheels does a bicycle have?", "Suggest a name for a goldfish."),
    ("What language is spoken in Brazil?", "Tell me a short fact about honey."),
]


def _recall(fact: str, question: str, expect: tuple[tuple[str, ...], ...], i: int, compact: bool = False) -> Item:
    between = _BETWEEN[i % len(_BETWEEN)]
    return Item("recall", (fact, *between, question), expect, compact=compact)


RECALL = [
    _recall("My locker code is 4471. Please remember it.", "What was my locker code?", _one("4471"), 0, compact=True),
    _recall("My booking reference is QX-5518.", "What is my booking reference?", _one("qx5518"), 1, compact=True),
    _recall("Hi, my name is Ingrid.", "Do you remember my name?", _one("ingrid"), 2),
    _recall("My favourite colour is turquoise.", "What is my favourite colour?", _one("turquoise"), 3),
    _recall("My dentist appointment is on the 14th of March.", "When is my dentist appointment?",
            (("14", "fourteenth"), ("march",)), 4),
    _recall("Next week I am flying to Reykjavik.", "Which city am I flying to next week?", _one("reykjavik"), 5),
    _recall("My dog is called Biscuit.", "What is my dog called?", _one("biscuit"), 6),
]

# The English names that count for each city (the first is the expected one); a local name such
# as "München", "Köln" or "Den Haag" does not. Names written in English with their diacritic
# ("Zürich", "Kraków") do count.
CITY_NAMES: dict[str, tuple[str, ...]] = {
    "Lisbon": ("lisbon",),
    "Munich": ("munich",),
    "Seville": ("seville",),
    "Warsaw": ("warsaw",),
    "Cologne": ("cologne",),
    "Vienna": ("vienna",),
    "Prague": ("prague",),
    "Copenhagen": ("copenhagen",),
    "Florence": ("florence",),
    "Naples": ("naples",),
    "Geneva": ("geneva",),
    "Athens": ("athens",),
    "Zurich": ("zurich", "zürich"),
    "Krakow": ("krakow", "cracow", "kraków"),
    "Gothenburg": ("gothenburg",),
    "The Hague": ("the hague", "hague"),
    "Edinburgh": ("edinburgh",),
    "Porto": ("porto", "oporto"),
}

TOOL_ARGS = [Item("tool_args", (q,), city=c) for q, c in [
    ("What's the weather like in Lisbon today?", "Lisbon"),
    ("Do I need an umbrella in Munich tomorrow?", "Munich"),
    ("Is it raining in Seville?", "Seville"),
    ("How cold is it in Warsaw right now?", "Warsaw"),
    ("How warm is it in Cologne right now?", "Cologne"),
    ("What's the forecast for Vienna this weekend?", "Vienna"),
    ("Should I bring a jacket to Prague today?", "Prague"),
    ("Is it windy in Copenhagen at the moment?", "Copenhagen"),
    ("I'm visiting Florence tomorrow. Will it be sunny?", "Florence"),
    ("What's the temperature in Naples?", "Naples"),
    ("Is it snowing in Geneva?", "Geneva"),
    ("Check the weather in Athens for me, please.", "Athens"),
    ("Will it rain in Zurich this afternoon?", "Zurich"),
    ("My sister lives in Krakow. What's the weather like there?", "Krakow"),
    ("Can you tell me the current weather in Gothenburg?", "Gothenburg"),
    ("How hot is it in The Hague today?", "The Hague"),
    ("Is it foggy in Edinburgh this morning?", "Edinburgh"),
    ("Weather in Porto, please.", "Porto"),
]]

NO_TOOL = [Item("no_tool", (q,)) for q in [
    "What is the capital of France?",
    "Tell me a joke.",
    "How many days are in a week?",
    "How do you say thank you in German?",
    "Who wrote Hamlet?",
    "Can you recommend a good book for a long flight?",
    "What is the difference between weather and climate?",
    "Give me a good name for a black cat.",
    "Hello! How are you today?",
    "What should I wear to a job interview?",
]]

LANGUAGE = [
    Item("language", ("Answer in French: what colour is the sky?",), language="fr"),
    Item("language", ("Answer in Spanish: what is your favourite season and why?",), language="es"),
    Item("language", ("Answer in German: what do people usually eat for breakfast?",), language="de"),
    Item("language", ("Answer in Italian: why is the sea salty?",), language="it"),
    Item("language", ("Reply in French, please: how many days are in a week?",), language="fr"),
    Item("language", ("Reply in Spanish, please: what is a good way to learn to cook?",), language="es"),
]

ITEMS: list[Item] = [*KNOWLEDGE, *ARITHMETIC, *RECALL, *TOOL_ARGS, *NO_TOOL, *LANGUAGE]


def items(limit: int | None = None, categories: Sequence[str] = CATEGORIES) -> list[Item]:
    """The set, or the first `limit` items of each category (for smoke runs)."""
    chosen: list[Item] = []
    for category in categories:
        in_category = [item for item in ITEMS if item.category == category]
        chosen += in_category[:limit] if limit is not None else in_category
    return chosen


# ---------------------------------------------------------------------------------------------
# Scoring.

def normalize(text: str) -> str:
    """Lower case, one kind of apostrophe, hyphens as spaces, no thousands separators, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"[-‐‑–—]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def compact(text: str) -> str:
    """Letters and digits only: "QX-5518" → "qx5518"."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).lower())


def mentions(text: str, phrase: str) -> bool:
    """`phrase` appears in `text` as whole words ("8" is not in "18" or "0.8", "au" is not in "autumn")."""
    phrase = normalize(phrase)
    needle = re.escape(phrase).replace(r"\ ", r"\s+")
    if phrase.isdigit():
        needle += "(?:st|nd|rd|th)?"  # "14th" says 14
    return re.search(rf"(?<![\w.]){needle}(?!\w|[.,]\d)", normalize(text)) is not None


def matches(text: str, expect: Sequence[Sequence[str]], compact_match: bool = False) -> bool:
    """Every group of alternatives has one alternative in `text`."""
    if compact_match:
        squeezed = compact(text)
        return all(any(compact(a) in squeezed for a in group) for group in expect)
    return all(any(mentions(text, a) for a in group) for group in expect)


def city_matches(location: object, city: str) -> bool:
    """The call's `location` names `city` in English: "Munich" and "Munich, Germany" do, "München" does not."""
    if not isinstance(location, str):
        return False
    first = normalize(location).split(",")[0].strip()
    return first in CITY_NAMES.get(city, (normalize(city),))


# About fifteen common function words per language; a reply is in the language with the most hits.
# A word in more than one list ("una", "con", "del") tells nothing and counts for none: an Italian
# reply full of "del" and "la" once scored as Spanish.
_STOPWORDS = {
    "en": "the is are and of to it this that with for you was be what",
    "fr": "le les est et une des du ce qui dans pour pas sont avec au je vous",
    "es": "el los las es y una del por con para está son muy pero como",
    "de": "der die das ist und ein eine nicht mit den dem zu sind auf ich",
    "it": "il lo gli è e una di che della del nel tra cui per sono con non molto anche più",
}
_SHARED = {word for language, words in _STOPWORDS.items() for word in words.split()
           if any(word in other.split() for lang, other in _STOPWORDS.items() if lang != language)}
STOPWORDS: dict[str, frozenset[str]] = {language: frozenset(words.split()) - _SHARED
                                        for language, words in _STOPWORDS.items()}


def language_hits(text: str) -> dict[str, int]:
    words = re.findall(r"[^\W\d_]+", unicodedata.normalize("NFKC", text).lower())
    return {language: sum(word in stopwords for word in words) for language, stopwords in STOPWORDS.items()}


def detect_language(text: str) -> str | None:
    """The language whose stopwords hit most often, or None on a tie or no hits."""
    hits = language_hits(text)
    ranked = sorted(hits.items(), key=lambda kv: kv[1], reverse=True)
    if not ranked or ranked[0][1] == 0 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]


@dataclass
class Outcome:
    """What happened in one item's session: the text of each turn's reply and each toolCall's calls."""

    replies: list[str] = field(default_factory=list)
    tool_calls: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)  # per toolCall: (name, args)
    error: str | None = None

    @property
    def last_reply(self) -> str:
        return self.replies[-1] if self.replies else ""


def score(item: Item, outcome: Outcome) -> bool:
    """Whether the item was answered right."""
    if outcome.error is not None or len(outcome.replies) < len(item.turns):
        return False
    reply = outcome.last_reply
    if item.category == "tool_args":
        if len(outcome.tool_calls) != 1 or len(outcome.tool_calls[0]) != 1:
            return False
        name, args = outcome.tool_calls[0][0]
        return name == "get_weather" and item.city is not None and city_matches(args.get("location"), item.city)
    if item.category == "no_tool":
        return not outcome.tool_calls and bool(reply.strip())
    if item.category == "language":
        return detect_language(reply) == item.language
    return matches(reply, item.expect, item.compact)
