"""A throw-away certificate authority for serving HTTPS on loopback (trustme).

The emulators speak HTTPS because the real clients (msgraph-sdk, azure-identity, exchangelib) insist on it for
Microsoft endpoints; clients trust the emulator by pointing at the CA file this writes, e.g.
`httpx.AsyncClient(verify=ca_file)` or `ClientSecretCredential(..., connection_verify=ca_file)`:

    ca = LoopbackCA("/tmp/emulator-ca.pem")
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ca.server_context())

One CA can issue several server certificates, so the bridge's own listener can be given one the same clients
already trust.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trustme

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class LoopbackCA:
    """A CA whose PEM is written to `ca_file`, issuing server certificates for loopback names."""

    def __init__(self, ca_file: str | Path, *, organization: str = "Presence bridge emulators") -> None:
        self._ca: Any = trustme.CA(organization_name=organization)
        self.ca_file = Path(ca_file)
        self.ca_file.parent.mkdir(parents=True, exist_ok=True)
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    @property
    def ca_pem(self) -> bytes:
        pem: bytes = self._ca.cert_pem.bytes()
        return pem

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server-side context with a fresh certificate for `names` (loopback names by default)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(*(names or LOOPBACK_NAMES)).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA (and only it)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(context)
        return context

    def write_server_cert(self, cert_file: str | Path, key_file: str | Path, *names: str) -> None:
        """A certificate and key as PEM files, for servers configured by path rather than by SSLContext."""
        issued = self._ca.issue_cert(*(names or LOOPBACK_NAMES))
        Path(cert_file).write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key_file))


def loopback_tls(ca_file: str | Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1/localhost and the path of the CA PEM clients should verify with."""
    ca = LoopbackCA(ca_file)
    return ca.server_context(), ca.ca_file
