"""Base64 as the Live API carries it: either alphabet, padded or not.

The Python SDK sends URL-safe padded base64, the JS SDK and browsers the standard alphabet; a
reader on either side of the wire must take both.
"""

from __future__ import annotations

import base64
import binascii


def decode_any(text: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding; ValueError when it is not base64."""
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Base64 decoding failed") from exc
