"""The context window: how many tokens a conversation holds, and the sliding window that trims it.

Tokens are counted as the Live API counts them: text by the model's tokenizer, speech at about
25 tokens a second, video at 258 tokens a frame (one frame a second). Before each turn runs, a
session whose history passed `triggerTokens` drops its oldest turns until it is under
`slidingWindow.targetTokens`, always cutting at the start of a user turn. The system instruction
is not history and is never dropped. With no compression configured, a conversation that no
longer fits the model's window ends, as the real service ends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..protocol.errors import ProtocolError, invalid_argument
from ..protocol.messages import ContextWindowCompressionConfig

AUDIO_TOKENS_PER_SECOND = 25
VIDEO_TOKENS_PER_FRAME = 258
DEFAULT_TRIGGER_FRACTION = 0.8  # the proto's default trigger: 80% of the model's window


@dataclass(frozen=True)
class ContextPolicy:
    window: int  # tokens the model can read: past it, an uncompressed session ends
    trigger: int | None  # None: no compression
    target: int

    @classmethod
    def from_setup(cls, config: ContextWindowCompressionConfig | None, window: int) -> "ContextPolicy":
        if config is None:
            return cls(window, None, window)
        trigger = config.trigger_tokens if config.trigger_tokens is not None else int(window * DEFAULT_TRIGGER_FRACTION)
        sliding = config.sliding_window
        target = sliding.target_tokens if sliding and sliding.target_tokens is not None else trigger // 2
        if trigger <= 0 or target < 0:
            raise invalid_argument("Request contains an invalid argument: contextWindowCompression token counts "
                                   "must be positive.")
        if target >= trigger:
            raise invalid_argument("Request contains an invalid argument: slidingWindow.targetTokens must be less "
                                   "than triggerTokens.")
        return cls(window, trigger, target)


def window_exceeded(total: int, window: int) -> ProtocolError:
    # The wording of the service's own "too many tokens" error.
    return invalid_argument(f"The input token count ({total}) exceeds the maximum number of tokens allowed ({window}).")


def turns_to_drop(roles: Sequence[str], tokens: Sequence[int], fixed: int, target: int) -> int:
    """How many of the oldest turns to drop so that `fixed` + the rest is at most `target`.

    The kept history starts with a user turn, and the last user turn (the one about to be answered)
    is never dropped, even when it alone is over the target.
    """
    last_user = max((i for i, role in enumerate(roles) if role == "user"), default=-1)
    if last_user <= 0:
        return 0
    total = fixed + sum(tokens)
    cut = 0
    while cut < last_user and total > target:
        total -= tokens[cut]
        cut += 1
    while cut < last_user and roles[cut] != "user":
        cut += 1  # never start the kept history in the middle of a model turn
    return cut
