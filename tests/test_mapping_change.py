"""A change of the template mapping is seen before it applies: `templates diff`, and a live change that would
withdraw too much held until `templates apply` or the admin API confirms it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from bridge.cli import main
from bridge.config import SyncConfig
from bridge.domain import FreeBusy
from bridge.errors import UserError
from bridge.mapping_change import EditedMeanwhile, MailboxPreview, MappingPreview, preview_remap
from bridge.store.mapping_state import HeldMapping, held_mapping, mapping_history
from bridge.templates import load_mapping_text, mapping_digest
from tests.world import ADMIN_TOKEN, World, three_meetings, wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def mapping_file(world: World) -> Path:
    return world.config_path.parent / "mapping.yaml"


def held(world: World) -> HeldMapping | None:
    with world.service.db.session() as session:
        return held_mapping(session)


def without_busy(world: World) -> str:
    """The mapping with busy no longer shown: every meeting would be withdrawn (world: mass_delete_min 3)."""
    return mapping_file(world).read_text().replace("  busy: meeting\n", "")


async def test_a_change_withdrawing_everything_is_held_until_templates_apply(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    items = await three_meetings(world)
    mapping_file(world).write_text(without_busy(world))

    await wait_until(lambda: held(world) is not None)
    assert len(await world.settled(quiet_s=2.5)) == 3  # nothing emitted while held
    assert world.service.mapping.current.show.get(FreeBusy.BUSY) == "meeting"  # the old mapping stays in force

    assert main(["templates", "apply", "--config", str(world.cli_config())]) == 0
    assert "confirmed" in capsys.readouterr().out

    changes = await world.changes(6, within=20)
    assert [(c["type"], c["appointment"]["id"]) for c in changes[3:]] == [("appointment.deleted", i) for i in items]
    assert len(await world.settled()) == 6
    assert held(world) is None


async def test_templates_diff_shows_what_a_candidate_would_change_and_applies_nothing(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await three_meetings(world)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(without_busy(world))

    assert main(["templates", "diff", str(candidate), "--config", str(world.cli_config())]) == 0

    out = capsys.readouterr().out
    address = world.mailbox.lower()
    assert f"{address}: 0 created, 0 updated, 3 withdrawn (of 3 shown)" in out
    assert "withdrawn: " in out
    assert "'Meeting 8' no longer shown (was meeting)" in out
    assert "HELD" in out
    assert len(await world.settled()) == 3
    assert held(world) is None


async def test_a_small_change_applies_at_once(world: World) -> None:
    await three_meetings(world)
    world.outlook("Maybe", start=12, end=13, show_as="tentative")
    await world.changes(4)

    mapping_file(world).write_text(mapping_file(world).read_text().replace("  tentative: tentative\n", ""))

    changes = await world.changes(5, within=20)
    assert (changes[4]["type"], changes[4]["appointment"]["subject"]) == ("appointment.deleted", "Maybe")
    assert len(await world.settled()) == 5
    assert held(world) is None


async def test_the_admin_api_shows_a_held_change_and_confirms_it(world: World) -> None:
    items = await three_meetings(world)

    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{world.service.url}/api/v1/admin/templates",
            data=without_busy(world),
            headers={**ADMIN, "Content-Type": "application/yaml"},
        ) as response,
    ):
        assert response.status == 200
        put = await response.json()
    assert put["held"]["withdrawn"] == 3
    assert put["held"]["approved"] is False
    assert len(await world.settled(quiet_s=2.5)) == 3

    status, applied, _ = await world.api(
        "POST", "/api/v1/admin/templates/apply", {"digest": put["held"]["digest"]}, ADMIN
    )

    assert (status, applied["held"]) == (200, None)
    changes = await world.changes(6, within=20)
    assert [(c["type"], c["appointment"]["id"]) for c in changes[3:]] == [("appointment.deleted", i) for i in items]


async def test_confirming_when_nothing_is_held_is_409(world: World) -> None:
    status, body, _ = await world.api("POST", "/api/v1/admin/templates/apply", None, ADMIN)
    assert status == 409
    assert "no change" in body["detail"]


async def test_templates_apply_with_nothing_held_says_so(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "apply", "--config", str(world.cli_config())]) == 1
    assert "no change of the template mapping is held" in capsys.readouterr().err


async def test_a_restart_neither_applies_nor_forgets_a_held_change(world: World) -> None:
    await three_meetings(world)
    await world.service.stop()
    mapping_file(world).write_text(without_busy(world))  # edited while the bridge was stopped

    again = await world.restart()

    await wait_until(lambda: held(world) is not None)
    await asyncio.sleep(2)
    assert len(world.workforce.changes) == 3
    assert again.mapping.current.show.get(FreeBusy.BUSY) == "meeting"


# -- an administrator's edit on the admin page (MappingChanges.install) --------------------------------------


def file_digest(world: World) -> str:
    return mapping_digest(mapping_file(world).read_bytes())


async def test_an_installed_edit_sends_exactly_what_its_preview_listed_and_records_who(world: World) -> None:
    await three_meetings(world)
    world.outlook("Maybe", start=12, end=13, show_as="tentative")
    await world.changes(4)
    await world.settled()
    candidate = without_busy(world).replace("  tentative: tentative\n", "  tentative: meeting\n")
    with world.service.db.session() as session:
        [preview] = preview_remap(session, load_mapping_text(candidate), listed=100).mailboxes

    emitted = await world.service.mapping_changes.install(candidate, "alice (admin page)", based_on=file_digest(world))

    changes = (await world.changes(8, within=20))[4:]
    assert [(c["type"], c["appointment"]["id"]) for c in changes] == [
        (
            {"created": "appointment.created", "updated": "appointment.updated", "withdrawn": "appointment.deleted"}[
                listed.kind
            ],
            listed.item_id,
        )
        for listed in preview.listed
    ]
    assert (preview.withdrawn, preview.updated, emitted) == (3, 1, 4)  # a mass withdrawal, applied: it was seen
    assert changes[-1]["appointment"]["template"] == "meeting"
    assert len(await world.settled()) == 8
    assert mapping_file(world).read_text() == candidate
    with world.service.db.session() as session:
        newest = mapping_history(session, 1)[0]
    assert (newest.applied_by, newest.emitted, newest.text) == ("alice (admin page)", 4, candidate)


async def test_an_edit_of_a_file_that_changed_meanwhile_writes_nothing(world: World) -> None:
    await three_meetings(world)
    before = mapping_file(world).read_text()

    with pytest.raises(EditedMeanwhile, match="changed since this edit began"):
        await world.service.mapping_changes.install(without_busy(world), "alice", based_on="0" * 64)

    assert mapping_file(world).read_text() == before
    assert len(await world.settled()) == 3


async def test_an_invalid_edit_writes_nothing_and_names_its_line(world: World) -> None:
    await three_meetings(world)
    before = mapping_file(world).read_text()
    broken = before.replace("days_ahead: 90", "days_ahead: 0")

    with pytest.raises(UserError) as caught:
        await world.service.mapping_changes.install(broken, "alice", based_on=file_digest(world))

    assert caught.value.problems == ("mapping.yaml:11: days_ahead: 0 is less than the minimum of 1",)
    assert mapping_file(world).read_text() == before
    assert sorted(path.name for path in mapping_file(world).parent.glob("*mapping.yaml*")) == ["mapping.yaml"]
    assert len(await world.settled()) == 3


# -- when a change is held (MappingPreview.is_mass_withdrawal) ------------------------------------------------


def preview(*mailboxes: tuple[int, int]) -> MappingPreview:
    """A preview of mailboxes given as (withdrawn, shown)."""
    return MappingPreview(
        tuple(
            MailboxPreview(f"m{i}@contoso.com", shown, 0, 0, withdrawn)
            for i, (withdrawn, shown) in enumerate(mailboxes)
        )
    )


def test_withdrawing_everything_one_person_shows_is_held_though_others_keep_theirs() -> None:
    assert preview((5, 5), (0, 100)).is_mass_withdrawal(SyncConfig())


def test_withdrawing_fewer_than_the_minimum_applies_at_once() -> None:
    assert not preview((4, 4)).is_mass_withdrawal(SyncConfig())


def test_a_share_below_one_holds_a_change_that_withdraws_that_share_in_all() -> None:
    sync = SyncConfig(mass_delete_share=0.5, mass_delete_min=5)
    assert preview((3, 6), (3, 6)).is_mass_withdrawal(sync)
    assert not preview((2, 6), (2, 6)).is_mass_withdrawal(sync)
