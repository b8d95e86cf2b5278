"""`presence-bridge check`'s connection tests: every remote the configuration names, each finding said once.

A finding is `ok` only for what was tried and worked. What failed is either a problem (a setting, a permission, a
mailbox: an administrator must fix it) or unreachable (a refused connection, a timeout, a server error: it may
pass on a later try), which `check`'s exit code tells apart (docs/running.md).
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from bridge.config import Config, GraphSourceConfig, WorkforceConfig
from bridge.delivery import refusal_hint, signed_headers
from bridge.domain import ConnectionReport, iso_utc
from bridge.sources.base import CalendarSource, GroupDirectory, SourceError, Throttled, Unavailable
from bridge.sources.unreachable import why_unreachable

# A receiver should answer within 10 s (docs/workforce-webhook.md); the ping waits as long as a delivery does.
_PING_TIMEOUT_S = 10.0
_EXCERPT = 200


class Outcome(enum.Enum):
    OK = "ok"
    PROBLEM = "problem"  # to fix: the configuration, a permission, a mailbox
    UNREACHABLE = "unreachable"  # could not connect, or the other side failed: may pass later


@dataclass(frozen=True, slots=True)
class Finding:
    outcome: Outcome
    subject: str  # what was tested: "workforce", a source's name
    text: str


async def test_connections(config: Config, sources: dict[str, CalendarSource]) -> list[Finding]:
    """Every connection test, in the order an administrator reads them; `sources` are closed afterwards."""
    findings: list[Finding] = []
    try:
        # The database's test (it connects, and reports its migration state) joins here, ahead of the remotes.
        findings += await ping_workforce(config.workforce)
        for name, source in sources.items():
            sender = config.mail.sender if config.mail is not None and config.mail.source == name else None
            mailboxes = tuple(m.address for m in config.mailboxes_for(name))
            findings += _from_report(await source.test_connection(mailboxes, sender=sender))
            settings = config.sources.get(name)
            if isinstance(settings, GraphSourceConfig) and settings.group and isinstance(source, GroupDirectory):
                findings.append(await _read_group(source, settings.group.id))
    finally:
        for source in sources.values():
            await source.close()
    return findings


async def _read_group(directory: GroupDirectory, group_id: str) -> Finding:
    """The source's group read whole, as the running bridge reads it (docs/running.md)."""
    try:
        members = await directory.group_members(group_id)
    except (Unavailable, Throttled) as exc:
        return Finding(Outcome.UNREACHABLE, directory.name, str(exc))
    except SourceError as exc:
        return Finding(Outcome.PROBLEM, directory.name, str(exc))
    with_mail = sum(1 for member in members if member.mail)
    return Finding(
        Outcome.OK, directory.name, f"group {group_id}: {len(members)} users, {with_mail} with a mail address"
    )


def _from_report(report: ConnectionReport) -> list[Finding]:
    return [
        *(Finding(Outcome.OK, report.source, text) for text in report.passed),
        *(Finding(Outcome.PROBLEM, report.source, text) for text in report.problems),
        *(Finding(Outcome.UNREACHABLE, report.source, text) for text in report.unreachable),
    ]


async def ping_workforce(config: WorkforceConfig) -> list[Finding]:
    """POST a signed `ping` (docs/workforce-webhook.md) to the workforce endpoint: any 2xx means it is reachable
    and takes the signature."""
    if config.url is None:
        return []
    now, ping_id = datetime.now(UTC), str(uuid.uuid4())
    body = json.dumps({"changes": [{"id": ping_id, "type": "ping", "occurred_at": iso_utc(now)}]}).encode()
    headers = signed_headers(config.signing_key or b"", ping_id, now, body)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_PING_TIMEOUT_S)) as http,
            http.post(config.url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            said = (await response.content.read(_EXCERPT)).decode("utf-8", "replace").strip()
            status = response.status
            reason = f"{status} {response.reason or ''}".rstrip()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [Finding(Outcome.UNREACHABLE, "workforce", why_unreachable(exc, config.url, "workforce.url"))]
    if 200 <= status < 300:
        return [Finding(Outcome.OK, "workforce", f"{config.url} accepted a signed ping ({reason})")]
    answer = f"{config.url} answered the signed ping {reason}" + (f": {said}" if said else "")
    if status >= 500:
        return [Finding(Outcome.UNREACHABLE, "workforce", answer)]
    if 300 <= status < 400:
        answer += " (redirects are not followed: set workforce.url to the final address)"
    return [Finding(Outcome.PROBLEM, "workforce", answer + refusal_hint(status))]
