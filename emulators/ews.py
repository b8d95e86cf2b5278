"""An on-premises Exchange server's EWS endpoint for calendar work, served over HTTP(S) on loopback.

It stands in for Exchange 2016 in the tests, the demo and the benchmarks: the real, unmodified exchangelib
talks to it (SOAP 1.1 on `/EWS/Exchange.asmx`), so it follows Exchange's documented behaviour and the samples
in tests/fixtures/ews rather than the bridge's reading of them, faults included. It imports nothing of the
bridge outside emulators/; calendars are the Graph emulator's model (graph_events.py) seen through EWS.

In-process use (tests)::

    emulator = EwsEmulator(tls=False)                       # or TLS with a LoopbackCA (the default)
    emulator.add_mailbox("alice@corp.example")
    emulator.add_service_account("CORP\\svc-bridge", "s3cret", impersonation=True)
    await emulator.start()                                  # emulator.url: http://127.0.0.1:PORT/EWS/Exchange.asmx
    ...
    await emulator.stop()

Python API:

- organisation: `add_mailbox(address, display_name=None, *, password=None)`, `remove_mailbox(address)` (it
  answers ErrorNonExistentMailbox from then on), `add_service_account(username, password, *,
  impersonation=True, full_access=False)`, `set_impersonation(username, allowed)`.
- calendars "as Outlook": `create_item_as_outlook(address, subject=..., start=..., end=..., ...) -> str`,
  `update_item_as_outlook(address, item_id, **changes) -> str`, `delete_item_as_outlook(address, item_id, *,
  delete_type="MoveToDeletedItems")`, `items(address) -> list[dict]` (stored items, raw).
- faults: `fail(code, count=1, *, operation=None, mailbox=None, message=None)`, `server_busy(count=1, *,
  back_off_ms=..., operation=None, mailbox=None)`, `garbage(count=1, *, operation=None, mailbox=None)`,
  `cut_streaming_connections() -> int`, the `latency_ms` attribute,
  `expire_subscription(id)`, `clear_faults()`; `find_count_limit` is an attribute.
- throttling: `limits.concurrency` (EWSMaxConcurrency, 27), `limits.hanging_connections` (HangingConnectionLimit,
  3) and `limits.subscriptions` (EWSMaxSubscriptions, 5,000), per budget: the impersonated mailbox's, else the
  calling account's; `stats()["peakConcurrency"]` is the most requests each budget had under way at once.
- inspection: `stats(log_limit=None)`, `clear_stats()`, `sent_mail()`, `subscriptions()`.

Standalone: `python -m emulators.ews --port 8443 --ca-file /tmp/ca.pem --mailbox alice@corp.example
--account 'CORP\\svc=secret'`; it prints the endpoint and, last line, the same as one JSON object.

Choices where Exchange leaves room or the emulator is simpler: only the calendar folder holds items (other
distinguished folders exist and are empty); `MoveToDeletedItems` reports a MovedEvent but keeps no copy in
Deleted Items; restrictions in FindItem answer ErrorUnsupportedQueryFilter; OccurrenceItemId is not
supported; unknown Windows time-zone ids are treated as UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from emulators.ews_auth import Authenticator
from emulators.ews_faults import SERVER_BUSY_TEXT, FaultRule, Faults, Stats
from emulators.ews_items import zone_name
from emulators.ews_model import EwsMailbox, Organisation, ServiceAccount
from emulators.ews_operations import Context, Operations
from emulators.ews_outlook import outlook_payload
from emulators.ews_streaming import Streams
from emulators.ews_subscriptions import Subscriptions
from emulators.ews_throttling import HANGING_CONNECTION_LIMIT, MAX_CONCURRENCY, MAX_SUBSCRIPTIONS, Concurrency, Limits
from emulators.ews_xml import (
    SoapFault,
    envelope,
    fault,
    local_name,
    m,
    parse_envelope,
    t,
    text_of,
)
from emulators.graph_common import GraphError
from emulators.graph_render import render_stored
from emulators.running import run_standalone, serve, until_signalled
from emulators.tls import LoopbackCA

log = logging.getLogger(__name__)

PATH = "/EWS/Exchange.asmx"
_XML = "text/xml; charset=utf-8"
# What a misconfigured proxy in front of Exchange answers in place of SOAP.
_GARBAGE = b"<html><body><h1>502 Bad Gateway<hr>upstream sent an invalid response & closed"


class EwsEmulator:
    def __init__(
        self,
        *,
        tls: bool = True,
        ca_file: str | Path | None = None,
        ca: LoopbackCA | None = None,
        find_count_limit: int = 1000,
        keepalive_interval: float = 5.0,
        connection_minute: float = 60.0,
        ntlm: bool = False,
        hanging_connection_limit: int = HANGING_CONNECTION_LIMIT,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
        max_concurrency: int = MAX_CONCURRENCY,
    ) -> None:
        self.ca: LoopbackCA | None = None
        if tls:
            self.ca = ca or LoopbackCA(ca_file or Path(tempfile.mkdtemp(prefix="ews-emulator-")) / "ca.pem")
        self.org = Organisation()
        # Exchange's documented on-premises defaults; an administrator raises them (ews_throttling.py).
        self.limits = Limits(hanging_connection_limit, max_subscriptions, max_concurrency)
        self.concurrency = Concurrency(self.limits)
        self.subscriptions_registry = Subscriptions(limits=self.limits)
        self.org.on_new_mailbox.append(self.subscriptions_registry.watch)
        self.operations = Operations(self.org, self.subscriptions_registry, find_count_limit=find_count_limit)
        self.streams = Streams(
            self.org, self.subscriptions_registry, keepalive=keepalive_interval, minute=connection_minute
        )
        self.faults = Faults()
        # Simulated network latency on every answer but the long-lived streams (Exchange on-prem over a WAN).
        self.latency_ms = 0.0
        self._stats = Stats()
        self.auth = Authenticator(self.org, ntlm=ntlm)
        self.app = web.Application(client_max_size=32 * 1024 * 1024)
        self.app.router.add_post(PATH, self._serve)
        self.app.router.add_get(PATH, self._unauthenticated_get)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl: ssl.SSLContext | None = None) -> str:
        """Serve on `host:port` (0: a free port); returns the EWS endpoint URL."""
        if self._runner is not None:
            raise RuntimeError("the EWS emulator is already running")
        context = ssl or (self.ca.server_context() if self.ca is not None else None)
        self._runner, self._base_url = await serve(self.app, host, port, context)
        return self.url

    async def stop(self) -> None:
        self.streams.close_all()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EwsEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the EWS emulator is not started")
        return self._base_url

    @property
    def url(self) -> str:
        """The service endpoint exchangelib's `Configuration(service_endpoint=...)` takes."""
        return self.base_url + PATH

    @property
    def ca_file(self) -> Path | None:
        return self.ca.ca_file if self.ca is not None else None

    @property
    def find_count_limit(self) -> int:
        return self.operations.find_count_limit

    @find_count_limit.setter
    def find_count_limit(self, value: int) -> None:
        self.operations.find_count_limit = value

    # -- organisation --------------------------------------------------------------------------------------

    def add_mailbox(self, address: str, display_name: str | None = None, *, password: str | None = None) -> EwsMailbox:
        """A mailbox with this primary SMTP address; with a password its owner may log in (delegate access)."""
        mailbox = self.org.add_mailbox(address, display_name)
        if password is not None:
            self.add_service_account(address, password, impersonation=False)
        return mailbox

    def remove_mailbox(self, address: str) -> None:
        """The mailbox disappears (disabled, moved away): requests for it answer ErrorNonExistentMailbox."""
        mailbox = self.org.mailboxes.get(address.lower())
        if mailbox is None:
            raise ValueError(f"no mailbox {address!r}")
        mailbox.present = False

    def add_service_account(
        self, username: str, password: str, *, impersonation: bool = True, full_access: bool = False
    ) -> ServiceAccount:
        account = self.org.add_account(ServiceAccount(username, password, impersonation, full_access))
        self.auth.sync_ntlm_users()
        return account

    def set_impersonation(self, username: str, allowed: bool) -> None:
        """Grant or revoke the ApplicationImpersonation role."""
        account = self.org.account(username)
        if account is None:
            raise ValueError(f"no account {username!r}")
        account.impersonation = allowed

    # -- calendars as Outlook changes them -----------------------------------------------------------------

    def create_item_as_outlook(self, address: str, **fields: Any) -> str:
        """An item the user made in Outlook; its id. Fields: see ews_outlook.outlook_payload."""
        mailbox = self._mailbox(address)
        try:
            event, _ = mailbox.calendar.create(outlook_payload(mailbox, fields, creating=True), as_outlook=True)
        except GraphError as error:
            raise ValueError(error.message) from None
        return event.id

    def update_item_as_outlook(self, address: str, item_id: str, **fields: Any) -> str:
        """Change an item, a series or (making it an exception) one occurrence; the new change key."""
        mailbox = self._mailbox(address)
        try:
            instance = mailbox.calendar.update(item_id, outlook_payload(mailbox, fields), as_outlook=True)
        except GraphError as error:
            raise ValueError(error.message) from None
        return instance.change_key

    def delete_item_as_outlook(self, address: str, item_id: str, *, delete_type: str = "MoveToDeletedItems") -> None:
        """Delete an item, a series, or one occurrence (Outlook moves items to Deleted Items)."""
        mailbox = self._mailbox(address)
        mailbox.delete_type = delete_type
        try:
            mailbox.calendar.delete(item_id)
        except GraphError as error:
            raise ValueError(error.message) from None
        finally:
            mailbox.delete_type = "MoveToDeletedItems"

    def items(self, address: str) -> list[dict[str, Any]]:
        """Stored items (single items and series masters with exceptions), in the calendar model's terms."""
        mailbox = self._mailbox(address)
        events = sorted(mailbox.calendar.events.values(), key=lambda event: event.created)
        return [render_stored(event) | {"changeKey": event.change_key} for event in events]

    # -- faults --------------------------------------------------------------------------------------------

    def fail(
        self,
        code: str,
        count: int = 1,
        *,
        operation: str | None = None,
        mailbox: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `count` matching requests answer a SOAP fault with this EWS code (HTTP 500)."""
        text = message or f"The server answered {code} (injected by the EWS emulator)."
        self.faults.add(FaultRule(code, text, count, operation, mailbox.lower() if mailbox else None))

    def server_busy(
        self, count: int = 1, *, back_off_ms: int = 1000, operation: str | None = None, mailbox: str | None = None
    ) -> None:
        """ErrorServerBusy with BackOffMilliseconds, as Exchange's throttling answers."""
        rule = FaultRule("ErrorServerBusy", SERVER_BUSY_TEXT, count, operation, mailbox, back_off_ms)
        rule.mailbox = mailbox.lower() if mailbox else None
        self.faults.add(rule)

    def garbage(self, count: int = 1, *, operation: str | None = None, mailbox: str | None = None) -> None:
        """The next `count` matching requests answer 200 with a body that is not SOAP."""
        self.faults.add(FaultRule("", "", count, operation, mailbox.lower() if mailbox else None, garbage=True))

    def cut_streaming_connections(self) -> int:
        """Drop every open GetStreamingEvents connection without a Closed frame; how many there were."""
        return self.streams.cut_all()

    def expire_subscription(self, subscription_id: str) -> None:
        self.subscriptions_registry.expire(subscription_id)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- inspection ----------------------------------------------------------------------------------------

    def stats(self, *, log_limit: int | None = None) -> dict[str, Any]:
        """Requests by operation and response code, and a log of (operation, mailbox, account, status, codes)."""
        return self._stats.to_json(log_limit=log_limit) | {"peakConcurrency": dict(self.concurrency.peak)}

    def clear_stats(self) -> None:
        self._stats.clear()
        self.concurrency.peak.clear()

    def sent_mail(self) -> list[dict[str, object]]:
        return [mail.to_json() for mail in self.org.sent_mail]

    def subscriptions(self) -> list[dict[str, Any]]:
        self.subscriptions_registry.purge()
        return [
            {
                "id": sub.id,
                "kind": sub.kind,
                "mailbox": sub.mailbox,
                "owner": sub.owner,
                "connected": sub.connection is not None,
                "queued": len(sub.events),
            }
            for sub in self.subscriptions_registry.by_id.values()
        ]

    # -- HTTP ----------------------------------------------------------------------------------------------

    async def _unauthenticated_get(self, request: web.Request) -> web.Response:
        return self._unauthorized(None)

    def _unauthorized(self, challenge: str | None) -> web.Response:
        response = web.Response(status=401, text="401 - Unauthorized: Access is denied due to invalid credentials.")
        offers = [challenge] if challenge else self.auth.challenges()
        for offer in offers:
            response.headers.add("WWW-Authenticate", offer)
        return response

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        started, started_monotonic = time.time(), time.monotonic()
        operation, mailbox_address, account = "?", None, None
        charged: str | None = None  # the budget this request is counted against while under way
        try:
            # Read the body even when refusing: an unread body would end the keep-alive connection that an
            # NTLM handshake needs.
            data = await request.read()
            auth = self.auth.authenticate(request.headers.get("Authorization"), request.transport)
            if auth.username is None:
                self._stats.record(
                    operation,
                    mailbox=None,
                    account=None,
                    status=401,
                    codes=[],
                    started=started,
                    started_monotonic=started_monotonic,
                )
                return self._unauthorized(auth.challenge)
            account = auth.username
            header, body = parse_envelope(data)
            operation = local_name(body.tag)
            ctx = self._context(request, header, body, account)
            mailbox_address = ctx.mailbox.address
            if operation != "GetStreamingEvents":  # held to HangingConnectionLimit instead (Streams.serve)
                self.concurrency.enter(ctx.budget)
                charged = ctx.budget
            if self.latency_ms and operation != "GetStreamingEvents":
                await asyncio.sleep(self.latency_ms / 1000)
            injected = self.faults.take(operation, mailbox_address)
            if injected is not None and injected.garbage:
                self._stats.record(
                    operation,
                    mailbox=mailbox_address,
                    account=account,
                    status=200,
                    codes=["garbage"],
                    started=started,
                    started_monotonic=started_monotonic,
                )
                return web.Response(status=200, body=_GARBAGE, headers={"Content-Type": _XML})
            if injected is not None:
                raise injected.to_fault()
            if operation == "GetStreamingEvents":
                self._stats.record(
                    operation,
                    mailbox=mailbox_address,
                    account=account,
                    status=200,
                    codes=[],
                    started=started,
                    started_monotonic=started_monotonic,
                )
                return await self.streams.serve(request, body, account, ctx.budget)
            handler = self.operations.handlers.get(operation)
            if handler is None:
                raise SoapFault("ErrorInvalidOperation", f"The EWS emulator does not serve {operation}.")
            answer = handler(ctx, body)
        except SoapFault as error:
            self._stats.record(
                operation,
                mailbox=mailbox_address,
                account=account,
                status=500,
                codes=[error.code],
                started=started,
                started_monotonic=started_monotonic,
            )
            return web.Response(status=500, body=fault(error), headers={"Content-Type": _XML})
        finally:
            if charged is not None:
                self.concurrency.leave(charged)
        codes = [code.text or "" for code in answer.iter(m("ResponseCode"))]
        self._stats.record(
            operation,
            mailbox=mailbox_address,
            account=account,
            status=200,
            codes=codes,
            started=started,
            started_monotonic=started_monotonic,
        )
        response = web.Response(status=200, body=envelope(answer), headers={"Content-Type": _XML})
        if request.headers.get("X-PreferServerAffinity", "").lower() == "true":
            response.set_cookie("X-BackEndOverrideCookie", f"EWSEMU01~{hash(mailbox_address) & 0xFFFFFF:06x}")
        return response

    def _context(self, request: web.Request, header: ET.Element, body: ET.Element, username: str) -> Context:
        """The mailbox a request acts on: the impersonated one, else the one named in the request."""
        account = self.org.account(username)
        assert account is not None
        impersonation = header.find(t("ExchangeImpersonation"))
        if impersonation is not None:
            sid = impersonation.find(t("ConnectingSID"))
            address = None
            for tag in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
                address = address or text_of(sid, t(tag))
            if not account.impersonation:
                raise SoapFault(
                    "ErrorImpersonateUserDenied",
                    "The account does not have permission to impersonate the requested user.",
                )
            mailbox = self._existing(address or "")
        else:
            address = request.headers.get("X-AnchorMailbox") or _first_mailbox(body) or username
            mailbox = self._existing(address)
            if mailbox.address.lower() != username.lower() and not account.full_access:
                raise SoapFault("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        zone_definition = header.find(f"{t('TimeZoneContext')}/{t('TimeZoneDefinition')}")
        time_zone = zone_name(zone_definition.get("Id") if zone_definition is not None else None)
        return Context(mailbox, username, time_zone, impersonating=impersonation is not None)

    def _existing(self, address: str) -> EwsMailbox:
        mailbox = self.org.mailbox(address)
        if mailbox is None:
            raise SoapFault("ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it.")
        return mailbox

    def _mailbox(self, address: str) -> EwsMailbox:
        mailbox = self.org.mailboxes.get(address.lower())
        if mailbox is None:
            raise ValueError(f"no mailbox {address!r}")
        return mailbox


def _first_mailbox(body: ET.Element) -> str | None:
    for found in body.iter(t("EmailAddress")):
        if found.text:
            return found.text
    return None


# -- standalone --------------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.ews",
        description="An Exchange (EWS) emulator for calendars, over HTTP(S) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--ca-file", type=Path, help="where to write the CA certificate clients verify with")
    parser.add_argument("--plain-http", action="store_true", help="serve http instead of https")
    parser.add_argument("--mailbox", action="append", default=[], metavar="ADDRESS", help="a mailbox (repeatable)")
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="USER=PASSWORD",
        help="a service account with impersonation rights (repeatable)",
    )
    parser.add_argument("--find-count-limit", type=int, default=1000)
    parser.add_argument(
        "--hanging-connection-limit",
        type=int,
        default=HANGING_CONNECTION_LIMIT,
        help="open streaming connections per throttling budget (Exchange's HangingConnectionLimit)",
    )
    parser.add_argument(
        "--max-subscriptions",
        type=int,
        default=MAX_SUBSCRIPTIONS,
        help="live subscriptions per throttling budget (EWSMaxSubscriptions)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=MAX_CONCURRENCY,
        help="requests under way at once per throttling budget (EWSMaxConcurrency)",
    )
    parser.add_argument("--ntlm", action="store_true", help="offer NTLM as well as Basic")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = EwsEmulator(
        tls=not args.plain_http,
        ca_file=args.ca_file,
        find_count_limit=args.find_count_limit,
        ntlm=args.ntlm,
        hanging_connection_limit=args.hanging_connection_limit,
        max_subscriptions=args.max_subscriptions,
        max_concurrency=args.max_concurrency,
    )
    for address in args.mailbox:
        emulator.add_mailbox(address)
    accounts = []
    for spec in args.account:
        username, _, password = spec.partition("=")
        accounts.append(emulator.add_service_account(username, password).username)
    url = await emulator.start(args.host, args.port)
    summary = {
        "url": url,
        "caFile": str(emulator.ca_file) if emulator.ca_file else None,
        "mailboxes": list(args.mailbox),
        "accounts": accounts,
    }
    print(f"EWS emulator listening\n  endpoint: {url}\n  CA file:  {summary['caFile']}", flush=True)
    print(json.dumps(summary), flush=True)
    try:
        await until_signalled()
    finally:
        await emulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    return run_standalone("ews emulator", _serve(args), args.log_level)


if __name__ == "__main__":
    sys.exit(main())
