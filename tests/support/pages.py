"""A small web site on 127.0.0.1 for the urlContext tests: a page with a made-up fact, and every
way a fetch can go wrong (404, too large, too slow, redirect loops, not text)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A fact no model knows: found only by reading the page.
FACT = "The Zorblat festival is held on the 17th of Octember in Vexhaven, a harbour town."
PAGE = f"""<!doctype html>
<html><head><title>The Zorblat festival</title><meta charset="utf-8">
<style>body {{ color: red }}</style><script>var hidden = "not text";</script></head>
<body><nav>Home | Festivals | Contact</nav>
<h1>The Zorblat festival</h1>
<p>{FACT}</p>
<p>Visitors bring lanterns shaped like fish and sing until dawn.</p>
</body></html>
"""
BIG = 300_000  # bytes of /big and /big-stream: over the tests' max_bytes, under the default 2 MB
SLOW_S = 3.0  # /slow answers after this long


class _Pages(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # bodies end when the connection does: /big-stream needs no length

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None, length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        if path in ("/page.html", "/secret"):
            self._send(200, PAGE.encode())
        elif path == "/notes.txt":
            self._send(200, f"Notes\n\n{FACT}\n".encode(), "text/plain")
        elif path == "/big":
            self._send(200, b"x" * BIG, "text/plain")
        elif path == "/big-stream":
            self._send(200, b"word " * (BIG // 5), "text/plain", length=False)
        elif path == "/slow":
            time.sleep(SLOW_S)
            self._send(200, PAGE.encode())
        elif path == "/moved":
            self._send(302, headers={"Location": "/page.html"})
        elif path == "/inward":  # to this server by its address: a public page pointing inward
            self._send(302, headers={"Location": f"http://127.0.0.1:{self.server.server_address[1]}/page.html"})
        elif path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif path == "/elsewhere":
            self._send(302, headers={"Location": "ftp://127.0.0.1/page.html"})
        elif path == "/image.png":
            self._send(200, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
        else:
            self._send(404, b"<h1>Not found</h1>")


@contextmanager
def serving() -> Iterator[str]:
    """The site's base URL (http://127.0.0.1:PORT) while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
