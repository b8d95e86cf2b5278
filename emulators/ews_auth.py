"""Who is calling: HTTP Basic, and NTLM through pyspnego's acceptor when it is enabled.

Exchange on-premises answers a missing or wrong credential with HTTP 401 and `WWW-Authenticate` challenges
(exchangelib then raises UnauthorizedError). NTLM authenticates a TCP connection, not a request: the
NEGOTIATE / CHALLENGE / AUTHENTICATE exchange spans two requests on one keep-alive connection, after which the
connection stays authenticated, so the acceptor's state is kept per transport.

pyspnego's pure-Python NTLM acceptor checks credentials against the file named by the `NTLM_USER_FILE`
environment variable (`DOMAIN:user:password` lines). That variable is process-wide, so the emulator writes one
file with every account and points the variable at it when NTLM is enabled.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulators.ews_model import Organisation


@dataclass(frozen=True)
class AuthResult:
    """A known account, or the 401 to answer (with the challenge header, if NTLM is mid-handshake)."""

    username: str | None
    challenge: str | None = None


class Authenticator:
    def __init__(self, org: Organisation, *, ntlm: bool = False, realm: str = "ews.emulator") -> None:
        self.org = org
        self.realm = realm
        self.ntlm = ntlm
        # Keyed by transport; closed connections are forgotten on the next request.
        self._contexts: dict[Any, Any] = {}
        self._users: dict[Any, str] = {}
        self._user_file: Path | None = None

    def challenges(self) -> list[str]:
        offered = ["NTLM"] if self.ntlm else []
        return [*offered, f'Basic realm="{self.realm}"']

    def authenticate(self, header: str | None, transport: Any) -> AuthResult:
        self._forget_closed()
        if transport is not None and transport in self._users and not header:
            return AuthResult(self._users[transport])
        if not header:
            return AuthResult(None)
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic":
            return AuthResult(self._basic(token.strip()))
        if scheme.lower() in ("ntlm", "negotiate") and self.ntlm and transport is not None:
            return self._ntlm(scheme, token.strip(), transport)
        return AuthResult(None)

    def _forget_closed(self) -> None:
        for table in (self._contexts, self._users):
            for transport in [key for key in table if key.is_closing()]:
                del table[transport]

    def _basic(self, token: str) -> str | None:
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, password = decoded.partition(":")
        account = self.org.account(username)
        if account is None or account.password != password:
            return None
        return account.username

    # -- NTLM ----------------------------------------------------------------------------------------------

    def sync_ntlm_users(self) -> None:
        """Write every account to the acceptor's user file (called when accounts change)."""
        if not self.ntlm:
            return
        if self._user_file is None:
            self._user_file = Path(tempfile.mkdtemp(prefix="ews-ntlm-")) / "users"
        lines = []
        for account in self.org.accounts.values():
            domain, _, user = account.username.rpartition("\\")
            lines.append(f"{domain}:{user}:{account.password}")
        self._user_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.environ["NTLM_USER_FILE"] = str(self._user_file)

    def _ntlm(self, scheme: str, token: str, transport: Any) -> AuthResult:
        import spnego  # imported lazily: only NTLM-enabled emulators need it

        try:
            data = base64.b64decode(token, validate=True)
        except binascii.Error:
            return AuthResult(None)
        context = self._contexts.get(transport)
        if context is None or data[8:12] == b"\x01\x00\x00\x00":
            context = spnego.server(protocol="ntlm")
            self._contexts[transport] = context
        try:
            answer = context.step(data)
        except Exception:
            self._contexts.pop(transport, None)
            return AuthResult(None)
        if not context.complete:
            return AuthResult(None, f"{scheme} {base64.b64encode(answer or b'').decode('ascii')}")
        self._contexts.pop(transport, None)
        client = str(context.client_principal or "")
        account = self._account_for(client)
        if account is None:
            return AuthResult(None)
        self._users[transport] = account
        return AuthResult(account)

    def _account_for(self, principal: str) -> str | None:
        user = principal.rpartition("\\")[2].lower()
        for account in self.org.accounts.values():
            if account.username.lower() == principal.lower() or account.username.rpartition("\\")[2].lower() == user:
                return account.username
        return None
