"""The Live API wire protocol, without I/O: parse client frames, build and encode server messages."""

from .codec import MAX_SERVER_FRAME_BYTES, encode_server_message, parse_client_frame
from .errors import CloseCode, ProtocolError

__all__ = ["MAX_SERVER_FRAME_BYTES", "CloseCode", "ProtocolError", "encode_server_message", "parse_client_frame"]
