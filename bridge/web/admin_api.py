"""Administration over REST (scope `admin`): the mailboxes and the template mapping, as the CLI manages them.

The mailbox routes call what `presence-bridge mailboxes ...` calls (bridge.admin), each in one transaction, so a
refused request writes nothing. The mapping file is replaced only by text that loads as a valid mapping, by an
atomic rename, and is put in force at once instead of at the watcher's next poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from msgspec import UnsetType
from sqlmodel import Session

from bridge import admin, roster
from bridge.admin import MailboxView
from bridge.config import Config
from bridge.domain import MAIL_ADDRESS, iso_utc
from bridge.errors import UserError
from bridge.group_roster import GroupFollower, NoGroup
from bridge.mapping_change import not_editable
from bridge.roster import RosterRefused, RosterRow
from bridge.sources.base import CalendarSource, SourceError
from bridge.store import Database
from bridge.store.mapping_state import HeldMapping, approve_held, held_mapping
from bridge.store.work import find_mailbox
from bridge.templates import LiveMapping, TemplateMapping, default_mapping_path, write_mapping_file
from bridge.web.bodies import Invalid, S, decode, invalid_request, read_json, read_limited, supplied, too_large
from bridge.web.problems import problem
from bridge.web.schemas import ApplyMapping, Disable, GroupSync, NewMailbox, Roster

log = logging.getLogger(__name__)

T = TypeVar("T")
OnMappingChange = Callable[[TemplateMapping, TemplateMapping], Awaitable[None]]

MAX_BODY = 16 * 1024  # a mailbox request is a few short fields
MAX_MAPPING = 256 * 1024
MAPPING_TYPES = frozenset({"application/yaml", "text/yaml", "text/plain"})
MAX_ROSTER = 4 * 1024 * 1024  # 10,000 rows of address and workforce id take well under 1 MiB
# A message of jsonschema's about the whole document starts with the value's repr (a quote, a bracket, a brace);
# a dotted path never does, which tells "path: message" from a message that merely holds a colon.
_PATH_FIRST = re.compile(r"(?P<path>[^\s'\"\[{(][^:]*?): (?P<message>.*)", re.DOTALL)
_MISSING = re.compile(r"'(?P<key>[^']+)' is a required property")


class AdminRoutes:
    def __init__(
        self,
        db: Database,
        config: Config,
        mapping: Callable[[], TemplateMapping],
        *,
        live: LiveMapping | None = None,
        on_mapping_change: OnMappingChange | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sources: Mapping[str, CalendarSource] | None = None,
        groups: GroupFollower | None = None,
    ) -> None:
        self._db = db
        self._groups = groups
        self._sources = sources or {}
        self._config = config
        self._mapping = mapping
        self._live = live
        self._on_mapping_change = on_mapping_change
        self._clock = clock
        # One edit at a time, so that each PUT answers with the mapping it wrote.
        self._editing = asyncio.Lock()

    # -- mailboxes ---------------------------------------------------------------------------------------------

    async def mailboxes(self, request: web.Request) -> web.StreamResponse:
        views = await self._db.run(admin.list_mailboxes)
        return web.json_response({"mailboxes": [_view_json(view) for view in views]})

    async def add(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request, MAX_BODY)
        if isinstance(body, web.Response):
            return body
        invalid: Invalid = []
        given = decode(body, NewMailbox, invalid)
        if given is None:
            return invalid_request(invalid)
        address, workforce_id = given.address.strip(), given.workforce_id.strip()
        if not MAIL_ADDRESS.fullmatch(address):
            invalid.append({"name": "address", "reason": "not a mail address"})
        if not workforce_id:
            invalid.append({"name": "workforce_id", "reason": "a non-empty string"})
        source = self._source(given.source, invalid)
        if invalid or source is None:
            return invalid_request(invalid)  # a None source has its entry in `invalid`
        now = self._clock()

        def add(session: Session) -> MailboxView:
            admin.add_mailbox(session, address, workforce_id, source, now)
            return _view(session, address)

        try:
            view = await self._db.run(add)
        except UserError as exc:  # mirrored already, or another active mailbox has the workforce id
            return problem(409, "Conflict", exc.summary)
        log.info("mailbox %s added through the admin API", view.address)
        return web.json_response(_view_json(view), status=201)

    async def import_roster(self, request: web.Request) -> web.StreamResponse:
        """A whole roster at once, as `mailboxes import`: checked whole, written in one transaction or not at all."""
        body = await read_json(request, MAX_ROSTER)
        if isinstance(body, web.Response):
            return body
        invalid: Invalid = []
        given = decode(body, Roster, invalid)
        if given is None:
            return invalid_request(invalid)
        rows = [
            RosterRow(f"mailboxes[{index}]", _text(entry.address), _text(entry.workforce_id), supplied(entry.source))
            for index, entry in enumerate(given.mailboxes)
        ]
        try:
            planned = await self.enrol(rows, dry_run=given.dry_run, check=given.check_exchange)
        except RosterRefused as exc:
            return invalid_request([_row_problem(text) for text in exc.problems])
        return web.json_response(_roster_json(planned, given.dry_run))

    async def sync_group(self, request: web.Request) -> web.StreamResponse:
        """The source's group read and followed now, as at each refresh; with dry_run only reported."""
        given = await _small_body(request, GroupSync)
        if isinstance(given, web.Response):
            return given
        dry_run = given.dry_run
        source = request.match_info["source"]
        if self._groups is None:
            return problem(404, "Not Found", f"source {source} has no group (sources.{source}.group)")
        try:
            planned = await self._groups.sync(source, dry_run=dry_run)
        except NoGroup:
            return problem(404, "Not Found", f"source {source} has no group (sources.{source}.group)")
        except SourceError as exc:
            return problem(503, "Service Unavailable", f"the group of source {source} could not be read: {exc}")
        if not dry_run:
            log.info(
                "group of source %s followed through the admin API: %s",
                source,
                roster.describe(planned, dry_run=False)[-1],
            )
        return web.json_response(
            _roster_json(planned, dry_run)
            | {
                "removed": [e.address for e in planned.removed],
                "skipped": [_row_problem(line) for line in planned.skipped],
            }
        )

    async def enrol(self, rows: Sequence[RosterRow], *, dry_run: bool, check: bool) -> roster.RosterPlan:
        """What the roster does, done unless `dry_run`; `RosterRefused` lists every problem and nothing is written.
        With `check`, Exchange is asked first whether it knows the mailboxes the roster would start syncing."""
        now, sources = self._clock(), list(self._config.sources)
        if check:
            # Exchange is asked outside any transaction (it may take a while); the roster is planned again after.
            first = await self._db.run(lambda session: roster.plan(session, rows, sources))
            refused = await roster.unknown_to_exchange(self._sources, first)
            if refused:
                raise RosterRefused(f"Exchange refuses {len(refused)} mailbox(es); nothing was changed", refused)

        def enrol(session: Session) -> roster.RosterPlan:
            planned = roster.plan(session, rows, sources)
            if not dry_run:
                roster.apply(session, planned, now)
            return planned

        planned = await self._db.run(enrol)
        if not dry_run:
            log.info("roster imported through the admin API: %s", roster.describe(planned, dry_run=False)[-1])
        return planned

    async def enable(self, request: web.Request) -> web.StreamResponse:
        return _mailbox_answer(request, await self.enable_mailbox(request.match_info["mailbox"]))

    async def disable(self, request: web.Request) -> web.StreamResponse:
        given = await _small_body(request, Disable)
        if isinstance(given, web.Response):
            return given
        reason = supplied(given.reason)
        if reason is not None and not reason.strip():
            return invalid_request([{"name": "reason", "reason": "a non-empty string"}])
        reason = (reason or "").strip() or "disabled by an administrator"
        return _mailbox_answer(request, await self.disable_mailbox(request.match_info["mailbox"], reason))

    async def resync(self, request: web.Request) -> web.StreamResponse:
        return _mailbox_answer(request, await self.resync_mailbox(request.match_info["mailbox"]))

    async def remove(self, request: web.Request) -> web.StreamResponse:
        done = await self.remove_mailbox(request.match_info["mailbox"])
        if done is None:
            return _unknown_mailbox(request)
        deleted, view = done
        return web.json_response({"mailbox": _view_json(view), "deleted_changes": deleted})

    # What the routes above do, for the admin page too; None: the bridge knows no such mailbox.

    async def enable_mailbox(self, address: str) -> MailboxView | None:
        now = self._clock()
        return _second(await self._change(address, lambda session, address: admin.enable(session, address, now)))

    async def disable_mailbox(self, address: str, reason: str) -> MailboxView | None:
        return _second(await self._change(address, lambda session, address: admin.disable(session, address, reason)))

    async def resync_mailbox(self, address: str) -> MailboxView | None:
        now = self._clock()
        return _second(await self._change(address, lambda session, address: admin.resync(session, address, now)))

    async def remove_mailbox(self, address: str) -> tuple[int, MailboxView] | None:
        """Emit a deletion of every appointment shown and forget the calendar: how many deletions were emitted."""
        mapping, now = self._mapping(), self._clock()
        done = await self._change(address, lambda session, address: admin.remove(session, address, mapping, now))
        if done is not None:
            log.info("mailbox %s removed through the admin API: %d deletions emitted", done[1].address, done[0])
        return done

    def _source(self, given: str | UnsetType, invalid: Invalid) -> str | None:
        known = list(self._config.sources)
        if isinstance(given, UnsetType):
            if len(known) == 1:
                return known[0]  # as `mailboxes add` without --source: the one source there is
            invalid.append({"name": "source", "reason": "required"})
            return None
        source = given.strip()
        if source not in known:
            invalid.append({"name": "source", "reason": f"names no configured source; configured: {', '.join(known)}"})
            return None
        return source

    async def _change(self, address: str, action: Callable[[Session, str], T]) -> tuple[T, MailboxView] | None:
        def change(session: Session) -> tuple[T, MailboxView] | None:
            if find_mailbox(session, address) is None:
                return None
            outcome = action(session, address)
            return outcome, _view(session, address)

        return await self._db.run(change)

    # -- the template mapping ----------------------------------------------------------------------------------

    async def templates(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self._templates_json())

    async def replace_templates(self, request: web.Request) -> web.StreamResponse:
        refusal = self._not_editable()
        if refusal is not None:
            return problem(409, "Conflict", refusal)
        assert self._live is not None
        if request.content_type not in MAPPING_TYPES:
            types = ", ".join(sorted(MAPPING_TYPES))
            return problem(415, "Unsupported Media Type", f"send the mapping file's text as one of: {types}")
        raw = await read_limited(request, MAX_MAPPING)
        if raw is None:
            return too_large(MAX_MAPPING)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return invalid_request([{"name": "body", "reason": "is not UTF-8 text"}])
        async with self._editing:
            # The file in force, not a symlink to it: the rename must land beside it, in the same file system.
            target = self._live.path.resolve()
            problems = await asyncio.to_thread(_install, target, raw)
            if problems:
                return problem(400, "Bad Request", "the template mapping is not valid", invalid_params=problems)
            log.info("template mapping %s replaced through the admin API", target)
            await self._apply()
            return web.json_response(await self._templates_json())

    async def apply_templates(self, request: web.Request) -> web.StreamResponse:
        """Confirm the held change of mapping (`presence-bridge templates apply` does the same) and apply it."""
        given = await _small_body(request, ApplyMapping)
        if isinstance(given, web.Response):
            return given
        wanted = supplied(given.digest)
        wanted = None if wanted is None else wanted.strip()
        held = await self._db.run(held_mapping)
        if held is None:
            return problem(409, "Conflict", "no change of the template mapping is held")
        if wanted is not None and wanted != held.digest:
            return problem(409, "Conflict", f"the change held is another one: digest {held.digest}")
        now = self._clock()
        await self._db.run(lambda session: approve_held(session, held.digest, "the admin API", now))
        log.warning("held template mapping change %s confirmed through the admin API", held.digest[:12])
        if self._live is not None:
            await self._remap(self._live.current)
        return web.json_response(await self._templates_json())

    async def _apply(self) -> None:
        assert self._live is not None
        old = self._live.current
        # This reload also records the file's digest, so the watcher will not see the edit as new: the re-map the
        # watcher would have run is run here.
        if self._live.reload():
            await self._remap(old)

    async def _remap(self, old: TemplateMapping) -> None:
        assert self._live is not None
        if self._on_mapping_change is None:
            return
        try:
            await self._on_mapping_change(old, self._live.latest)
        except Exception:
            # The new mapping is written; as after the watcher's re-map (LiveMapping.watch), the next reconcile
            # re-maps what this missed. The edit (or confirmation) itself succeeded, so the answer says so.
            log.exception("re-mapping after a change of the template mapping failed")

    def _not_editable(self) -> str | None:
        return not_editable(self._config.templates, self._live)

    async def _templates_json(self) -> dict[str, Any]:
        body = await asyncio.to_thread(self._mapping_json)
        held = await self._db.run(held_mapping)
        body["held"] = None if held is None else _held_json(held)
        return body

    def _mapping_json(self) -> dict[str, Any]:
        path = self._live.path if self._live is not None else (self._config.templates or default_mapping_path())
        mapping = self._live.current if self._live is not None else self._mapping()
        return {
            "path": str(path),
            "editable": self._not_editable() is None,
            # The file as it is now, which is what an editor starts from, even when an invalid hand edit left the
            # previous mapping in force.
            "yaml": path.read_text(encoding="utf-8", errors="replace"),
            "templates": sorted(mapping.templates),
            "days_ahead": mapping.days_ahead,
            "ignore_prefix": mapping.ignore_prefix,
        }


def _install(target: Path, raw: bytes) -> Invalid:
    """Put `raw` in `target`'s place if it loads as a valid mapping; what is wrong with it otherwise."""
    try:
        write_mapping_file(target, raw)
    except UserError as exc:
        return _mapping_problems(exc, target.name)
    return []


def _mapping_problems(error: UserError, file_name: str) -> Invalid:
    """The `FILE:LINE[:COLUMN]: [dotted.path: ]message` problems of a mapping as named invalid parameters."""
    head = re.compile(re.escape(file_name) + r"(?::(?P<line>\d+))?(?::(?P<column>\d+))?: (?P<rest>.*)", re.DOTALL)
    invalid = []
    for text in error.problems or (error.summary,):
        found = head.fullmatch(text)
        if found is None:
            invalid.append({"name": "body", "reason": text.replace(file_name, "the mapping")})
            continue
        where = f"line {found['line']}: " if found["line"] else ""
        if found["column"]:
            where = f"line {found['line']}, column {found['column']}: "
        # A syntax error (it has a column) names no path; otherwise a problem names one unless it is about the
        # whole document.
        named = None if found["column"] else _PATH_FIRST.fullmatch(found["rest"])
        path, message = (named["path"], named["message"]) if named else (None, found["rest"])
        missing = _MISSING.fullmatch(message)
        if missing:
            path = f"{path}.{missing['key']}" if path else missing["key"]
        invalid.append({"name": path or "body", "reason": where + message})
    return invalid


def _held_json(held: HeldMapping) -> dict[str, Any]:
    return {"digest": held.digest, "since": iso_utc(held.since), "approved": held.approved, **held.preview}


async def _small_body(request: web.Request, kind: type[S]) -> S | web.Response:
    """An optional JSON body of a few fields (none given: every field's default), or the problem answer."""
    body = await read_json(request, MAX_BODY, optional=True)
    if isinstance(body, web.Response):
        return body
    invalid: Invalid = []
    given = decode(body, kind, invalid)
    return invalid_request(invalid) if given is None else given


def _roster_json(planned: roster.RosterPlan, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "added": [e.address for e in planned.added],
        "reenabled": [e.address for e in planned.reenabled],
        "updated": [e.address for e in planned.updated],
        "unchanged": planned.unchanged,
    }


def _row_problem(text: str) -> dict[str, str]:
    where, _, reason = text.partition(": ")
    return {"name": where, "reason": reason}


def _second(done: tuple[Any, MailboxView] | None) -> MailboxView | None:
    return None if done is None else done[1]


def _mailbox_answer(request: web.Request, view: MailboxView | None) -> web.Response:
    return _unknown_mailbox(request) if view is None else web.json_response(_view_json(view))


def _unknown_mailbox(request: web.Request) -> web.Response:
    return problem(404, "Not Found", f"the bridge knows no mailbox {request.match_info['mailbox']}")


def _view(session: Session, address: str) -> MailboxView:
    # Built by list_mailboxes, the CLI's view, so that both show a mailbox by the same rules (what `dirty` means).
    session.flush()
    return next(view for view in admin.list_mailboxes(session) if view.address == address.lower())


def _view_json(view: MailboxView) -> dict[str, Any]:
    body = dataclasses.asdict(view)
    body["last_synced_at"] = iso_utc(view.last_synced_at) if view.last_synced_at else None
    return body


# -- reading and answering -----------------------------------------------------------------------------------


def _text(value: str | UnsetType) -> str:
    """A roster field as the roster's planner reads it: left out is empty, which it refuses with its reason."""
    return "" if isinstance(value, UnsetType) else value
