"""What the framework drivers share. Each driver runs as a script in its framework's own venv, so
this sits beside them (a script's folder is on its import path) and imports only the stdlib."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_for(predicate: Callable[[], object], what: str, timeout: float) -> None:
    """Poll until `predicate()` is true; a TimeoutError that names `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.05)
