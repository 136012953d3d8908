"""Which model generation a session behaves as, chosen once from the model name at setup.

Google's Live models differ on the wire by generation, and the real clients branch on the name
they ask for (README, "Model generations", cites the client code that relies on each row):

| behaviour                                     | 2.x (2.0, 2.5)                 | 3.x                          |
|-----------------------------------------------|--------------------------------|------------------------------|
| `clientContent` ending `turnComplete: true`    | answered, even with            | history only while           |
| under `historyConfig.initialHistoryInClient…` | (2.x has no historyConfig)     | `initialHistoryInClient…`    |
| `turnComplete` right after a `toolCall`       | yes: the answer after the      | no: the answer continues the |
|                                               | `toolResponse` is a new turn   | turn that made the call      |
| `realtimeInput.text` of only " " or "."       | " " is nothing; "." is words   | a trigger: it starts the     |
|                                               |                                | reply to unanswered content  |
| `inputTranscription` of the user's speech     | streamed while they speak: new | one message, whole, when the |
|                                               | words only, then the rest with | turn ends                    |
|                                               | `finished: true`               |                              |

The rooms read a `Generation`; none of them looks at the model name. Names are matched by the
`[generations]` table first (glob patterns, then its `default`), then by the version in the name
(`gemini-2.5-…`, `gemini-live-2.5-…`, `gemini-3.1-…`); a name with no version (a `[models]` alias
such as "my-agent") gets the default, 3.x unless configured.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Generation:
    name: str  # "2.x" or "3.x"
    # A clientContent with turnComplete is answered even under initialHistoryInClientContent.
    answers_seed: bool
    # turnComplete follows a blocking toolCall; the reply after the toolResponse is a turn of its own.
    tool_call_ends_turn: bool
    # realtimeInput.text (stripped) that is a nudge, not words: it starts the reply to content
    # that is still unanswered, and is otherwise nothing.
    triggers: frozenset[str]
    # The user's words go out while they speak (interim inputTranscription pieces, input_transcription.py).
    interim_input_transcription: bool = False

    def is_trigger(self, text: str) -> bool:
        return text.strip() in self.triggers


GEN_2 = Generation("2.x", answers_seed=True, tool_call_ends_turn=True, triggers=frozenset({""}),
                   interim_input_transcription=True)
GEN_3 = Generation("3.x", answers_seed=False, tool_call_ends_turn=False, triggers=frozenset({"", "."}))
GENERATIONS = {g.name: g for g in (GEN_2, GEN_3)}
DEFAULT_GENERATION = GEN_3.name

# "gemini-2.5-flash-native-audio-…", "gemini-live-2.5-flash-preview", "gemini-2.0-flash-live-001",
# "gemini-3.1-flash-live-preview": the major version after "gemini-" (and an optional "live-").
_VERSION = re.compile(r"(?:^|/)gemini-(?:live-)?(\d+)(?:\.\d+)?-", re.IGNORECASE)


def generation_for(model: str, table: Mapping[str, str] | None = None) -> Generation:
    """The generation a session naming `model` behaves as; `table`: the `[generations]` config
    (glob pattern over the bare model name → "2.x"/"3.x", and "default")."""
    table = table or {}
    bare = model.rsplit("/", 1)[-1]
    for pattern, name in table.items():
        if pattern != "default" and fnmatch.fnmatchcase(bare, pattern):
            return GENERATIONS[name]
    match = _VERSION.search(model)
    if match:
        return GEN_2 if int(match.group(1)) <= 2 else GEN_3
    return GENERATIONS[table.get("default", DEFAULT_GENERATION)]
