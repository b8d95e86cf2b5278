"""The template mapping: which Exchange appointments the workforce system sees, as which template, and back.

A mapping is data an administrator edits (`templates_map/*.yaml`, docs/templates.md) and is reloaded while the
bridge runs (DESIGN §3.5). Applying it is pure: `map` decides per appointment (DESIGN §3.6), `timeline` resolves
overlaps by precedence, `state_end` says when a "current state" appointment ends.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import heapq
import itertools
import logging
import os
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from bridge.domain import Appointment, FreeBusy, MirrorItem, PresenceEntry, Segment, Window, utc
from bridge.errors import UserError
from bridge.yamlfile import (
    DurationTooLong,
    YamlDocument,
    as_dict,
    load_schema,
    load_yaml,
    parse_duration,
    schema_problems,
)
from bridge.zones import UTC_ZONE, local_date, local_midnight

log = logging.getLogger(__name__)

SHOWABLE = (FreeBusy.OOF, FreeBusy.BUSY, FreeBusy.WORKING_ELSEWHERE, FreeBusy.TENTATIVE)
DEFAULT_PRECEDENCE = SHOWABLE
_DAY = timedelta(days=1)


class EndOfDay(enum.Enum):
    """`state_until: end_of_day`: the state lasts until the next midnight in the person's time zone."""

    END_OF_DAY = "end_of_day"


END_OF_DAY = EndOfDay.END_OF_DAY
StateUntil = Literal[EndOfDay.END_OF_DAY] | timedelta


class UnknownTemplate(LookupError):
    """The workforce system named a template the mapping does not define."""

    def __init__(self, template: str, known: Iterable[str]) -> None:
        self.template = template
        self.known = tuple(sorted(known))
        super().__init__(f"unknown template {template!r} (the mapping defines: {', '.join(self.known)})")


class Outcome(enum.StrEnum):
    """What the workforce system sees of an appointment."""

    SHOWN = "shown"
    SHOWN_WITHOUT_SUBJECT = "shown without subject"
    HIDDEN = "hidden"


class Rule(enum.StrEnum):
    """The rule of docs/templates.md ("What is shown") that decided, in the few words the demo prints."""

    IGNORE_PREFIX = "ignore character"
    FREE = "free: never shown"
    NO_TEMPLATE = "no template"
    PRIVATE = "private"
    SHOW = "show"


@dataclass(frozen=True, slots=True)
class Decision:
    """The mapping's decision for one appointment: the outcome, the rule that made it and the template shown."""

    outcome: Outcome
    rule: Rule
    free_busy: FreeBusy
    template: str | None = None

    @property
    def short(self) -> str:
        return f"{self.free_busy.value}: no template" if self.rule is Rule.NO_TEMPLATE else self.rule.value


@dataclass(frozen=True, slots=True)
class TemplateRule:
    """How the bridge writes one workforce template into Exchange."""

    name: str
    show_as: FreeBusy
    category: str | None = None
    all_day: bool = False
    state_until: StateUntil = END_OF_DAY
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateMapping:
    """One valid mapping file, as loaded by `load_mapping` (docs/templates.md describes each field)."""

    ignore_prefix: str
    days_ahead: int
    show: Mapping[FreeBusy, str]
    templates: Mapping[str, TemplateRule]
    precedence: tuple[FreeBusy, ...]

    def decide(self, subject: str, free_busy: FreeBusy, *, private: bool = False) -> Decision:
        """Whether an appointment is shown, as which template, with or without its subject, and by which rule.

        The one decision `map` applies and the admin page's Explain reports (DESIGN §3.6), so the two cannot drift.
        """
        # Outlook users type " *private" as often as "*private", and both mean "don't show this".
        if subject.lstrip().startswith(self.ignore_prefix):
            return Decision(Outcome.HIDDEN, Rule.IGNORE_PREFIX, free_busy)
        if free_busy is FreeBusy.FREE:
            return Decision(Outcome.HIDDEN, Rule.FREE, free_busy)
        template = self.show.get(free_busy)
        if template is None:
            return Decision(Outcome.HIDDEN, Rule.NO_TEMPLATE, free_busy)
        if private:
            return Decision(Outcome.SHOWN_WITHOUT_SUBJECT, Rule.PRIVATE, free_busy, template)
        return Decision(Outcome.SHOWN, Rule.SHOW, free_busy, template)

    def why_hidden(self, subject: str, free_busy: FreeBusy) -> str | None:
        """Why an appointment with this subject and state is not shown (a few words), or None when it is."""
        decision = self.decide(subject, free_busy)
        return None if decision.template is not None else decision.short

    def map(self, appointment: Appointment) -> PresenceEntry | None:
        """The appointment as the workforce system sees it, or None when it is not shown."""
        decision = self.decide(appointment.subject, appointment.free_busy, private=appointment.private)
        if decision.template is None:
            return None
        return PresenceEntry(
            item_id=appointment.item_id,
            template=decision.template,
            free_busy=appointment.free_busy,
            start=appointment.start,
            end=appointment.end,
            all_day=appointment.all_day,
            subject=None if decision.outcome is Outcome.SHOWN_WITHOUT_SUBJECT else appointment.subject,
        )

    def window(self, now: datetime) -> Window:
        """The window mirrored on `now`'s UTC day: [today 00:00 UTC, today + days_ahead 00:00 UTC)."""
        return Window.days_ahead(utc(now).date(), self.days_ahead)

    def mirror_item(self, appointment: Appointment) -> tuple[MirrorItem, PresenceEntry | None]:
        """The appointment as the mirror keeps it: with what it is shown as and that entry's digest."""
        entry = self.map(appointment)
        return MirrorItem(appointment, entry.template if entry else None, entry_hash(entry)), entry

    def rule(self, template: str) -> TemplateRule:
        try:
            return self.templates[template]
        except KeyError:
            raise UnknownTemplate(template, self.templates) from None

    def state_end(self, template: str, now: datetime, zone: str = UTC_ZONE) -> datetime:
        """When a current-state appointment for `template` starting `now` ends, unless the caller says otherwise.

        Days are the person's days (`zone`, IANA): `end_of_day` is their next midnight, and an all-day template's
        duration counts whole days from their today's midnight, on the calendar (a DST day has 23 or 25 hours).
        """
        rule, now = self.rule(template), utc(now)
        today = local_date(now, zone)
        if rule.state_until is END_OF_DAY:
            return local_midnight(today + _DAY, zone)
        if rule.all_day:
            return local_midnight(today + rule.state_until, zone)
        return now + rule.state_until

    def timeline(self, entries: Iterable[PresenceEntry], window: Window) -> list[Segment]:
        """Non-overlapping segments inside `window`; where entries overlap, the highest-precedence state wins.

        Ties go to the earlier start, then the smaller item id, so the result never depends on input order.
        """
        rank = {state: index for index, state in enumerate(self.precedence)}

        def priority(entry: PresenceEntry) -> tuple[int, datetime, str, datetime, str]:
            return (rank.get(entry.free_busy, len(rank)), entry.start, entry.item_id, entry.end, entry.template)

        inside = sorted((e for e in entries if e.start < e.end and window.overlaps(e.start, e.end)), key=priority)
        begin = [max(e.start, window.start) for e in inside]
        finish = [min(e.end, window.end) for e in inside]
        by_begin = sorted(range(len(inside)), key=begin.__getitem__)
        bounds = sorted({*begin, *finish})
        active: list[int] = []  # a heap of indexes into `inside`, whose order is priority order
        segments: list[Segment] = []
        entered = 0
        for here, after in itertools.pairwise(bounds):
            while entered < len(by_begin) and begin[by_begin[entered]] <= here:
                heapq.heappush(active, by_begin[entered])
                entered += 1
            while active and finish[active[0]] <= here:
                heapq.heappop(active)  # ended entries leave lazily, once they reach the top
            if not active:
                continue
            best = inside[active[0]]
            last = segments[-1] if segments else None
            if last and last.end == here and last.item_id == best.item_id and last.template == best.template:
                segments[-1] = Segment(last.start, after, last.template, last.free_busy, last.item_id)
            else:
                segments.append(Segment(here, after, best.template, best.free_busy, best.item_id))
        return segments


def entry_hash(entry: PresenceEntry | None) -> str:
    """A digest of exactly what the workforce system is shown; "" when nothing is shown.

    The sync engine emits a change only when this digest changes, not when Exchange merely bumped a change key.
    """
    if entry is None:
        return ""
    fields = (
        entry.template,
        entry.free_busy.value,
        entry.start.isoformat(),
        entry.end.isoformat(),
        "1" if entry.all_day else "0",
        "\x00" if entry.subject is None else entry.subject,
    )
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()[:32]


def default_mapping_path() -> Path:
    """The shipped mapping: inside the package in a wheel, at the repository's top in a source checkout."""
    packaged = Path(__file__).parent / "templates_map" / "default.yaml"
    if packaged.is_file():
        return packaged
    return Path(__file__).parent.parent / "templates_map" / "default.yaml"


def load_mapping(path: Path | str) -> TemplateMapping:
    """Read and check a mapping file; every problem, with its line, in one `UserError`."""
    path = Path(path)
    doc = load_yaml(path)
    problems = schema_problems(doc, load_schema(default_mapping_path().with_name("schema.json")))
    problems += _semantic_problems(doc)
    if problems:
        raise UserError(f"template mapping {path} is not valid", problems)
    return _build(doc.data)


def _semantic_problems(doc: YamlDocument) -> list[str]:
    # Runs alongside the schema, on data the schema may have rejected, so that one run reports everything.
    data = as_dict(doc.data)
    show, templates = as_dict(data.get("show")), as_dict(data.get("templates"))
    problems: list[str] = []
    for state, template in show.items():
        if state in SHOWABLE and isinstance(template, str) and template not in templates:
            problems.append(doc.problem(["show", state], f"template {template!r} is not defined under templates"))
    precedence = data.get("precedence")
    if isinstance(precedence, list):
        for index, state in enumerate(precedence):
            if state in precedence[:index]:
                problems.append(doc.problem(["precedence", index], f"{state!r} is listed twice"))
        missing = [state for state in show if state in SHOWABLE and state not in precedence]
        if missing:
            problems.append(doc.problem(["precedence"], f"shown states missing: {', '.join(map(str, missing))}"))
    for name, template in templates.items():
        spec = as_dict(template)
        problem = _state_until_problem(spec.get("state_until"), all_day=spec.get("all_day") is True)
        if problem:
            problems.append(doc.problem(["templates", name, "state_until"], problem))
    return problems


def _state_until_problem(until: Any, *, all_day: bool) -> str | None:
    if not isinstance(until, str) or until == END_OF_DAY.value:
        return None
    try:
        duration = parse_duration(until)
    except DurationTooLong as exc:
        return str(exc)
    except ValueError:
        return None  # the schema has said so already
    if duration <= timedelta(0):
        return "must be longer than zero"
    if all_day and duration % _DAY:
        return f"{until} is not a whole number of days, which an all-day template needs"
    return None


def _build(data: dict[str, Any]) -> TemplateMapping:
    templates = {
        name: TemplateRule(
            name=name,
            show_as=FreeBusy(spec["show_as"]),
            category=spec.get("category"),
            all_day=spec.get("all_day", False),
            state_until=_state_until(spec.get("state_until", END_OF_DAY.value)),
            subject=spec.get("subject"),
        )
        for name, spec in data["templates"].items()
    }
    return TemplateMapping(
        ignore_prefix=data.get("ignore_prefix", "*"),
        days_ahead=data.get("days_ahead", 90),
        show=MappingProxyType({FreeBusy(state): template for state, template in data["show"].items()}),
        templates=MappingProxyType(templates),
        precedence=tuple(FreeBusy(state) for state in data.get("precedence", DEFAULT_PRECEDENCE)),
    )


def _state_until(text: str) -> StateUntil:
    return END_OF_DAY if text == END_OF_DAY.value else parse_duration(text)


class LiveMapping:
    """The mapping currently in force for a file that an administrator may edit while the bridge runs.

    An invalid edit never replaces a working mapping: it is logged (once per distinct problem set) and the
    last valid mapping stays in force until the file is fixed. With `apply_on_reload=False` a valid edit is only
    read (`latest`): the owner decides when it goes in force (`put_in_force`), so that a change can be held for
    confirmation (bridge/mapping_change.py) while the mapping the mirror reflects stays in force.
    """

    def __init__(self, path: Path | str, *, apply_on_reload: bool = True) -> None:
        self.path = Path(path)
        self._apply_on_reload = apply_on_reload
        raw = _read(self.path)
        self._digest = _digest(raw)
        self._current = load_mapping(self.path)  # an invalid file at start-up stops the start (UserError)
        self._latest = self._current
        self._latest_text = (raw or b"").decode("utf-8", errors="replace")
        self._failure: str | None = None

    @property
    def current(self) -> TemplateMapping:
        return self._current

    @property
    def latest(self) -> TemplateMapping:
        """The newest valid mapping read from the file: `current` unless a change waits to be put in force."""
        return self._latest

    @property
    def latest_file(self) -> tuple[str, str]:
        """The SHA-256 (hex) and text of the file `latest` was read from."""
        return self._digest or "", self._latest_text

    def put_in_force(self, mapping: TemplateMapping) -> None:
        self._current = mapping

    def reload(self) -> bool:
        """Read the file again; True when a valid mapping different from `latest` was read (and, unless
        `apply_on_reload` is off, put in force)."""
        return self._take(_read_mapping(self.path, self._digest))

    async def watch(
        self, interval_s: float, on_change: Callable[[TemplateMapping, TemplateMapping], Awaitable[None]]
    ) -> None:
        """Poll the file every `interval_s` seconds; await `on_change(current, latest)` after each change, and at
        every poll while `latest` is not in force (a held change may have been confirmed meanwhile), forever.

        The file is read, hashed and parsed in a worker thread: a slow disk or share must not stall the event
        loop, which serves the webhooks. Only what was read is taken in on the loop, so no state is shared.
        An exception from `on_change` ends the watch with the new mapping already read: re-mapping is the
        caller's to retry (the reconcile does it anyway), not a reason to go back to the old mapping.
        """
        while True:
            await asyncio.sleep(interval_s)
            old = self._current
            reading = await asyncio.to_thread(_read_mapping, self.path, self._digest)
            if self._take(reading) or self._latest != self._current:
                await on_change(old, self._latest)

    def _take(self, reading: _MappingRead | None) -> bool:
        if reading is None or reading.digest == self._digest:  # the loop may have reloaded it meanwhile
            return False
        if isinstance(reading.loaded, UserError):
            failure = reading.loaded.render()
            if failure != self._failure:
                log.error("%s; keeping the mapping in force", failure)
            self._failure, self._digest = failure, reading.digest
            return False
        if self._failure is not None:
            log.info("template mapping %s is valid again", self.path)
        self._failure, self._digest = None, reading.digest
        self._latest_text = reading.text
        changed, self._latest = reading.loaded != self._latest, reading.loaded
        if self._apply_on_reload:
            self._current = reading.loaded
        if changed:
            log.info("template mapping %s reloaded", self.path)
        return changed


@dataclass(frozen=True)
class _MappingRead:
    """A mapping file read anew: its digest, its mapping (or its problems) and its text."""

    digest: str | None
    loaded: TemplateMapping | UserError
    text: str


def _read_mapping(path: Path, known_digest: str | None) -> _MappingRead | None:
    """The file as it is now, or None when its digest is still `known_digest`."""
    # The whole file is hashed on every call: it is a few hundred bytes, and mtime granularity can hide an
    # edit made within the same tick.
    raw = _read(path)
    digest = _digest(raw)
    if digest == known_digest:
        return None
    try:
        loaded: TemplateMapping | UserError = load_mapping(path)
    except UserError as exc:
        loaded = exc
    return _MappingRead(digest, loaded, (raw or b"").decode("utf-8", errors="replace"))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None  # gone for a moment (an editor saving by rename): load_mapping will report it if it stays


def _digest(raw: bytes | None) -> str | None:
    return None if raw is None else mapping_digest(raw)


def mapping_digest(raw: bytes) -> str:
    """The SHA-256 (hex) of a mapping file's bytes, as `LiveMapping` computes it: what a confirmation names."""
    return hashlib.sha256(raw).hexdigest()


def load_mapping_text(text: str, name: str = "mapping.yaml") -> TemplateMapping:
    """A mapping kept as text (the one the mirror reflects, stored in the database), loaded as a file would be."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        return load_mapping(path)


def write_mapping_file(target: Path, raw: bytes) -> None:
    """Put `raw` in `target`'s place if it loads as a valid mapping; UserError with every problem if not.

    It is checked as the file it will become, beside the target, so the rename that follows is atomic: the
    watcher and a restart see the old file or the new one, never half of one. Problems name `target`.
    """
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".new")
    candidate = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        try:
            load_mapping(candidate)
        except UserError as exc:

            def named(text: str) -> str:
                return text.replace(candidate.name, target.name)

            raise UserError(named(exc.summary), [named(problem) for problem in exc.problems]) from None
        # mkstemp makes the file private; the mapping keeps the permissions it had.
        os.chmod(candidate, stat.S_IMODE(target.stat().st_mode))
        os.replace(candidate, target)
    finally:
        candidate.unlink(missing_ok=True)
