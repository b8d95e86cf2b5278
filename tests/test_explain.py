"""Explain: why the workforce system sees a mirrored appointment as it does, and what it was sent for it (SQLite
and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.domain import Appointment, ChangeType, FreeBusy
from bridge.explain import Explanation, explain, mirrored
from bridge.store import Database, MailboxRow
from bridge.store.mirror import write_mirror
from bridge.store.outbox import add_changes
from bridge.templates import TemplateMapping, default_mapping_path, load_mapping, load_mapping_text

MAPPING = load_mapping(default_mapping_path())
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TODAY = datetime(2026, 11, 30, tzinfo=UTC)


def at(hours: float) -> datetime:
    return TODAY + timedelta(hours=hours)


CALENDAR = (
    Appointment("meeting", "ck", at(33), at(34), FreeBusy.BUSY, "Customer call"),
    Appointment("doctor", "ck", at(35), at(36), FreeBusy.BUSY, "Doctor", private=True),
    Appointment("errand", "ck", at(37), at(38), FreeBusy.BUSY, " *Errand", private=True),
    Appointment("dentist", "ck", at(38), at(39), FreeBusy.OOF, "*Dentist"),
    Appointment("focus", "ck", at(39), at(40), FreeBusy.FREE, "Focus"),
    Appointment("nodata", "ck", at(41), at(42), FreeBusy.UNKNOWN, "Room"),
    Appointment("yesterday", "ck", at(-20), at(-19), FreeBusy.BUSY, "Late night"),
)


@pytest.fixture
def calendar(db: Database) -> None:
    with db.session() as session:
        mailbox = MailboxRow(address="adele@contoso.com", workforce_id="E1001", source="online")
        session.add(mailbox)
        session.flush()
        assert mailbox.id is not None
        items = [MAPPING.mirror_item(appointment) for appointment in CALENDAR]
        write_mirror(session, mailbox.id, [item for item, _ in items], ())
        shown = [(ChangeType.CREATED, entry) for _, entry in items if entry is not None]
        add_changes(session, mailbox, shown, NOW - timedelta(hours=1))


def explained(db: Database, item_id: str, mapping: TemplateMapping = MAPPING) -> Explanation:
    with db.session() as session:
        found = explain(session, "Adele@contoso.com", item_id, mapping, NOW)
    assert found is not None
    return found


@pytest.mark.usefixtures("calendar")
def test_a_shown_appointment_names_its_state_and_template_and_what_was_sent(db: Database) -> None:
    found = explained(db, "meeting")

    assert found.verdict == "shown"
    assert found.reasons == (
        "it is inside the window [2026-11-30T00:00:00Z, 2027-02-28T00:00:00Z) (days_ahead: 90)",
        "shown as meeting: its free/busy state busy → meeting under `show`",
    )
    [sent] = found.sent
    assert (sent.change_type, sent.sequence, sent.delivered_at) == (ChangeType.CREATED, 1, None)
    assert sent.appointment["subject"] == "Customer call"


@pytest.mark.usefixtures("calendar")
def test_a_private_appointment_is_shown_without_its_subject_and_was_sent_without_one(db: Database) -> None:
    found = explained(db, "doctor")

    assert found.verdict == "shown without subject"
    assert "without its subject: it is private" in found.reasons[1]
    [sent] = found.sent
    assert "subject" not in sent.appointment


@pytest.mark.usefixtures("calendar")
def test_a_hidden_appointment_names_the_ignore_character_and_was_sent_nothing(db: Database) -> None:
    found = explained(db, "dentist")

    assert found.verdict == "hidden"
    assert found.reasons[1].startswith("hidden: its subject '*Dentist' starts with the ignore character '*'")
    assert (found.shown_as, found.sent) == (None, ())


@pytest.mark.usefixtures("calendar")
def test_a_private_appointment_with_the_ignore_character_is_hidden_without_quoting_its_subject(db: Database) -> None:
    found = explained(db, "errand")

    assert found.verdict == "hidden"
    assert found.reasons[1].startswith("hidden: its subject starts with the ignore character '*'")
    assert found.sent == ()


@pytest.mark.parametrize(
    ("item_id", "reason"),
    [
        ("focus", "hidden: its free/busy state is free, which is never shown"),
        ("nodata", "hidden: Exchange reports no free/busy state for it (unknown), which has no template"),
    ],
)
@pytest.mark.usefixtures("calendar")
def test_free_and_unknown_are_hidden_by_their_own_rules(db: Database, item_id: str, reason: str) -> None:
    assert explained(db, item_id).reasons[1] == reason


@pytest.mark.usefixtures("calendar")
def test_an_appointment_outside_the_window_is_left_out(db: Database) -> None:
    found = explained(db, "yesterday")

    assert found.verdict == "left out"
    assert found.reasons[0].startswith("left out: it ended before the window [2026-11-30T00:00:00Z")


@pytest.mark.usefixtures("calendar")
def test_a_state_the_mapping_no_longer_shows_says_the_workforce_system_was_told_otherwise(db: Database) -> None:
    without_busy = default_mapping_path().read_text().replace("  busy: meeting\n", "")
    found = explained(db, "meeting", load_mapping_text(without_busy))

    assert found.verdict == "hidden"
    assert found.reasons[1] == "hidden: its free/busy state busy has no template under `show`"
    assert found.reasons[2].startswith("the workforce system was last told it is shown as meeting")


@pytest.mark.usefixtures("calendar")
def test_an_appointment_the_bridge_does_not_mirror_has_no_explanation(db: Database) -> None:
    with db.session() as session:
        assert explain(session, "adele@contoso.com", "cancelled", MAPPING, NOW) is None
        assert explain(session, "nobody@contoso.com", "meeting", MAPPING, NOW) is None


@pytest.mark.usefixtures("calendar")
def test_the_mailboxs_appointments_are_listed_by_start_with_their_verdicts(db: Database) -> None:
    with db.session() as session:
        listed = mirrored(session, "adele@contoso.com", MAPPING, NOW)

    assert listed is not None
    assert [(item.appointment.item_id, item.verdict) for item in listed] == [
        ("yesterday", "left out"),
        ("meeting", "shown"),
        ("doctor", "shown without subject"),
        ("errand", "hidden"),
        ("dentist", "hidden"),
        ("focus", "hidden"),
        ("nodata", "hidden"),
    ]
