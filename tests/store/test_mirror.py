"""The mirror and the delta state round-trip as domain values, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import col, select

from bridge.domain import Appointment, AppointmentKind, FreeBusy, MirrorItem, Window
from bridge.store import Database, MirrorRow
from bridge.store.mirror import delta_states, load_mirror, save_delta_state, write_mirror
from tests.store import add_mailbox, stored_rows

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def item(item_id: str, template: str | None = "meeting", **fields: object) -> MirrorItem:
    appointment = Appointment(item_id, f"ck-{item_id}", T0, T0 + timedelta(hours=1), FreeBusy.BUSY, "Visit")
    for name, value in fields.items():
        object.__setattr__(appointment, name, value)
    return MirrorItem(appointment, template, "hash" if template else "")


def test_mirror_items_round_trip(db: Database) -> None:
    stored = {
        "a": item("a"),
        "b": item("b", template=None, private=True, kind=AppointmentKind.OCCURRENCE, series_id="m"),
    }
    with db.session() as session:
        mailbox = add_mailbox(session)
        write_mirror(session, mailbox, stored.values(), ())
    with db.session() as session:
        assert load_mirror(session, mailbox) == stored


def test_mirror_rows_are_stored_as_sqlalchemys_types_store_them(db: Database) -> None:
    items = [
        item("a", start=T0.astimezone(ZoneInfo("America/New_York")), end=T0 + timedelta(microseconds=1)),
        item("b", template=None, private=True, all_day=True, kind=AppointmentKind.OCCURRENCE, series_id="m"),
    ]
    with db.session() as session:
        mailbox, other = add_mailbox(session), add_mailbox(session, "bob@example.com")
        write_mirror(session, mailbox, items, ())
    with db.session() as session:
        written = session.exec(select(MirrorRow).order_by(col(MirrorRow.item_id))).all()
        # The same values for another mailbox, through SQLAlchemy's own processing of each column's type.
        again = [row.model_dump() | {"mailbox_id": other} for row in written]
        session.connection().execute(sa.insert(MirrorRow), again)

    stored = stored_rows(db, "mirror", apart_from={"mailbox_id"})
    assert stored[:2] == stored[2:]


def test_writing_an_item_again_replaces_it_and_drop_removes(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        write_mirror(session, mailbox, [item("a"), item("b")], ())
    with db.session() as session:
        write_mirror(session, mailbox, [item("a", template="tentative")], ["b"])
    with db.session() as session:
        mirror = load_mirror(session, mailbox)
    assert list(mirror) == ["a"]
    assert mirror["a"].template == "tentative"


def test_mirrors_of_two_mailboxes_are_kept_apart(db: Database) -> None:
    with db.session() as session:
        first = add_mailbox(session, "first@example.com")
        second = add_mailbox(session, "second@example.com")
        write_mirror(session, first, [item("a")], ())
        write_mirror(session, second, [item("a", template=None)], ())
    with db.session() as session:
        assert load_mirror(session, first)["a"].template == "meeting"
        assert load_mirror(session, second)["a"].template is None


def test_delta_state_round_trips_and_keeps_its_round_start(db: Database) -> None:
    window = Window(T0, T0 + timedelta(days=90))
    with db.session() as session:
        mailbox = add_mailbox(session)
        assert delta_states(session, [mailbox]) == {}
        save_delta_state(session, mailbox, window, "token-1", new_round=True, now=T0)
    with db.session() as session:
        save_delta_state(session, mailbox, window, "token-2", new_round=False, now=T0 + timedelta(hours=1))
    with db.session() as session:
        assert delta_states(session, [mailbox]) == {mailbox: (window, "token-2")}
