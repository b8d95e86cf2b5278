"""The sync planner: what a delta means for the mirror and for the workforce system."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.domain import (
    Appointment,
    AppointmentKind,
    ChangeType,
    DeltaResult,
    FreeBusy,
    MirrorItem,
    PresenceEntry,
    RelayWrites,
    Window,
)
from bridge.sync import SyncPlan, apply_to_mirror, plan_delta, plan_remap, plan_window
from bridge.templates import TemplateMapping, default_mapping_path, load_mapping

MAPPING = load_mapping(default_mapping_path())
TODAY = date(2026, 11, 23)
WINDOW = Window.days_ahead(TODAY, 90)
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def appointment(item_id: str = "a1", **fields: object) -> Appointment:
    base = Appointment(
        item_id=item_id,
        change_key=f"ck-{item_id}-1",
        start=T0,
        end=T0 + timedelta(hours=1),
        free_busy=FreeBusy.BUSY,
        subject="Customer visit",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def delta(*upserts: Appointment, removed: tuple[str, ...] = (), full: bool = False) -> DeltaResult:
    return DeltaResult(tuple(upserts), removed, "token", full)


def synced(*appointments: Appointment) -> dict[str, MirrorItem]:
    """The mirror after a first full round over `appointments`."""
    return apply_to_mirror({}, plan_delta({}, delta(*appointments, full=True), MAPPING, WINDOW))


def kinds(plan: SyncPlan) -> list[tuple[ChangeType, str]]:
    return [(change.change_type, change.entry.item_id) for change in plan.changes]


def test_a_new_busy_appointment_is_created_as_its_template() -> None:
    plan = plan_delta({}, delta(appointment()), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.CREATED, "a1")]
    assert plan.changes[0].entry.template == "meeting"
    assert plan.changes[0].entry.subject == "Customer visit"
    assert [item.item_id for item in plan.put] == ["a1"]


def test_the_same_delta_twice_emits_nothing_the_second_time() -> None:
    mirror = synced(appointment())

    plan = plan_delta(mirror, delta(appointment()), MAPPING, WINDOW)

    assert plan.empty


def test_a_change_key_bump_alone_updates_the_mirror_but_emits_nothing() -> None:
    mirror = synced(appointment())

    plan = plan_delta(mirror, delta(appointment(change_key="ck-a1-2")), MAPPING, WINDOW)

    assert plan.changes == ()
    assert [item.appointment.change_key for item in plan.put] == ["ck-a1-2"]


def test_a_moved_appointment_is_updated() -> None:
    mirror = synced(appointment())

    plan = plan_delta(
        mirror, delta(appointment(start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=3))), MAPPING, WINDOW
    )

    assert kinds(plan) == [(ChangeType.UPDATED, "a1")]
    assert plan.changes[0].entry.start == T0 + timedelta(hours=2)


def test_free_and_unmapped_states_are_mirrored_but_not_shown() -> None:
    plan = plan_delta(
        {},
        delta(appointment("f", free_busy=FreeBusy.FREE), appointment("u", free_busy=FreeBusy.UNKNOWN)),
        MAPPING,
        WINDOW,
    )

    assert plan.changes == ()
    assert {item.item_id: item.template for item in plan.put} == {"f": None, "u": None}


def test_becoming_free_deletes_what_was_shown() -> None:
    mirror = synced(appointment())

    plan = plan_delta(mirror, delta(appointment(free_busy=FreeBusy.FREE)), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.DELETED, "a1")]
    assert plan.changes[0].entry.template == "meeting"


def test_an_ignore_prefix_hides_and_removing_it_shows_again() -> None:
    mirror = synced(appointment())

    hidden = plan_delta(mirror, delta(appointment(subject="*Dentist")), MAPPING, WINDOW)
    shown_again = plan_delta(apply_to_mirror(mirror, hidden), delta(appointment(subject="Dentist")), MAPPING, WINDOW)

    assert kinds(hidden) == [(ChangeType.DELETED, "a1")]
    assert kinds(shown_again) == [(ChangeType.CREATED, "a1")]


def test_a_private_appointment_is_shown_without_its_subject() -> None:
    plan = plan_delta({}, delta(appointment(private=True, subject="Doctor")), MAPPING, WINDOW)

    assert plan.changes[0].entry.subject is None


def test_an_appointment_without_a_free_busy_state_is_not_shown() -> None:
    # Graph's showAs "unknown" (or none at all), EWS's NoData: `show` cannot name it, so nothing is emitted.
    plan = plan_delta({}, delta(appointment("u", free_busy=FreeBusy.UNKNOWN)), MAPPING, WINDOW)

    assert plan.changes == ()
    assert [(item.item_id, item.template) for item in plan.put] == [("u", None)]


def test_losing_its_free_busy_state_withdraws_what_was_shown() -> None:
    mirror = synced(appointment())

    plan = plan_delta(mirror, delta(appointment(free_busy=FreeBusy.UNKNOWN)), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.DELETED, "a1")]


def test_a_zero_length_appointment_is_shown_one_for_one() -> None:
    plan = plan_delta({}, delta(appointment(end=T0)), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.CREATED, "a1")]
    assert (plan.changes[0].entry.start, plan.changes[0].entry.end) == (T0, T0)


def test_a_zero_length_appointment_at_the_window_start_is_inside_and_at_its_end_outside() -> None:
    at_start = appointment("s", start=WINDOW.start, end=WINDOW.start)
    at_end = appointment("e", start=WINDOW.end, end=WINDOW.end)

    plan = plan_delta({}, delta(at_start, at_end), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.CREATED, "s")]


def test_an_appointment_crossing_the_window_start_is_shown_whole() -> None:
    night = appointment(start=WINDOW.start - timedelta(hours=2), end=WINDOW.start + timedelta(hours=6))

    plan = plan_delta({}, delta(night), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.CREATED, "a1")]
    assert (plan.changes[0].entry.start, plan.changes[0].entry.end) == (night.start, night.end)


def test_an_appointment_crossing_the_window_end_is_shown_whole() -> None:
    trip = appointment(start=WINDOW.end - timedelta(days=1), end=WINDOW.end + timedelta(days=2))

    plan = plan_delta({}, delta(trip), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.CREATED, "a1")]
    assert plan.changes[0].entry.end == WINDOW.end + timedelta(days=2)


def test_an_appointment_ending_exactly_at_the_window_start_is_outside() -> None:
    plan = plan_delta(
        {}, delta(appointment(start=WINDOW.start - timedelta(hours=1), end=WINDOW.start)), MAPPING, WINDOW
    )

    assert plan.empty


def test_an_appointment_crossing_the_start_stays_when_the_window_rolls_onto_it() -> None:
    night = appointment(start=WINDOW.start + timedelta(hours=22), end=WINDOW.start + timedelta(hours=30))
    mirror = synced(night)
    tomorrow = Window.days_ahead(TODAY + timedelta(days=1), 90)

    plan = plan_delta(mirror, delta(night, full=True), MAPPING, tomorrow)

    assert plan.empty


def test_a_removed_appointment_is_deleted_with_its_last_shown_state() -> None:
    mirror = synced(appointment())

    plan = plan_delta(mirror, delta(removed=("a1",)), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.DELETED, "a1")]
    assert plan.drop == ("a1",)
    assert plan.removed == 1


def test_a_removal_of_an_unknown_item_changes_nothing() -> None:
    plan = plan_delta(synced(appointment()), delta(removed=("elsewhere",)), MAPPING, WINDOW)

    assert plan.empty


def test_a_full_round_removes_what_it_no_longer_reports() -> None:
    mirror = synced(
        appointment("a1"), appointment("a2", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1))
    )

    plan = plan_delta(mirror, delta(appointment("a1"), full=True), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.DELETED, "a2")]


def test_a_full_round_after_an_expired_token_emits_no_spurious_changes() -> None:
    mirror = synced(appointment("a1"), appointment("a2", free_busy=FreeBusy.OOF))

    plan = plan_delta(
        mirror, delta(appointment("a1"), appointment("a2", free_busy=FreeBusy.OOF), full=True), MAPPING, WINDOW
    )

    assert plan.empty


def test_an_appointment_that_ended_before_the_window_ages_out_silently() -> None:
    mirror = synced(appointment())
    tomorrow = Window.days_ahead(TODAY + timedelta(days=2), 90)

    plan = plan_delta(mirror, delta(full=True), MAPPING, tomorrow)

    assert plan.drop == ("a1",)
    assert plan.changes == ()
    assert plan.removed == 0


def test_moving_an_appointment_into_the_past_deletes_it() -> None:
    mirror = synced(appointment())
    moved = appointment(change_key="ck-a1-2", start=T0 - timedelta(days=3), end=T0 - timedelta(days=3, hours=-1))

    plan = plan_delta(mirror, delta(moved), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.DELETED, "a1")]  # found by the state machine below
    assert plan.drop == ("a1",)


def test_moving_an_appointment_beyond_the_window_deletes_it() -> None:
    mirror = synced(appointment())
    far = WINDOW.end + timedelta(days=3)

    plan = plan_delta(mirror, delta(appointment(start=far, end=far + timedelta(hours=1))), MAPPING, WINDOW)

    assert kinds(plan) == [(ChangeType.DELETED, "a1")]


def test_an_occurrence_beyond_the_window_is_never_mirrored() -> None:
    far = WINDOW.end + timedelta(hours=1)

    plan = plan_delta({}, delta(appointment(start=far, end=far + timedelta(hours=1))), MAPPING, WINDOW)

    assert plan.empty


def test_the_rolled_window_drops_only_what_ended_before_it() -> None:
    mirror = synced(
        appointment("past"), appointment("later", start=T0 + timedelta(days=5), end=T0 + timedelta(days=5, hours=1))
    )

    plan = plan_window(mirror, Window.days_ahead(TODAY + timedelta(days=2), 90))

    assert plan.drop == ("past",)
    assert plan.changes == ()


def test_a_remap_emits_only_what_the_new_mapping_changes() -> None:
    mirror = synced(
        appointment("busy"),
        appointment("oof", free_busy=FreeBusy.OOF, start=T0 + timedelta(days=1), end=T0 + timedelta(days=2)),
    )
    remapped = replace(MAPPING, show={**MAPPING.show, FreeBusy.BUSY: "tentative"})

    plan = plan_remap(mirror, remapped)

    assert kinds(plan) == [(ChangeType.UPDATED, "busy")]
    assert plan.changes[0].entry.template == "tentative"


def test_a_remap_that_stops_showing_a_state_deletes_its_appointments() -> None:
    mirror = synced(appointment("busy"))
    show = {state: template for state, template in MAPPING.show.items() if state is not FreeBusy.BUSY}

    plan = plan_remap(mirror, replace(MAPPING, show=show))

    assert kinds(plan) == [(ChangeType.DELETED, "busy")]


# --- the change stream always converges on what the mapping shows --------------------------------------------

SUBJECTS = st.sampled_from(["Meeting", "*Private note", " *also hidden", "Lunch", ""])
STATES = st.sampled_from(list(FreeBusy))
IDS = st.sampled_from([f"item{n}" for n in range(6)])


class ChangeStreamMachine(RuleBasedStateMachine):
    """Exchange changes at random; the bridge sees incremental deltas (sometimes repeated or full rounds).

    Invariant: replaying every emitted change in order at the receiver gives exactly the mapped calendar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calendar: dict[str, Appointment] = {}
        self.mirror: dict[str, MirrorItem] = {}
        self.receiver: dict[str, PresenceEntry] = {}
        self.pending: dict[str, Appointment | None] = {}
        self.mapping: TemplateMapping = MAPPING
        self.version = 0

    def _sync(self, result: DeltaResult) -> None:
        plan = plan_delta(self.mirror, result, self.mapping, WINDOW)
        self._receive(plan)

    def _receive(self, plan: SyncPlan) -> None:
        for change in plan.changes:
            item_id = change.entry.item_id
            if change.change_type is ChangeType.CREATED:
                assert item_id not in self.receiver, "created twice"
                self.receiver[item_id] = change.entry
            elif change.change_type is ChangeType.UPDATED:
                assert item_id in self.receiver, "updated before created"
                self.receiver[item_id] = change.entry
            else:
                assert item_id in self.receiver, "deleted but never shown"
                del self.receiver[item_id]
        self.mirror = apply_to_mirror(self.mirror, plan)

    @rule(item_id=IDS, subject=SUBJECTS, state=STATES, day=st.integers(-3, 100), private=st.booleans())
    def outlook_writes(self, item_id: str, subject: str, state: FreeBusy, day: int, private: bool) -> None:
        self.version += 1
        start = T0 + timedelta(days=day)
        changed = Appointment(
            item_id, f"ck{self.version}", start, start + timedelta(hours=1), state, subject, private=private
        )
        self.calendar[item_id] = changed
        self.pending[item_id] = changed

    @rule(item_id=IDS)
    def outlook_deletes(self, item_id: str) -> None:
        if self.calendar.pop(item_id, None) is not None:
            self.pending[item_id] = None

    @rule(repeat=st.booleans())
    def incremental_delta(self, repeat: bool) -> None:
        upserts = tuple(a for a in self.pending.values() if a is not None)
        removed = tuple(i for i, a in self.pending.items() if a is None)
        result = DeltaResult(upserts, removed, "t", False)
        self._sync(result)
        if repeat:  # a replay after a crash before commit, or a duplicated notification
            self._sync(result)
        self.pending.clear()

    @rule()
    def full_round(self) -> None:
        self._sync(DeltaResult(tuple(self.calendar.values()), (), "t", True))
        self.pending.clear()

    @rule(template=st.sampled_from(["meeting", "tentative", "remote"]))
    def admin_remaps_busy(self, template: str) -> None:
        self.mapping = replace(self.mapping, show={**self.mapping.show, FreeBusy.BUSY: template})
        self._receive(plan_remap(self.mirror, self.mapping))

    @invariant()
    def receiver_shows_the_mapped_calendar_once_synced(self) -> None:
        if self.pending:
            return
        expected = {}
        for appt in self.calendar.values():
            entry = self.mapping.map(appt)
            if entry is not None and WINDOW.overlaps(appt.start, appt.end):
                expected[appt.item_id] = entry
        assert self.receiver == expected


TestChangeStream = ChangeStreamMachine.TestCase
TestChangeStream.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_the_relay_s_write_coming_back_is_mirrored_silently() -> None:
    written = appointment("r1", change_key="ck-r1-2", transaction_id="tx-1")
    relay = RelayWrites(written={"r1": "ck-r1-2"}, refs={"tx-1": "cmd-1"})

    plan = plan_delta({}, delta(written), MAPPING, WINDOW, relay)

    assert plan.changes == ()
    [item] = plan.put
    assert (item.template, item.appointment.bridge_ref, item.appointment.transaction_id) == ("meeting", "cmd-1", None)


def test_a_create_still_in_flight_is_recognised_by_its_transaction_id() -> None:
    plan = plan_delta(
        {}, delta(appointment("r1", transaction_id="tx-1")), MAPPING, WINDOW, RelayWrites(in_flight=frozenset({"tx-1"}))
    )

    assert plan.changes == ()
    assert [item.item_id for item in plan.put] == ["r1"]


def test_occurrences_of_a_series_the_relay_wrote_share_its_key() -> None:
    occurrence = appointment("o1", change_key="ck-s", series_id="s1", kind=AppointmentKind.OCCURRENCE)

    plan = plan_delta({}, delta(occurrence), MAPPING, WINDOW, RelayWrites(written={"s1": "ck-s"}))

    assert plan.changes == ()


def test_a_person_s_change_after_the_relay_s_write_is_emitted() -> None:
    mirror = synced(appointment("r1", change_key="ck-2", bridge_ref="cmd-1"))
    moved = appointment("r1", change_key="ck-3", start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=3))

    plan = plan_delta(mirror, delta(moved), MAPPING, WINDOW, RelayWrites(written={"r1": "ck-2"}))

    assert kinds(plan) == [(ChangeType.UPDATED, "r1")]
    assert plan.put[0].appointment.bridge_ref == "cmd-1"  # the mark survives reads that do not carry it


def test_items_the_relay_is_writing_are_left_to_it() -> None:
    mirror = synced(appointment("r1"), appointment("r2", series_id="s1"))
    stale = appointment("r1", change_key="old", subject="Before the relay's write")

    plan = plan_delta(mirror, delta(stale, full=True), MAPPING, WINDOW, RelayWrites(busy=frozenset({"r1", "s1"})))

    assert plan.empty  # r1 is not overwritten with an older read, and r2 (in a busy series) is not removed
