"""TLS trust for a client: the system's CAs, SSL_CERT_FILE, and a local openlive's own certificate."""

from __future__ import annotations

import ipaddress
import os
import ssl
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_DATA_DIR = Path("~/.openlive")


def is_loopback(base_url: str) -> bool:
    """Whether `base_url` names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlparse(base_url if "://" in base_url else f"https://{base_url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_ssl_context(base_url: str, data_dir: Path | str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """The context to connect to `base_url` with.

    Trusts the system CAs and `SSL_CERT_FILE` / `SSL_CERT_DIR` (OpenSSL reads them), and, for a
    loopback address, also the self-signed certificate a local `openlive serve` made in
    `<data_dir>/tls/cert.pem` (data_dir: `OPENLIVE_DATA_DIR` or ~/.openlive). `verify=False`
    turns verification off (only for testing).
    """
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if is_loopback(base_url):
        folder = Path(data_dir or os.environ.get("OPENLIVE_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
        cert = folder / "tls" / "cert.pem"
        if cert.is_file():
            try:
                context.load_verify_locations(cafile=str(cert))
            except (ssl.SSLError, OSError):
                pass  # an unreadable file: the default trust still applies
    return context
