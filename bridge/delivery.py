"""Delivery: the outbox → the workforce system's webhook, signed, in order per mailbox, retried until accepted.

A mailbox's changes leave strictly in sequence, in batches of up to `batch_size`; a later batch is only sent
once the one before it was answered 2xx. Mailboxes are delivered concurrently (up to `concurrency` at once).
Anything else than a 2xx (a timeout, a refused connection, a 3xx, 4xx or 5xx) keeps the batch in the outbox
and backs its mailbox off exponentially; nothing is ever dropped (docs/workforce-webhook.md).

Several instances may share one PostgreSQL database: an instance delivers a mailbox only while it holds the
mailbox's delivery lease (claimed with `FOR UPDATE SKIP LOCKED`, renewed with every batch), so two instances
never send one mailbox's changes side by side. No transaction stays open across an HTTP request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlmodel import Session

from bridge import __version__
from bridge.backoff import backoff
from bridge.config import WorkforceConfig
from bridge.errors import UserError
from bridge.metrics import Metrics
from bridge.outages import Outages
from bridge.store import Database, MailboxRow, OutboxRow
from bridge.store.models import UTCDateTime
from bridge.waiting import first_of

log = logging.getLogger(__name__)

USER_AGENT = f"presence-bridge/{__version__}"
# Namespace of the uuid5 that names a batch: the same changes in a batch always make the same webhook-id.
BATCH_NAMESPACE = uuid.UUID("0f5b0c1e-6a43-4d1f-9a39-2b8f1e7c5d20")
_ERROR_EXCERPT = 300


@dataclass(frozen=True, slots=True)
class DeliveryTiming:
    lease: timedelta = timedelta(seconds=30)
    poll: timedelta = timedelta(seconds=1)
    timeout: timedelta = timedelta(seconds=10)
    backoff_first: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        # A request outliving the lease could let another instance send the next batch before this one lands.
        if self.timeout >= self.lease:
            raise ValueError(f"delivery timeout {self.timeout} must be shorter than the lease {self.lease}")


DEFAULT_TIMING = DeliveryTiming()


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def refusal_hint(status: int) -> str:
    """What an administrator should look at when the workforce endpoint answers `status` ('' when nothing)."""
    if status in (401, 403):
        # A receiver answers 401 to a bad signature (docs/workforce-webhook.md); a proxy or gateway in front of it
        # may want credentials of its own.
        return (
            " (is workforce.signing_secret the secret the workforce system checks? does the endpoint or a proxy"
            " in front of it want other authentication?)"
        )
    return ""


def signed_headers(key: bytes, webhook_id: str, now: datetime, body: bytes) -> dict[str, str]:
    """The headers of a webhook request carrying `body`, signed as at `now`."""
    timestamp = int(now.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, webhook_id, timestamp, body),
    }


def message_id(change_ids: Sequence[str]) -> str:
    """The `webhook-id` of a request: the change id for one change, a name derived from all of them for a batch.

    Retrying the same batch therefore repeats its webhook-id, as the Standard Webhooks spec asks.
    """
    if len(change_ids) == 1:
        return change_ids[0]
    return str(uuid.uuid5(BATCH_NAMESPACE, ",".join(change_ids)))


def retry_delay(attempts: int, timing: DeliveryTiming, jitter: float) -> timedelta:
    """How long a mailbox waits after its `attempts`-th failed attempt; `jitter` in [0, 1] picks within the step.

    The step doubles from `backoff_first` up to `backoff_max`; the wait is between half the step and all of it,
    so instances that failed together spread out, yet none retries sooner than half the step.
    """
    return backoff(attempts, timing.backoff_first, timing.backoff_max) * (0.5 + 0.5 * jitter)


@dataclass(frozen=True, slots=True)
class _Batch:
    row_ids: tuple[int, ...]
    change_ids: tuple[str, ...]
    # Each change as the JSON text the outbox holds: the body is made of them without decoding them.
    changes: tuple[str, ...]
    attempts: int
    modified_at: tuple[datetime | None, ...]
    first_sequence: int
    last_sequence: int
    full: bool  # as long as the limit it was read with: more may follow


def webhook_body(changes: Sequence[str]) -> bytes:
    """The body of a webhook request carrying these changes (each a JSON object's text), as the contract has it:
    `{"changes": [change, ...]}`."""
    return ('{"changes":[' + ",".join(changes) + "]}").encode("utf-8")


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str  # short and stable, for the outage log
    detail: str  # with what the receiver said, for `last_error`
    status: str  # the HTTP status, `timeout` or `unreachable`: the deliveries metric's label


@dataclass(frozen=True, slots=True)
class _Accepted:
    """A batch the workforce system accepted, waiting for a recording round (`DeliveryWorker._record`)."""

    mailbox_id: int
    batch: _Batch
    following: asyncio.Future[_Batch | None]  # the mailbox's next batch, once recorded


class DeliveryWorker:
    """Sends the outbox to `config.url`; without a URL it idles (the workforce system reads the pull feed)."""

    def __init__(
        self,
        db: Database,
        config: WorkforceConfig,
        *,
        owner: str,
        concurrency: int = 8,
        timing: DeliveryTiming = DEFAULT_TIMING,
        http: aiohttp.ClientSession | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
    ) -> None:
        if config.batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        key = config.signing_key
        if config.url is not None and key is None:
            raise UserError("workforce.url needs a signing_secret", ["the workforce system checks signatures"])
        self._db = db
        self._url = config.url
        self._key = key or b""
        self._owner = owner
        self._batch_size = config.batch_size
        self._concurrency = concurrency
        self._timing = timing
        self._http = http
        self._owns_http = http is None
        self._clock = clock
        self._wake = asyncio.Event()
        self._outages = Outages(log)
        self._failures: dict[int, int] = {}
        self._metrics = metrics or Metrics()
        # While `run` runs: its stop event, the mailboxes being delivered, and those whose place the recording
        # round that released them already offered to the next due mailbox (their end needs no claim of its own).
        self._stop: asyncio.Event | None = None
        self._active: dict[int, asyncio.Task[int]] = {}
        self._places_given: set[int] = set()
        # Accepted batches waiting for the recording round under way, whether a claim is wanted, and that round.
        self._accepted: list[_Accepted] = []
        self._claim_wanted = False
        self._recorder: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """New changes were committed: look for them now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then let the requests in flight finish and record their outcome."""
        if self._url is None:
            await stop.wait()
            return
        self._stop = stop
        try:
            while not stop.is_set():
                self._wake.clear()
                self._claim_wanted = True
                self._record_soon()
                await first_of(stop, self._wake, within=self._timing.poll.total_seconds())
        except asyncio.CancelledError:
            for task in self._tasks():
                task.cancel()
            raise
        finally:
            # A claim under way as `stop` came may still start drains: wait until nothing is left running.
            while tasks := self._tasks():
                await asyncio.gather(*tasks, return_exceptions=True)
            self._stop = None
            self._places_given.clear()
            await self.close()

    def _tasks(self) -> list[asyncio.Task[Any]]:
        return [*self._active.values(), *([self._recorder] if self._recorder is not None else [])]

    def _start(self, mailbox_id: int, batch: _Batch) -> None:
        task = asyncio.create_task(self._drain(mailbox_id, batch, self._stop), name=f"delivery-{mailbox_id}")
        self._active[mailbox_id] = task  # a mailbox released and claimed again in one round: its old task is done
        task.add_done_callback(partial(self._finished, mailbox_id))

    def _finished(self, mailbox_id: int, task: asyncio.Task[int]) -> None:
        if self._active.get(mailbox_id) is task:
            del self._active[mailbox_id]
        if mailbox_id in self._places_given:
            self._places_given.discard(mailbox_id)
        else:
            self._wake.set()  # a place is free

    async def deliver_once(self) -> int:
        """Claim the mailboxes that are due (up to `concurrency`), deliver all they have; how many changes went."""
        if self._url is None:
            return 0
        claimed = await self._claim(self._concurrency, exclude=set())
        return sum(await asyncio.gather(*(self._drain(mailbox_id, batch, None) for mailbox_id, batch in claimed)))

    async def close(self) -> None:
        """Close the HTTP session if this worker made it; a later call makes a new one."""
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def _claim(self, limit: int, exclude: set[int]) -> list[tuple[int, _Batch]]:
        now = self._clock()
        until = now + self._timing.lease
        return await self._db.run(
            partial(
                claim_due,
                owner=self._owner,
                now=now,
                until=until,
                limit=limit,
                exclude=exclude,
                batch_size=self._batch_size,
            )
        )

    async def _drain(self, mailbox_id: int, first: _Batch, stop: asyncio.Event | None) -> int:
        """Send a claimed mailbox's due changes batch by batch, from its claim's `first`, until none is left, one
        fails or `stop` is set."""
        delivered = 0
        batch: _Batch | None = first
        try:
            while batch is not None and (stop is None or not stop.is_set()):
                failure = await self._post(batch)
                if failure is not None:
                    self._metrics.delivery_failed(failure.status, len(batch.row_ids))
                    await self._record_failure(mailbox_id, batch, failure)
                    return delivered
                if self._outages.failing("webhook"):
                    self._outages.recovered("webhook", f"workforce webhook {self._url} accepts changes again")
                    # The endpoint is one for every mailbox: those backing off from its outage are due now.
                    await self._db.run(partial(_resume, now=self._clock()))
                    self._wake.set()
                sent = batch
                batch = await self._record(mailbox_id, sent)
                delivered += len(sent.row_ids)
                self._metrics.delivered(sent.modified_at, self._clock())
            if batch is not None:  # stopping: the next batch waits for the next start
                await self._db.run(partial(release, mailbox_id=mailbox_id, owner=self._owner))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug or the database gone: this mailbox backs off (its changes held), the other mailboxes go on.
            failures = self._failures.get(mailbox_id, 0) + 1
            self._failures[mailbox_id] = failures
            message = f"delivering the changes of mailbox {mailbox_id} failed unexpectedly: {type(exc).__name__}: {exc}"
            self._outages.unexpected(f"mailbox {mailbox_id}", message, exc)
            until = self._clock() + retry_delay(failures, self._timing, random.random())
            with contextlib.suppress(Exception):  # the database is away: the lease runs out on its own
                await self._db.run(partial(_back_off, mailbox_id=mailbox_id, owner=self._owner, until=until))
            return delivered
        self._failures.pop(mailbox_id, None)
        return delivered

    async def _record(self, mailbox_id: int, batch: _Batch) -> _Batch | None:
        """Record an accepted batch delivered, committed when this returns; the mailbox's next batch, or None (its
        lease given back) when none is due or another instance took the mailbox.

        Batches accepted while a recording round is under way go together in the next round, which also claims
        the mailboxes due for the places they free (`run` only): one transaction for what cost one each.
        """
        following: asyncio.Future[_Batch | None] = asyncio.get_running_loop().create_future()
        self._accepted.append(_Accepted(mailbox_id, batch, following))
        self._record_soon()
        return await following

    def _record_soon(self) -> None:
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record_rounds(), name="delivery-records")

    async def _record_rounds(self) -> None:
        try:
            while self._accepted or self._claim_wanted:
                accepted, self._accepted = self._accepted, []
                claim_wanted, self._claim_wanted = self._claim_wanted, False
                limit, exclude = 0, set[int]()
                if self._stop is not None and not self._stop.is_set():
                    # A mailbox released in this round may be claimed again in it: it is done once recorded.
                    released = {one.mailbox_id for one in accepted if not one.batch.full}
                    if claim_wanted or released:
                        limit = self._concurrency - len(self._active) + len(released)
                        exclude = set(self._active) - released
                if accepted or limit > 0:  # every place taken: a wake has nothing to claim for
                    await self._round(accepted, limit, exclude)
        finally:
            self._recorder = None

    async def _round(self, accepted: list[_Accepted], limit: int, exclude: set[int]) -> None:
        """Record these batches, and claim up to `limit` due mailboxes, in one transaction; refused, each batch
        alone, so that one batch the database refuses costs no other mailbox its delivery."""
        now = self._clock()
        try:
            following, claimed = await self._db.run(
                partial(
                    record_delivered,
                    delivered=[(one.mailbox_id, one.batch) for one in accepted],
                    owner=self._owner,
                    now=now,
                    until=now + self._timing.lease,
                    batch_size=self._batch_size,
                    claim=limit,
                    exclude=exclude,
                )
            )
        except Exception as exc:
            if len(accepted) + (limit > 0) > 1:
                for one in accepted:
                    await self._round([one], 0, set())
                self._claim_wanted = self._claim_wanted or limit > 0
            elif accepted:
                if not accepted[0].following.done():
                    accepted[0].following.set_exception(exc)
            elif limit > 0:  # the database may be away for a while; the loop must outlive it
                self._outages.failed("database", f"delivery cannot read the outbox ({type(exc).__name__}: {exc})")
            return
        if limit > 0:
            self._outages.recovered("database", "delivery reads the outbox again")
        for one, batch in zip(accepted, following, strict=True):
            if limit > 0 and not one.batch.full:  # its place was counted free for this round's claim
                self._places_given.add(one.mailbox_id)
            if not one.following.done():  # its drain may have been cancelled meanwhile
                one.following.set_result(batch)
        for mailbox_id, batch in claimed:
            self._start(mailbox_id, batch)

    async def _record_failure(self, mailbox_id: int, batch: _Batch, failure: _Failure) -> None:
        self._outages.failed("webhook", f"workforce webhook {self._url} {failure.reason}; changes are kept and retried")
        now = self._clock()
        next_attempt_at = now + retry_delay(batch.attempts + 1, self._timing, random.random())
        await self._db.run(
            partial(
                _failed,
                mailbox_id=mailbox_id,
                row_ids=batch.row_ids,
                owner=self._owner,
                error=failure.detail,
                next_attempt_at=next_attempt_at,
            )
        )

    async def _post(self, batch: _Batch) -> _Failure | None:
        assert self._url is not None
        body = webhook_body(batch.changes)
        headers = signed_headers(self._key, message_id(batch.change_ids), self._clock(), body)
        timeout = aiohttp.ClientTimeout(total=self._timing.timeout.total_seconds())
        try:
            # Redirects are not followed: a POST turned into a GET elsewhere would count as delivered.
            async with self._session().post(
                self._url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return None
                said = (await response.content.read(_ERROR_EXCERPT)).decode("utf-8", "replace").strip()
                reason = f"answered {response.status} {response.reason or ''}".rstrip() + refusal_hint(response.status)
                return _Failure(reason, f"{reason}: {said}" if said else reason, str(response.status))
        except TimeoutError:
            reason = f"did not answer within {self._timing.timeout.total_seconds():g} s"
            return _Failure(reason, reason, "timeout")
        except aiohttp.ClientError as exc:
            unreachable = f"unreachable: {type(exc).__name__}: {exc}"
            return _Failure(f"is unreachable ({type(exc).__name__})", unreachable, "unreachable")

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http


# -- units of work (each runs in one transaction) ------------------------------------------------------------

# The statements run for every mailbox and batch are built once, with their values as parameters (building one
# costs several times what executing it does); they go to the tables, not through the ORM.
_MAILBOX = MailboxRow.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
_NOW = sa.bindparam("now", type_=UTCDateTime())
_UNTIL = sa.bindparam("until", type_=UTCDateTime())
_OWNER = sa.bindparam("owner", type_=sa.String())
_ID = sa.bindparam("mailbox", type_=sa.Integer())
_ROW_IDS: sa.BindParameter[list[int]] = sa.bindparam("row_ids", expanding=True)
_HELD = sa.and_(_MAILBOX.c.id == _ID, _MAILBOX.c.delivery_owner == _OWNER)

# Mailboxes with changes waiting (`next_sequence` is raised in the transaction that adds them), whose back-off is
# over and whose lease is free; read from the partial index ix_mailbox_undelivered, so a claim reads the mailboxes
# it may take, not the outbox: served longest ago (or never) first.
_DUE = (
    sa.select(_MAILBOX.c.id, _MAILBOX.c.next_sequence)
    .where(
        _MAILBOX.c.next_sequence > _MAILBOX.c.delivered_sequence + 1,
        _MAILBOX.c.delivery_due_at <= _NOW,
        sa.or_(
            _MAILBOX.c.delivery_lease_until.is_(None),
            _MAILBOX.c.delivery_lease_until < _NOW,
            # The same instance restarted: its old leases are its own (`exclude` keeps live work apart).
            _MAILBOX.c.delivery_owner == _OWNER,
        ),
        # Mailboxes this instance is still working: its lease may have lapsed during a stalled request.
        _MAILBOX.c.id.not_in(sa.bindparam("exclude", expanding=True)),
    )
    .order_by(_MAILBOX.c.delivery_due_at, _MAILBOX.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
    .with_for_update(skip_locked=True, key_share=True)
)
_LEASE = (
    sa.update(_MAILBOX)
    .where(_MAILBOX.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(delivery_owner=_OWNER, delivery_lease_until=_UNTIL)
)
# Nothing left to send below `next_sequence` (retention pruned changes made without a webhook): caught up.
_CAUGHT_UP = (
    sa.update(_MAILBOX)
    .where(_MAILBOX.c.id == _ID)
    .values(delivered_sequence=sa.bindparam("seen_next", type_=sa.Integer()) - 1)
)
_BATCH = (
    sa.select(
        _OUTBOX.c.id,
        _OUTBOX.c.change_id,
        _OUTBOX.c.sequence,
        # As the JSON text it is kept as: the body is made of it, and decoding it only to encode it again cost as
        # much as the statement.
        sa.cast(_OUTBOX.c.payload, sa.Text).label("payload"),
        _OUTBOX.c.attempts,
        _OUTBOX.c.source_modified_at,
    )
    .where(_OUTBOX.c.mailbox_id == _ID, _OUTBOX.c.delivered_at.is_(None))
    .order_by(_OUTBOX.c.sequence)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
)
_SEQUENCE = sa.bindparam("last", type_=sa.Integer())  # not "sequence": a column of the outbox's
_MARK_DELIVERED = (
    sa.update(_OUTBOX)
    .where(
        _OUTBOX.c.mailbox_id == _ID,
        _OUTBOX.c.sequence.between(sa.bindparam("first", type_=sa.Integer()), _SEQUENCE),
        _OUTBOX.c.delivered_at.is_(None),
    )
    .values(delivered_at=_NOW, attempts=_OUTBOX.c.attempts + 1)
)
_DELIVERED_RENEW = sa.update(_MAILBOX).where(_HELD).values(delivered_sequence=_SEQUENCE, delivery_lease_until=_UNTIL)
# The mailbox's turn comes again after every other mailbox waiting since before `now`.
_DELIVERED_RELEASE = (
    sa.update(_MAILBOX)
    .where(_HELD)
    .values(delivered_sequence=_SEQUENCE, delivery_owner=None, delivery_lease_until=None, delivery_due_at=_NOW)
)
_RELEASE = sa.update(_MAILBOX).where(_HELD).values(delivery_owner=None, delivery_lease_until=None)
# Released rather than held through the back-off: `delivery_due_at` already keeps every instance away.
_HOLD = sa.update(_MAILBOX).where(_HELD).values(delivery_owner=None, delivery_lease_until=None, delivery_due_at=_UNTIL)
_FAILED = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(_ROW_IDS), _OUTBOX.c.delivered_at.is_(None))
    .values(attempts=_OUTBOX.c.attempts + 1, last_error=sa.bindparam("error"), next_attempt_at=_UNTIL)
)
_BACK_OFF = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.mailbox_id == _ID, _OUTBOX.c.delivered_at.is_(None))
    .values(next_attempt_at=_UNTIL)
)
_RESUME_OUTBOX = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.delivered_at.is_(None), _OUTBOX.c.next_attempt_at > _NOW)
    .values(next_attempt_at=_NOW)
)
_RESUME_MAILBOXES = sa.update(_MAILBOX).where(_MAILBOX.c.delivery_due_at > _NOW).values(delivery_due_at=_NOW)


def claim_due(
    session: Session, *, owner: str, now: datetime, until: datetime, limit: int, exclude: set[int], batch_size: int
) -> list[tuple[int, _Batch]]:
    """Lease up to `limit` mailboxes with changes due, served longest ago first; each with its first batch.

    A mailbox backing off is not due: only its oldest changes are ever sent, so a batch that failed holds back
    everything queued behind it.
    """
    connection = session.connection()
    due = connection.execute(_DUE, {"now": now, "owner": owner, "exclude": sorted(exclude), "limit": limit}).all()
    claimed = []
    for mailbox_id, next_sequence in due:
        batch = _read_batch(connection, mailbox_id, batch_size)
        if batch is None:
            connection.execute(_CAUGHT_UP, {"mailbox": mailbox_id, "seen_next": next_sequence})
        else:
            claimed.append((mailbox_id, batch))
    if claimed:
        connection.execute(_LEASE, {"ids": [mailbox_id for mailbox_id, _ in claimed], "owner": owner, "until": until})
    return claimed


def release(session: Session, *, mailbox_id: int, owner: str) -> None:
    """Give the mailbox's delivery lease back, if `owner` still holds it."""
    session.connection().execute(_RELEASE, {"mailbox": mailbox_id, "owner": owner})


def _read_batch(connection: sa.Connection, mailbox_id: int, limit: int) -> _Batch | None:
    rows = connection.execute(_BATCH, {"mailbox": mailbox_id, "limit": limit}).all()
    if not rows:
        return None
    # Column by column in one step: reading each row's fields by name cost as much as the statement.
    row_ids, change_ids, sequences, payloads, attempts, modified_at = zip(*rows, strict=True)
    return _Batch(
        row_ids=row_ids,
        change_ids=change_ids,
        changes=payloads,
        attempts=max(attempts),
        modified_at=modified_at,
        first_sequence=sequences[0],
        last_sequence=sequences[-1],
        full=len(rows) == limit,
    )


def record_delivered(
    session: Session,
    *,
    delivered: Sequence[tuple[int, _Batch]],
    owner: str,
    now: datetime,
    until: datetime,
    batch_size: int,
    claim: int,
    exclude: set[int],
) -> tuple[list[_Batch | None], list[tuple[int, _Batch]]]:
    """Mark these mailboxes' batches delivered, each with its mailbox's next batch (or None: lease released, when
    none is due or another instance took the mailbox); then claim up to `claim` due mailboxes (`claim_due`).

    After a batch shorter than `batch_size` the mailbox is released without reading on: a change committed since
    has raised `next_sequence`, so the mailbox stays due, and the commit's notify() (or this very claim) has it
    claimed again.
    """
    connection = session.connection()
    following: list[_Batch | None] = []
    if delivered:
        # A batch is every undelivered change of its mailbox from its first sequence to its last: no change can
        # join that range later, since a mailbox's sequences are handed out in order, each change's above every
        # committed one's.
        held = [
            {
                "mailbox": mailbox_id,
                "owner": owner,
                "first": batch.first_sequence,
                "last": batch.last_sequence,
                "now": now,
            }
            for mailbox_id, batch in delivered
        ]
        connection.execute(_MARK_DELIVERED, held)
        done = [one for one, (_, batch) in zip(held, delivered, strict=True) if not batch.full]
        if done:
            connection.execute(_DELIVERED_RELEASE, done)
        following = [
            _renewed(connection, one, until=until, limit=batch_size) if batch.full else None
            for one, (_, batch) in zip(held, delivered, strict=True)
        ]
    claimed = (
        claim_due(session, owner=owner, now=now, until=until, limit=claim, exclude=exclude, batch_size=batch_size)
        if claim > 0
        else []
    )
    return following, claimed


def _renewed(connection: sa.Connection, held: dict[str, Any], *, until: datetime, limit: int) -> _Batch | None:
    """The next batch of a mailbox whose full batch was just marked delivered, its lease renewed; None when the
    lease is another instance's now, or nothing is due (the mailbox released)."""
    if not connection.execute(_DELIVERED_RENEW, {**held, "until": until}).rowcount:
        return None
    following = _read_batch(connection, held["mailbox"], limit)
    if following is None:
        connection.execute(_DELIVERED_RELEASE, held)
    return following


def _resume(session: Session, *, now: datetime) -> None:
    """Every mailbox and undelivered change backing off is due now."""
    session.connection().execute(_RESUME_OUTBOX, {"now": now})
    session.connection().execute(_RESUME_MAILBOXES, {"now": now})


def _back_off(session: Session, *, mailbox_id: int, owner: str, until: datetime) -> None:
    """Hold all of the mailbox's undelivered changes until `until` and give its lease back."""
    session.connection().execute(_BACK_OFF, {"mailbox": mailbox_id, "until": until})
    session.connection().execute(_HOLD, {"mailbox": mailbox_id, "owner": owner, "until": until})


def _failed(
    session: Session,
    *,
    mailbox_id: int,
    row_ids: Sequence[int],
    owner: str,
    error: str,
    next_attempt_at: datetime,
) -> None:
    session.connection().execute(_FAILED, {"row_ids": row_ids, "error": error, "until": next_attempt_at})
    session.connection().execute(_HOLD, {"mailbox": mailbox_id, "owner": owner, "until": next_attempt_at})
