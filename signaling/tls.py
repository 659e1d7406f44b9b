"""HTTPS for the gateway: the server's TLS context from a PEM certificate chain and its key.

Browsers give a page the camera only in a secure context: https://, or http:// on localhost. A
gateway reached over the network therefore serves TLS itself (`headcast serve --tls-cert/--tls-key`)
or sits behind a proxy that does (then `allowed_origins` names the proxy's origin).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from signaling.errors import TlsError


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Return a TLS server context (TLS 1.2 at least) serving `cert` with `key`; TlsError when they cannot be used."""
    for what, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise TlsError(f"the TLS {what} {path} does not exist")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # An empty password: an encrypted key fails here instead of prompting on the terminal.
        context.load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as error:
        raise TlsError(
            f"the certificate {cert} and key {key} cannot be used ({error.reason or error}): give a PEM "
            "certificate chain and its own, unencrypted private key"
        ) from None
    return context
