"""A workforce system's webhook receiver, standing in for the real one in the tests, the demo and the benchmarks.

It checks every POST the way an integrator should (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the base64-decoded part of
a `whsec_` secret; a timestamp more than `tolerance_s` away from now is refused) and answers 401 when it fails.
It records every accepted change once (by change id, counting the duplicates that at-least-once delivery
brings) and checks each mailbox's sequence numbers: a change that skips one or goes backwards is an anomaly.
It also notices two requests for one mailbox in flight at the same time (`overlaps`), and accepts and counts
`ping`s (`pings`), the change type without an appointment that receivers may ignore. It shares no code with
the bridge: it is the other side of the wire, so it must not share the bridge's reading of the contract.

In-process use (tests)::

    receiver = WorkforceReceiver("whsec_...")
    url = await receiver.start()            # http://127.0.0.1:PORT/hooks/exchange, the bridge's workforce.url
    receiver.fail(status=503)               # until receiver.recover(); count=N for the next N requests only
    receiver.slow(500)                      # answer 500 ms late (count=N: the next N requests only)
    changes = await receiver.wait_for(6, within=10)
    receiver.stats()                        # requests, rejected, duplicates, anomalies, overlaps, ...
    await receiver.stop()

Control API (JSON, no auth: loopback use only), for other processes:

    GET    /_control/health                       {"status": "ok", "url", "controlUrl"}
    GET    /_control/changes?mailbox=ADDRESS      {"value": [change, ...]} in arrival order
    GET    /_control/requests                     {"value": [{webhookId, mailboxes, changes, status, reason,
                                                   userAgent, contentType}, ...]}
    GET    /_control/stats                        see `stats()`
    PUT    /_control/failure   {"status": 503, "count": null}   answer `status` (count: next N requests only)
    DELETE /_control/failure                                    answer normally again
    PUT    /_control/latency   {"ms": 500, "count": null}       answer late (ms 0: on time)
    POST   /_control/reset                        forget changes, statistics, failure and latency

Standalone: `python -m emulators.workforce --port 8099 --secret whsec_...` (without --secret it makes
one up and prints it); it prints its URLs, then one JSON line with `url`, `controlUrl` and `secret`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulators.running import run_standalone, serve, until_signalled

log = logging.getLogger(__name__)

HOOK_PATH = "/hooks/exchange"
PING = "ping"  # a change type that carries no appointment: accepted (2xx), counted, otherwise ignored
DEFAULT_TOLERANCE_S = 300.0  # Standard Webhooks' suggested replay window


class SignatureError(Exception):
    """Why a request's Standard Webhooks signature is not acceptable."""


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> None:
    """Check a request the Standard Webhooks way; raises SignatureError, or returns when it is authentic.

    `headers` must look names up case-insensitively (aiohttp's and most frameworks' headers do). Any one of
    the space-separated `v1,` signatures may match, so a sender can sign with an old and a new secret while
    rotating them.
    """
    message_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not message_id or not stamp or not signatures:
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {stamp!r} is not whole seconds since 1970") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"webhook-timestamp {timestamp} is more than {tolerance_s:g} s from now ({now:.0f})")
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    for signature in signatures.split():
        version, _, encoded = signature.partition(",")
        if version == "v1" and hmac.compare_digest(_decode(encoded), expected):
            return
    raise SignatureError("no v1 signature matches the body")


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("the secret is not whsec_ followed by base64") from None


def _decode(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return b""


@dataclass
class _Fault:
    value: float
    remaining: int | None  # None: until cleared

    def take(self) -> float:
        """The value for this request, counting it against `remaining`."""
        if self.remaining is not None:
            self.remaining -= 1
        return self.value

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


class WorkforceReceiver:
    def __init__(
        self,
        secret: str,
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        clock: Callable[[], float] = time.time,
        brief: bool = False,
    ) -> None:
        """`brief`: keep of each change only what a bench of many mailboxes reads (its id, type, mailbox,
        sequence, and its appointment's id and subject), so that 100,000 mailboxes' changes fit in memory."""
        _key(secret)  # refuse a malformed secret now rather than on every request
        self._secret = secret
        self._brief = brief
        self._tolerance_s = tolerance_s
        self._clock = clock
        self.changes: list[dict[str, Any]] = []
        self.anomalies: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.pings = 0
        self._seen: dict[str, int] = {}  # change id → how often it arrived
        self._last_sequence: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._counters = {"overlaps": 0, "peakInFlight": 0, "inFlight": 0}
        self._failure: _Fault | None = None
        self._latency: _Fault | None = None
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on `host:port` (0: a free port); returns the webhook URL to give the bridge."""
        if self._runner is not None:
            raise RuntimeError("the workforce receiver is already running")
        self._runner, self._base_url = await serve(self._build_app(), host, port, None)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the workforce receiver is not started")
        return self._base_url

    @property
    def url(self) -> str:
        return self.base_url + HOOK_PATH

    @property
    def control_url(self) -> str:
        return self.base_url + "/_control"

    # -- faults --------------------------------------------------------------------------------------------

    def fail(self, status: int = 503, count: int | None = None) -> None:
        """Answer `status` to the next `count` webhook requests (None: until `recover()`)."""
        if not 100 <= status <= 599:
            raise ValueError(f"status {status} is not an HTTP status")
        self._failure = _Fault(status, count)

    def recover(self) -> None:
        self._failure = None

    def slow(self, ms: float, count: int | None = None) -> None:
        """Answer `ms` late, for the next `count` webhook requests (None: until `slow(0)`)."""
        self._latency = _Fault(ms / 1000, count) if ms > 0 else None

    def reset(self) -> None:
        self.changes.clear()
        self.anomalies.clear()
        self.requests.clear()
        self.pings = 0
        self._seen.clear()
        self._last_sequence.clear()
        self._counters.update(overlaps=0, peakInFlight=self._counters["inFlight"])
        self._failure = None
        self._latency = None

    # -- inspection ----------------------------------------------------------------------------------------

    async def wait_for(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        """The changes, once at least `count` distinct ones have arrived; TimeoutError after `within` seconds."""
        try:
            async with asyncio.timeout(within), self._arrived:
                await self._arrived.wait_for(lambda: len(self.changes) >= count)
        except TimeoutError:
            raise TimeoutError(f"{len(self.changes)} of {count} changes arrived within {within:g} s") from None
        return list(self.changes)

    def changes_of(self, mailbox: str) -> list[dict[str, Any]]:
        return [change for change in self.changes if change.get("mailbox") == mailbox.lower()]

    @property
    def duplicates(self) -> int:
        """How many changes arrived again after they had been accepted once."""
        return sum(seen - 1 for seen in self._seen.values())

    def stats(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for entry in self.requests:
            if entry["status"] is not None:
                statuses[str(entry["status"])] = statuses.get(str(entry["status"]), 0) + 1
        return {
            "requests": len(self.requests),
            "byStatus": statuses,
            "rejected": statuses.get("401", 0),
            "changes": len(self.changes),
            "pings": self.pings,
            "duplicates": self.duplicates,
            "anomalies": list(self.anomalies),
            "lastSequence": dict(self._last_sequence),
            "overlaps": self._counters["overlaps"],
            "inFlight": self._counters["inFlight"],
            "peakInFlight": self._counters["peakInFlight"],
            "failure": None
            if self._failure is None
            else {"status": int(self._failure.value), "count": self._failure.remaining},
            "latencyMs": 0 if self._latency is None else self._latency.value * 1000,
        }

    # -- the webhook ---------------------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        entry: dict[str, Any] = {
            "status": None,  # until answered
            "webhookId": request.headers.get("webhook-id"),
            "mailboxes": [],
            "changes": 0,
            "userAgent": request.headers.get("User-Agent"),
            "contentType": request.headers.get("Content-Type"),
        }
        self.requests.append(entry)
        try:
            verify(self._secret, request.headers, body, now=self._clock(), tolerance_s=self._tolerance_s)
        except SignatureError as exc:
            return self._answer(entry, 401, str(exc))
        changes = _changes(body)
        if changes is None:
            return self._answer(entry, 400, 'the body is not {"changes": [change, ...]} with id, mailbox, sequence')
        # A `ping` (the bridge's preflight) asks only whether the endpoint is there and takes the signature.
        pings = sum(change.get("type") == PING for change in changes)
        changes = [change for change in changes if change.get("type") != PING]
        mailboxes = sorted({change["mailbox"] for change in changes})
        entry.update(mailboxes=mailboxes, changes=len(changes))
        if len(mailboxes) > 1:
            self.anomalies.append({"kind": "mixedBatch", "webhookId": entry["webhookId"], "mailboxes": mailboxes})
        self._enter(mailboxes)
        try:
            if self._latency is not None:
                delay = self._latency.take()
                if self._latency.spent:
                    self._latency = None
                await asyncio.sleep(delay)
            if self._failure is not None:
                status = int(self._failure.take())
                if self._failure.spent:
                    self._failure = None
                return self._answer(entry, status, "failing on purpose")
            self.pings += pings
            async with self._arrived:
                accepted = sum(self._record(change) for change in changes)
                self._arrived.notify_all()
        finally:
            self._leave(mailboxes)
        if changes:
            log.info("accepted %d new of %d changes (%s)", accepted, len(changes), ", ".join(mailboxes))
        entry["status"] = 200
        return web.json_response({"accepted": accepted, "duplicates": len(changes) - accepted})

    def _answer(self, entry: dict[str, Any], status: int, reason: str) -> web.Response:
        entry.update(status=status, reason=reason)
        return web.json_response({"error": reason}, status=status)

    def _enter(self, mailboxes: Sequence[str]) -> None:
        for mailbox in mailboxes:
            if self._in_flight.get(mailbox, 0):
                self._counters["overlaps"] += 1
            self._in_flight[mailbox] = self._in_flight.get(mailbox, 0) + 1
        self._counters["inFlight"] += 1
        self._counters["peakInFlight"] = max(self._counters["peakInFlight"], self._counters["inFlight"])

    def _leave(self, mailboxes: Sequence[str]) -> None:
        for mailbox in mailboxes:
            self._in_flight[mailbox] -= 1
        self._counters["inFlight"] -= 1

    def _record(self, change: dict[str, Any]) -> bool:
        """Keep a change seen for the first time (True); count a repeat and leave the order checks alone."""
        change_id = str(change["id"])
        self._seen[change_id] = self._seen.get(change_id, 0) + 1
        if self._seen[change_id] > 1:
            return False
        mailbox, sequence = change["mailbox"], change["sequence"]
        last = self._last_sequence.get(mailbox)
        # The first change seen of a mailbox sets its baseline: the receiver may start after the bridge.
        if last is not None and sequence != last + 1:
            kind = "gap" if sequence > last + 1 else "backwards"
            self.anomalies.append(
                {"kind": kind, "mailbox": mailbox, "expected": last + 1, "got": sequence, "changeId": change_id}
            )
        self._last_sequence[mailbox] = sequence if last is None else max(last, sequence)
        self.changes.append(_brief(change) if self._brief else change)
        return True

    # -- control API ---------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.post(HOOK_PATH, self._receive),
                web.get("/_control/health", self._health),
                web.get("/_control/changes", self._list_changes),
                web.get("/_control/requests", self._list_requests),
                web.get("/_control/stats", self._stats),
                web.put("/_control/failure", self._set_failure),
                web.delete("/_control/failure", self._clear_failure),
                web.put("/_control/latency", self._set_latency),
                web.post("/_control/reset", self._reset),
            ]
        )
        return app

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "url": self.url, "controlUrl": self.control_url})

    async def _list_changes(self, request: web.Request) -> web.Response:
        mailbox = request.query.get("mailbox")
        return web.json_response({"value": self.changes if mailbox is None else self.changes_of(mailbox)})

    async def _list_requests(self, _request: web.Request) -> web.Response:
        return web.json_response({"value": self.requests})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _set_failure(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        status, count = spec.get("status", 503), spec.get("count")
        if not isinstance(status, int) or not (count is None or isinstance(count, int)):
            raise web.HTTPBadRequest(text='expected {"status": 503, "count": null | N}')
        try:
            self.fail(status, count)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response(self.stats())

    async def _clear_failure(self, _request: web.Request) -> web.Response:
        self.recover()
        return web.json_response(self.stats())

    async def _set_latency(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        ms, count = spec.get("ms"), spec.get("count")
        if not isinstance(ms, int | float) or ms < 0 or not (count is None or isinstance(count, int)):
            raise web.HTTPBadRequest(text='expected {"ms": 500, "count": null | N}')
        self.slow(ms, count)
        return web.json_response(self.stats())

    async def _reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)


def _changes(body: bytes) -> list[dict[str, Any]] | None:
    """The body's changes, or None unless it is {"changes": [...]} and each has an id, a mailbox and a sequence."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    changes = document.get("changes") if isinstance(document, dict) else None
    if not isinstance(changes, list) or not changes:
        return None
    for change in changes:
        if not isinstance(change, dict) or not isinstance(change.get("id"), str):
            return None
        if change.get("type") != PING and not (
            isinstance(change.get("mailbox"), str) and type(change.get("sequence")) is int
        ):
            return None
    return changes


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        spec = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(spec, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return spec


# -- standalone ------------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.workforce",
        description="A workforce system's webhook receiver that checks Standard Webhooks signatures and order.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--secret", help="the Standard Webhooks secret, whsec_...; made up and printed if not given")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S, help="timestamp tolerance, s")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    secret = args.secret or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    receiver = WorkforceReceiver(secret, tolerance_s=args.tolerance)
    await receiver.start(args.host, args.port)
    print(f"workforce webhook  {receiver.url}", flush=True)
    print(f"control API        {receiver.control_url}", flush=True)
    print(json.dumps({"url": receiver.url, "controlUrl": receiver.control_url, "secret": secret}), flush=True)
    try:
        await until_signalled()
    finally:
        await receiver.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    return run_standalone("workforce receiver", _serve(args), args.log_level)


if __name__ == "__main__":
    sys.exit(main())


def _brief(change: dict[str, Any]) -> dict[str, Any]:
    appointment = change.get("appointment") or {}
    kept = {key: change.get(key) for key in ("id", "type", "mailbox", "sequence")}
    return kept | {"appointment": {"id": appointment.get("id"), "subject": appointment.get("subject")}}
