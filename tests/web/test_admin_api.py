"""Administration over REST: the mailboxes and the template mapping, behind the `admin` scope."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from sqlmodel import col, select

from bridge.config import Config
from bridge.domain import ChangeType
from bridge.marks import DirtyMarks
from bridge.relay import Relay
from bridge.sources.configured import WEBHOOK_NOTIFICATIONS
from bridge.store import Database, DeltaStateRow, MailboxRow, MailboxStatus, MirrorRow, OutboxRow
from bridge.templates import LiveMapping, TemplateMapping, default_mapping_path
from bridge.web.answers import record
from bridge.web.app import create_app
from bridge.web.graph_hooks import GraphHooks
from bridge.web.openapi import document
from tests.conftest import BILLION_LAUGHS
from tests.web import ADMIN_TOKEN, MAPPING, WORKFORCE_TOKEN, Client, bearer
from tests.web.test_openapi import resolve

ADMIN = bearer(ADMIN_TOKEN)
YAML = {"Content-Type": "application/yaml", **ADMIN}
DEFAULT_TEXT = default_mapping_path().read_text(encoding="utf-8")

ROUTES = [
    ("get", "/api/v1/admin/mailboxes"),
    ("post", "/api/v1/admin/mailboxes"),
    ("post", "/api/v1/admin/mailboxes/import"),
    ("post", "/api/v1/admin/mailboxes/adele@contoso.com/enable"),
    ("post", "/api/v1/admin/mailboxes/adele@contoso.com/disable"),
    ("post", "/api/v1/admin/mailboxes/adele@contoso.com/resync"),
    ("delete", "/api/v1/admin/mailboxes/adele@contoso.com"),
    ("get", "/api/v1/admin/templates"),
    ("put", "/api/v1/admin/templates"),
    ("post", "/api/v1/admin/templates/apply"),
]


async def documented(response: ClientResponse, path: str, method: str) -> Any:
    """The answer's body, after checking it against the OpenAPI document's schema for its status."""
    answers = document()["paths"][path][method]["responses"]
    assert str(response.status) in answers, f"{method} {path} answered an undocumented {response.status}"
    schema = resolve(answers[str(response.status)]["content"][response.content_type]["schema"])
    body = await response.json()
    assert sorted(Draft202012Validator(schema).iter_errors(body), key=str) == []
    return body


def add_row(db: Database, address: str = "adele@contoso.com", **fields: Any) -> None:
    with db.session() as session:
        session.add(MailboxRow(address=address, workforce_id="E1001", source="online", **fields))


def mailbox_row(db: Database, address: str = "adele@contoso.com") -> MailboxRow | None:
    with db.session() as session:
        return session.exec(select(MailboxRow).where(MailboxRow.address == address)).first()


def mailbox_count(db: Database) -> int:
    with db.session() as session:
        return len(session.exec(select(MailboxRow)).all())


class Remaps:
    """What the app asked the service to re-map, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[TemplateMapping, TemplateMapping]] = []

    async def __call__(self, old: TemplateMapping, new: TemplateMapping) -> None:
        self.calls.append((old, new))


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    folder = tmp_path / "mapping"
    folder.mkdir()
    path = folder / "templates.yaml"
    shutil.copyfile(default_mapping_path(), path)
    path.chmod(0o644)
    return path


@pytest.fixture
def live(mapping_file: Path) -> LiveMapping:
    return LiveMapping(mapping_file)


@pytest.fixture
def remaps() -> Remaps:
    return Remaps()


@pytest.fixture
async def editable_client(config: Config, db: Database, live: LiveMapping, remaps: Remaps) -> AsyncIterator[Client]:
    """The app as the service builds it: with the mapping file it watches, named by `templates:`."""
    config = dataclasses.replace(config, templates=live.path)
    relay = Relay(db, {}, lambda: live.current, config.mail, owner="test", record=record)
    hooks = GraphHooks(db, DirtyMarks(db), decode=WEBHOOK_NOTIFICATIONS)
    app = create_app(config, db, hooks, lambda: live.current, relay, live=live, on_mapping_change=remaps)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


# -- scopes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), ROUTES)
async def test_an_admin_route_without_a_token_is_401(app_client: Client, method: str, url: str) -> None:
    response = await app_client.request(method, url)

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="presence-bridge"'
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(("method", "url"), ROUTES)
async def test_an_admin_route_with_the_workforce_token_is_403(
    app_client: Client, db: Database, method: str, url: str
) -> None:
    add_row(db)
    body = {"address": "new@contoso.com", "workforce_id": "E2", "source": "online"}

    response = await app_client.request(method, url, json=body, headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 403
    assert (await response.json())["status"] == 403
    row = mailbox_row(db)
    assert row is not None
    assert row.status is MailboxStatus.ACTIVE
    assert mailbox_count(db) == 1


async def test_no_token_and_no_body_reaches_a_log_line(
    editable_client: Client, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"address": "new@contoso.com", "workforce_id": "E2"}
    await editable_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)
    await editable_client.put("/api/v1/admin/templates", data=DEFAULT_TEXT.replace("90", "30"), headers=YAML)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "new@contoso.com" in logged  # the admin actions are logged...
    assert ADMIN_TOKEN not in logged  # ...without the token
    assert "Workforce template" not in logged  # ...or the file's text


# -- mailboxes -----------------------------------------------------------------------------------------------


async def test_the_mailbox_list_shows_every_mailbox_by_address(app_client: Client, db: Database) -> None:
    synced = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    add_row(db, "zoe@contoso.com", status=MailboxStatus.PAUSED, status_reason="mass delete")
    add_row(
        db,
        "adele@contoso.com",
        last_synced_at=synced,
        dirty_generation=2,
        synced_generation=2,
        time_zone="Europe/Berlin",
    )

    response = await app_client.get("/api/v1/admin/mailboxes", headers=ADMIN)

    assert response.status == 200
    body = await documented(response, "/api/v1/admin/mailboxes", "get")
    assert body["mailboxes"] == [
        {
            "address": "adele@contoso.com",
            "workforce_id": "E1001",
            "source": "online",
            "status": "active",
            "reason": None,
            "last_synced_at": "2026-11-24T09:30:00Z",
            "dirty": False,
            "time_zone": "Europe/Berlin",
        },
        {
            "address": "zoe@contoso.com",
            "workforce_id": "E1001",
            "source": "online",
            "status": "paused",
            "reason": "mass delete",
            "last_synced_at": None,
            "dirty": False,
            "time_zone": None,
        },
    ]


async def test_adding_a_mailbox_mirrors_it_with_a_sync_pending(app_client: Client, db: Database) -> None:
    body = {"address": "Megan@Contoso.com", "workforce_id": "E2002", "source": "online"}

    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 201
    view = await documented(response, "/api/v1/admin/mailboxes", "post")
    assert view == {
        "address": "megan@contoso.com",
        "workforce_id": "E2002",
        "source": "online",
        "status": "active",
        "reason": None,
        "last_synced_at": None,
        "dirty": True,
        "time_zone": None,
    }
    listed = await (await app_client.get("/api/v1/admin/mailboxes", headers=ADMIN)).json()
    assert listed["mailboxes"] == [view]


async def test_adding_a_mailbox_without_a_source_uses_the_only_one(app_client: Client, db: Database) -> None:
    body = {"address": "megan@contoso.com", "workforce_id": "E2002"}

    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 201
    assert (await response.json())["source"] == "online"


async def test_adding_a_mailbox_of_an_unknown_source_is_400_naming_source(app_client: Client, db: Database) -> None:
    body = {"address": "megan@contoso.com", "workforce_id": "E2002", "source": "on-premises"}

    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 400
    problem = await documented(response, "/api/v1/admin/mailboxes", "post")
    assert [p["name"] for p in problem["invalid_params"]] == ["source"]
    assert "online" in problem["invalid_params"][0]["reason"]
    assert mailbox_count(db) == 0


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({}, ["address", "workforce_id"]),
        ({"address": 5, "workforce_id": ["E1"]}, ["address", "workforce_id"]),
        ({"address": "megan", "workforce_id": "E2002"}, ["address"]),
        ({"address": "megan@contoso.com", "workforce_id": "   "}, ["workforce_id"]),
        ({"address": "megan@contoso.com", "workforce_id": "E" * 201}, ["workforce_id"]),
        ({"address": "megan@contoso.com", "workforce_id": "E2", "source": 1}, ["source"]),
        ({"address": "megan@contoso.com", "workforce_id": "E2", "team": "ops"}, ["team"]),
        (["megan@contoso.com"], ["body"]),
    ],
)
async def test_an_invalid_new_mailbox_is_400_naming_each_field(
    app_client: Client, db: Database, body: Any, names: list[str]
) -> None:
    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 400
    problem = await documented(response, "/api/v1/admin/mailboxes", "post")
    assert sorted(p["name"] for p in problem["invalid_params"]) == names
    assert mailbox_count(db) == 0


async def test_a_new_mailbox_that_is_not_json_is_400(app_client: Client, db: Database) -> None:
    response = await app_client.post("/api/v1/admin/mailboxes", data="address=megan", headers=ADMIN)

    assert response.status == 400
    assert (await response.json())["invalid_params"] == [{"name": "body", "reason": "is not JSON"}]
    assert mailbox_count(db) == 0


async def test_a_too_large_new_mailbox_is_413(app_client: Client, db: Database) -> None:
    body = {"address": "megan@contoso.com", "workforce_id": "E2", "source": "x" * 20_000}

    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 413
    await documented(response, "/api/v1/admin/mailboxes", "post")
    assert mailbox_count(db) == 0


async def test_adding_a_mirrored_mailbox_again_is_409(app_client: Client, db: Database) -> None:
    add_row(db)
    body = {"address": "Adele@contoso.com", "workforce_id": "E9999", "source": "online"}

    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 409
    await documented(response, "/api/v1/admin/mailboxes", "post")
    row = mailbox_row(db)
    assert row is not None
    assert row.workforce_id == "E1001"


async def test_adding_a_disabled_mailbox_mirrors_it_again(app_client: Client, db: Database) -> None:
    add_row(db, status=MailboxStatus.DISABLED, status_reason="removed by an administrator")
    body = {"address": "adele@contoso.com", "workforce_id": "E1002", "source": "online"}

    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 201
    view = await response.json()
    assert (view["status"], view["reason"], view["workforce_id"]) == ("active", None, "E1002")


async def test_enabling_resumes_a_paused_mailbox(app_client: Client, db: Database) -> None:
    add_row(db, status=MailboxStatus.PAUSED, status_reason="mass delete guard")

    response = await app_client.post("/api/v1/admin/mailboxes/Adele@contoso.com/enable", headers=ADMIN)

    assert response.status == 200
    view = await documented(response, "/api/v1/admin/mailboxes/{mailbox}/enable", "post")
    assert (view["status"], view["reason"], view["dirty"]) == ("active", None, True)
    row = mailbox_row(db)
    assert row is not None
    assert row.mass_delete_approved  # the deletions that paused it may now apply


async def test_disabling_keeps_the_reason_given(app_client: Client, db: Database) -> None:
    add_row(db)

    response = await app_client.post(
        "/api/v1/admin/mailboxes/adele@contoso.com/disable", json={"reason": "on leave"}, headers=ADMIN
    )

    assert response.status == 200
    view = await documented(response, "/api/v1/admin/mailboxes/{mailbox}/disable", "post")
    assert (view["status"], view["reason"]) == ("disabled", "on leave")


async def test_disabling_without_a_body_gives_a_default_reason(app_client: Client, db: Database) -> None:
    add_row(db)

    response = await app_client.post("/api/v1/admin/mailboxes/adele@contoso.com/disable", headers=ADMIN)

    assert response.status == 200
    assert (await response.json())["reason"] == "disabled by an administrator"


@pytest.mark.parametrize("body", [{"reason": 7}, {"reason": ""}, {"why": "x"}, {"reason": "x" * 501}])
async def test_an_invalid_disable_is_400_and_leaves_the_mailbox_active(
    app_client: Client, db: Database, body: dict[str, Any]
) -> None:
    add_row(db)

    response = await app_client.post("/api/v1/admin/mailboxes/adele@contoso.com/disable", json=body, headers=ADMIN)

    assert response.status == 400
    problem = await documented(response, "/api/v1/admin/mailboxes/{mailbox}/disable", "post")
    assert [p["name"] for p in problem["invalid_params"]] == list(body)
    row = mailbox_row(db)
    assert row is not None
    assert row.status is MailboxStatus.ACTIVE


async def test_resync_starts_a_new_delta_round(app_client: Client, db: Database) -> None:
    now = datetime.now(UTC)
    add_row(db, dirty_generation=3, synced_generation=3)
    with db.session() as session:
        row = session.exec(select(MailboxRow)).one()
        assert row.id is not None
        session.add(DeltaStateRow(mailbox_id=row.id, window_start=now, window_end=now, token="t", round_started_at=now))

    response = await app_client.post("/api/v1/admin/mailboxes/adele@contoso.com/resync", headers=ADMIN)

    assert response.status == 200
    view = await documented(response, "/api/v1/admin/mailboxes/{mailbox}/resync", "post")
    assert view["dirty"] is True
    with db.session() as session:
        assert session.exec(select(DeltaStateRow)).all() == []


@pytest.mark.parametrize(
    ("method", "suffix", "path"),
    [
        ("post", "/enable", "/api/v1/admin/mailboxes/{mailbox}/enable"),
        ("post", "/disable", "/api/v1/admin/mailboxes/{mailbox}/disable"),
        ("post", "/resync", "/api/v1/admin/mailboxes/{mailbox}/resync"),
        ("delete", "", "/api/v1/admin/mailboxes/{mailbox}"),
    ],
)
async def test_an_action_on_an_unknown_mailbox_is_404(
    app_client: Client, db: Database, method: str, suffix: str, path: str
) -> None:
    response = await app_client.request(method, f"/api/v1/admin/mailboxes/nobody@contoso.com{suffix}", headers=ADMIN)

    assert response.status == 404
    assert "nobody@contoso.com" in (await documented(response, path, method))["detail"]
    assert mailbox_count(db) == 0


async def test_removing_withdraws_every_shown_appointment(app_client: Client, db: Database, calendar: None) -> None:
    response = await app_client.delete("/api/v1/admin/mailboxes/adele@contoso.com", headers=ADMIN)

    assert response.status == 200
    body = await documented(response, "/api/v1/admin/mailboxes/{mailbox}", "delete")
    assert body["deleted_changes"] == 4  # oof, meeting, doctor, mine: hidden and free were never shown
    assert (body["mailbox"]["address"], body["mailbox"]["status"]) == ("adele@contoso.com", "disabled")
    with db.session() as session:
        changes = session.exec(select(OutboxRow).order_by(col(OutboxRow.id))).all()
        assert [change.change_type for change in changes] == [ChangeType.DELETED] * 4
        assert session.exec(select(MirrorRow)).all() == []


# -- the template mapping ------------------------------------------------------------------------------------


async def test_the_shipped_mapping_is_shown_read_only(app_client: Client) -> None:
    response = await app_client.get("/api/v1/admin/templates", headers=ADMIN)

    assert response.status == 200
    body = await documented(response, "/api/v1/admin/templates", "get")
    assert body == {
        "path": str(default_mapping_path()),
        "editable": False,
        "yaml": DEFAULT_TEXT,
        "templates": sorted(MAPPING.templates),
        "days_ahead": 90,
        "ignore_prefix": "*",
        "held": None,
    }


async def test_replacing_the_shipped_mapping_is_409_until_templates_is_set(app_client: Client) -> None:
    response = await app_client.put("/api/v1/admin/templates", data=DEFAULT_TEXT, headers=YAML)

    assert response.status == 409
    problem = await documented(response, "/api/v1/admin/templates", "put")
    assert "`templates:`" in problem["detail"]
    assert default_mapping_path().read_text(encoding="utf-8") == DEFAULT_TEXT


async def test_a_configured_mapping_file_is_shown_editable(editable_client: Client, live: LiveMapping) -> None:
    response = await editable_client.get("/api/v1/admin/templates", headers=ADMIN)

    body = await documented(response, "/api/v1/admin/templates", "get")
    assert (body["path"], body["editable"], body["yaml"]) == (str(live.path), True, DEFAULT_TEXT)


@pytest.mark.parametrize("content_type", ["application/yaml", "text/yaml", "text/plain; charset=utf-8"])
async def test_a_valid_mapping_replaces_the_file_and_applies_at_once(
    editable_client: Client, live: LiveMapping, remaps: Remaps, content_type: str
) -> None:
    before = live.current
    edited = DEFAULT_TEXT.replace("days_ahead: 90", "days_ahead: 30").replace(
        'ignore_prefix: "*"', 'ignore_prefix: "#"'
    )
    edited = edited.replace("  busy: meeting", "  busy: tentative")

    response = await editable_client.put(
        "/api/v1/admin/templates", data=edited, headers={**ADMIN, "Content-Type": content_type}
    )

    assert response.status == 200
    body = await documented(response, "/api/v1/admin/templates", "put")
    assert (body["yaml"], body["days_ahead"], body["ignore_prefix"]) == (edited, 30, "#")
    assert live.path.read_text(encoding="utf-8") == edited
    assert (live.current.days_ahead, live.current.ignore_prefix) == (30, "#")
    assert remaps.calls == [(before, live.current)]  # the mirror is re-mapped with the new mapping
    assert live.reload() is False  # the watcher will not apply (and re-map) the same edit twice


async def test_a_replaced_mapping_file_keeps_its_permissions(editable_client: Client, live: LiveMapping) -> None:
    edited = DEFAULT_TEXT.replace("days_ahead: 90", "days_ahead: 30")

    response = await editable_client.put("/api/v1/admin/templates", data=edited, headers=YAML)

    assert response.status == 200
    assert stat.S_IMODE(live.path.stat().st_mode) == 0o644
    assert sorted(p.name for p in live.path.parent.iterdir()) == [live.path.name]  # no temporary file is left


async def test_a_yaml_alias_bomb_is_refused_quickly_with_a_small_answer(
    editable_client: Client, live: LiveMapping
) -> None:
    before = live.path.read_bytes()

    response = await editable_client.put(
        "/api/v1/admin/templates", data=f"{DEFAULT_TEXT}{BILLION_LAUGHS}x: *i\n", headers=YAML
    )

    assert response.status == 400
    body = await response.read()
    assert len(body) < 1000
    assert b"aliases (*name) expand it to more than 2 times its size" in body
    assert live.path.read_bytes() == before


async def test_the_same_mapping_again_re_maps_nothing(editable_client: Client, remaps: Remaps) -> None:
    response = await editable_client.put("/api/v1/admin/templates", data=DEFAULT_TEXT, headers=YAML)

    assert response.status == 200
    assert remaps.calls == []


@pytest.mark.parametrize(
    ("text", "name", "reason"),
    [
        ("show: [busy\n", "body", "line 2, column 1: "),
        ("show:\n  busy: meeting\n  busy: absence\ntemplates:\n  meeting: {show_as: busy}\n", "show.busy", "duplicate"),
        (DEFAULT_TEXT.replace("  busy: meeting", "  busy: standup"), "show.busy", "'standup' is not defined"),
        (DEFAULT_TEXT.replace("days_ahead: 90", "days_ahead: 0"), "days_ahead", "line 11: "),
        (DEFAULT_TEXT.replace("meeting: {show_as: busy,", "meeting: {show_as: free,"), "templates.meeting.show_as", ""),
        ("show: {busy: meeting}\n", "templates", "required"),
        ("[1, 2]\n", "body", "is not of type 'object'"),
        ("", "show", "required"),
    ],
)
async def test_an_invalid_mapping_is_400_naming_the_field_and_changes_nothing(
    editable_client: Client, live: LiveMapping, remaps: Remaps, text: str, name: str, reason: str
) -> None:
    before = live.current

    response = await editable_client.put("/api/v1/admin/templates", data=text, headers=YAML)

    assert response.status == 400
    problem = await documented(response, "/api/v1/admin/templates", "put")
    assert any(p["name"] == name and reason in p["reason"] for p in problem["invalid_params"]), problem
    assert not any(".new" in p["reason"] for p in problem["invalid_params"])  # the temporary file is no concern
    assert live.path.read_text(encoding="utf-8") == DEFAULT_TEXT
    assert live.current is before
    assert remaps.calls == []
    assert sorted(p.name for p in live.path.parent.iterdir()) == [live.path.name]


async def test_a_mapping_that_is_not_utf8_is_400(editable_client: Client, live: LiveMapping) -> None:
    response = await editable_client.put(
        "/api/v1/admin/templates", data="ignore_prefix: é".encode("latin-1"), headers=YAML
    )

    assert response.status == 400
    assert (await response.json())["invalid_params"] == [{"name": "body", "reason": "is not UTF-8 text"}]
    assert live.path.read_text(encoding="utf-8") == DEFAULT_TEXT


async def test_a_mapping_over_256_kib_is_413(editable_client: Client, live: LiveMapping) -> None:
    text = DEFAULT_TEXT + "#" * (256 * 1024)

    response = await editable_client.put("/api/v1/admin/templates", data=text, headers=YAML)

    assert response.status == 413
    await documented(response, "/api/v1/admin/templates", "put")
    assert live.path.read_text(encoding="utf-8") == DEFAULT_TEXT


async def test_a_mapping_sent_as_json_is_415(editable_client: Client, live: LiveMapping) -> None:
    response = await editable_client.put("/api/v1/admin/templates", json={"days_ahead": 30}, headers=ADMIN)

    assert response.status == 415
    await documented(response, "/api/v1/admin/templates", "put")
    assert live.path.read_text(encoding="utf-8") == DEFAULT_TEXT


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
async def test_a_mapping_file_the_bridge_may_not_write_is_409(editable_client: Client, live: LiveMapping) -> None:
    live.path.parent.chmod(0o555)
    try:
        shown = await (await editable_client.get("/api/v1/admin/templates", headers=ADMIN)).json()
        response = await editable_client.put("/api/v1/admin/templates", data=DEFAULT_TEXT, headers=YAML)
    finally:
        live.path.parent.chmod(0o755)

    assert shown["editable"] is False
    assert response.status == 409


# --- rosters ---------------------------------------------------------------------------------------------------

IMPORT = "/api/v1/admin/mailboxes/import"


async def test_a_roster_is_enrolled_and_reported(app_client: Client, db: Database) -> None:
    add_row(db)
    body = {
        "mailboxes": [
            {"address": "adele@contoso.com", "workforce_id": "E1001"},
            {"address": "Megan@contoso.com", "workforce_id": "E2002", "source": "online"},
        ]
    }

    response = await app_client.post(IMPORT, json=body, headers=ADMIN)

    assert response.status == 200
    outcome = await documented(response, IMPORT, "post")
    assert outcome == {
        "dry_run": False,
        "added": ["megan@contoso.com"],
        "reenabled": [],
        "updated": [],
        "unchanged": 1,
    }
    row = mailbox_row(db, "megan@contoso.com")
    assert row is not None
    assert row.dirty_generation > row.synced_generation


async def test_a_dry_run_roster_reports_and_writes_nothing(app_client: Client, db: Database) -> None:
    body = {"mailboxes": [{"address": "megan@contoso.com", "workforce_id": "E2002"}], "dry_run": True}

    response = await app_client.post(IMPORT, json=body, headers=ADMIN)

    assert (await documented(response, IMPORT, "post"))["added"] == ["megan@contoso.com"]
    assert mailbox_count(db) == 0


async def test_a_roster_with_problems_is_400_naming_each_row_and_writes_nothing(
    app_client: Client, db: Database
) -> None:
    add_row(db)
    body = {
        "mailboxes": [
            {"address": "megan@contoso.com", "workforce_id": "E2002"},
            {"address": "nobody", "workforce_id": "E2003"},
            {"address": "grady@contoso.com", "workforce_id": "E1001"},
            {"address": "henry@contoso.com", "workforce_id": "E2002", "source": "on-premises"},
            ["henry@contoso.com"],
        ]
    }

    response = await app_client.post(IMPORT, json=body, headers=ADMIN)

    assert response.status == 400
    problem = await documented(response, IMPORT, "post")
    assert [p["name"] for p in problem["invalid_params"]] == ["mailboxes[4]"]
    del body["mailboxes"][4]
    response = await app_client.post(IMPORT, json=body, headers=ADMIN)
    problem = await documented(response, IMPORT, "post")
    assert [(p["name"], p["reason"].split(" ")[0]) for p in problem["invalid_params"]] == [
        ("mailboxes[1]", "'nobody'"),
        ("mailboxes[2]", "workforce"),
        ("mailboxes[3]", "'on-premises'"),
        ("mailboxes[3]", "workforce"),
    ]
    assert mailbox_count(db) == 1


async def test_adding_a_mailbox_with_a_workforce_id_another_has_is_409(app_client: Client, db: Database) -> None:
    add_row(db)
    body = {"address": "megan@contoso.com", "workforce_id": "E1001"}

    response = await app_client.post("/api/v1/admin/mailboxes", json=body, headers=ADMIN)

    assert response.status == 409
    assert "belongs to the active mailbox adele@contoso.com" in (await response.json())["detail"]
    assert mailbox_count(db) == 1


async def test_a_roster_checked_with_exchange_without_a_source_to_ask_is_400(app_client: Client, db: Database) -> None:
    body = {"mailboxes": [{"address": "megan@contoso.com", "workforce_id": "E2002"}], "check_exchange": True}

    response = await app_client.post(IMPORT, json=body, headers=ADMIN)

    assert response.status == 400
    problem = await documented(response, IMPORT, "post")
    assert problem["invalid_params"] == [
        {"name": "mailboxes[0]", "reason": "the bridge holds no connection to source online"}
    ]
    assert mailbox_count(db) == 0
