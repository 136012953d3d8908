"""Reading one user turn with the google-genai SDK, as clients of 2.x models must."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


async def turn_messages(session: Any) -> AsyncIterator[Any]:
    """Every message of one user turn. A 2.x model ends its turn with a toolCall (the SDK's
    `receive()` stops there) and answers the toolResponse in a turn of its own, so the turn goes on
    past that turnComplete until content follows the call (session/generation.py; ADK's
    `GeminiLlmConnection.receive` reads it the same way). The caller answers calls as they come."""
    owed = True
    while owed:
        owed = False
        async for message in session.receive():
            content = message.server_content
            if message.tool_call:
                owed = True
            elif content is not None and content.model_turn is not None:
                owed = False
            yield message
