"""The template mapping: what the workforce system sees of an Exchange calendar, and how it writes back."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain import Appointment, FreeBusy, PresenceEntry, Segment, Window
from bridge.errors import UserError
from bridge.templates import (
    END_OF_DAY,
    LiveMapping,
    Outcome,
    Rule,
    TemplateMapping,
    TemplateRule,
    UnknownTemplate,
    default_mapping_path,
    load_mapping,
    write_mapping_file,
)
from tests.fuzzing import YAML_TEXT, fuzz_settings, loaded_or_refused, mutations

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DEFAULT = load_mapping(default_mapping_path())

MAPPING = """
ignore_prefix: "*"
days_ahead: 30
show:
  busy: meeting
  oof: absence
templates:
  absence: {show_as: oof, all_day: true}
  meeting: {show_as: busy, state_until: PT1H, category: Presence, subject: Meeting}
  training: {show_as: busy, state_until: P1D}
precedence: [oof, busy]
"""


def write(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as caught:
        load_mapping(write(tmp_path, text))
    return caught.value.render()


PLANNING = Appointment("item-1", "ck-1", T0 + timedelta(hours=9), T0 + timedelta(hours=10), FreeBusy.BUSY, "Planning")


def appointment(**changes: Any) -> Appointment:
    return dataclasses.replace(PLANNING, **changes)


def entry(item_id: str, state: FreeBusy, start_h: float, end_h: float) -> PresenceEntry:
    template = DEFAULT.show[state]
    start, end = T0 + timedelta(hours=start_h), T0 + timedelta(hours=end_h)
    return PresenceEntry(item_id, template, state, start, end, all_day=False, subject=None)


DAY = Window(T0, T0 + timedelta(days=1))


# --- the shipped mapping -------------------------------------------------------------------------------------


def test_the_shipped_mapping_is_the_documented_one() -> None:
    assert DEFAULT.ignore_prefix == "*"
    assert DEFAULT.days_ahead == 90
    assert dict(DEFAULT.show) == {
        FreeBusy.BUSY: "meeting",
        FreeBusy.OOF: "absence",
        FreeBusy.TENTATIVE: "tentative",
        FreeBusy.WORKING_ELSEWHERE: "remote",
    }
    assert DEFAULT.precedence == (FreeBusy.OOF, FreeBusy.BUSY, FreeBusy.WORKING_ELSEWHERE, FreeBusy.TENTATIVE)
    assert DEFAULT.templates["absence"] == TemplateRule("absence", FreeBusy.OOF, all_day=True, state_until=END_OF_DAY)
    assert DEFAULT.templates["meeting"].state_until == timedelta(hours=1)


def test_the_shipped_mapping_sits_next_to_its_schema() -> None:
    assert default_mapping_path().is_file()
    assert default_mapping_path().with_name("schema.json").is_file()


# --- map: Exchange -> workforce ------------------------------------------------------------------------------


def test_a_busy_appointment_becomes_its_template() -> None:
    found = DEFAULT.map(appointment())
    assert found == PresenceEntry(
        "item-1", "meeting", FreeBusy.BUSY, T0 + timedelta(hours=9), T0 + timedelta(hours=10), False, "Planning"
    )


@pytest.mark.parametrize("state", [FreeBusy.FREE, FreeBusy.UNKNOWN])
def test_free_and_unknown_are_never_shown(state: FreeBusy) -> None:
    assert DEFAULT.map(appointment(free_busy=state)) is None


def test_a_state_without_a_template_is_not_shown(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, MAPPING))
    assert mapping.map(appointment(free_busy=FreeBusy.TENTATIVE)) is None


def test_a_subject_starting_with_the_ignore_prefix_is_not_shown() -> None:
    assert DEFAULT.map(appointment(subject="*dentist")) is None


def test_the_ignore_prefix_counts_after_leading_spaces() -> None:
    assert DEFAULT.map(appointment(subject="  *dentist")) is None


def test_the_ignore_prefix_elsewhere_in_the_subject_does_not_hide() -> None:
    found = DEFAULT.map(appointment(subject="Review *draft*"))
    assert found is not None
    assert found.subject == "Review *draft*"


def test_a_private_appointment_is_shown_without_its_subject() -> None:
    found = DEFAULT.map(appointment(subject="Doctor", private=True))
    assert found is not None
    assert found.template == "meeting"
    assert found.subject is None


def test_a_private_appointment_with_the_ignore_prefix_is_not_shown() -> None:
    assert DEFAULT.map(appointment(subject="*Doctor", private=True)) is None


def test_all_day_is_carried_over() -> None:
    found = DEFAULT.map(
        appointment(free_busy=FreeBusy.OOF, subject="Holiday", all_day=True, end=T0 + timedelta(days=2))
    )
    assert found is not None
    assert (found.template, found.all_day) == ("absence", True)


@pytest.mark.parametrize(
    ("changes", "outcome", "rule", "template"),
    [
        ({}, Outcome.SHOWN, Rule.SHOW, "meeting"),
        ({"private": True}, Outcome.SHOWN_WITHOUT_SUBJECT, Rule.PRIVATE, "meeting"),
        ({"subject": " *Doctor", "private": True}, Outcome.HIDDEN, Rule.IGNORE_PREFIX, None),
        ({"free_busy": FreeBusy.FREE}, Outcome.HIDDEN, Rule.FREE, None),
        ({"free_busy": FreeBusy.UNKNOWN}, Outcome.HIDDEN, Rule.NO_TEMPLATE, None),
    ],
)
def test_decide_names_the_rule_that_map_applies(
    changes: dict[str, Any], outcome: Outcome, rule: Rule, template: str | None
) -> None:
    shown = appointment(**changes)
    decision = DEFAULT.decide(shown.subject, shown.free_busy, private=shown.private)
    assert (decision.outcome, decision.rule, decision.template) == (outcome, rule, template)
    entry = DEFAULT.map(shown)
    assert (entry.template if entry else None) == template
    assert (entry is not None and entry.subject is None) == (outcome is Outcome.SHOWN_WITHOUT_SUBJECT)


def test_why_hidden_keeps_its_few_words() -> None:
    assert DEFAULT.why_hidden("*x", FreeBusy.BUSY) == "ignore character"
    assert DEFAULT.why_hidden("x", FreeBusy.UNKNOWN) == "unknown: no template"
    assert DEFAULT.why_hidden("x", FreeBusy.BUSY) is None


def test_the_window_is_the_mirrored_days_from_todays_utc_midnight() -> None:
    local_evening = datetime(2026, 3, 2, 23, 30, tzinfo=ZoneInfo("America/New_York"))  # 3 March in UTC
    assert DEFAULT.window(local_evening) == Window(T0 + timedelta(days=1), T0 + timedelta(days=91))


def test_a_mapping_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    path = write(tmp_path, MAPPING)
    path.chmod(0o640)
    broken = MAPPING.replace("days_ahead: 30", "days_ahead: 0")

    with pytest.raises(UserError) as caught:
        write_mapping_file(path, broken.encode())

    assert caught.value.problems == ("mapping.yaml:3: days_ahead: 0 is less than the minimum of 1",)
    assert path.read_text() == textwrap.dedent(MAPPING).lstrip("\n")
    write_mapping_file(path, MAPPING.replace("days_ahead: 30", "days_ahead: 7").encode())
    assert load_mapping(path).days_ahead == 7
    assert (path.stat().st_mode & 0o777, sorted(p.name for p in tmp_path.iterdir())) == (0o640, ["mapping.yaml"])


# --- rule and state_end: workforce -> Exchange ---------------------------------------------------------------


def test_a_rule_carries_its_optional_fields(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, MAPPING))
    assert mapping.rule("meeting") == TemplateRule(
        "meeting", FreeBusy.BUSY, category="Presence", all_day=False, state_until=timedelta(hours=1), subject="Meeting"
    )


def test_an_unknown_template_is_a_clear_error() -> None:
    with pytest.raises(UnknownTemplate, match=r"'lunch'.*absence, meeting, remote, tentative") as caught:
        DEFAULT.rule("lunch")
    assert caught.value.template == "lunch"


def test_end_of_day_is_the_next_utc_midnight() -> None:
    now = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert DEFAULT.state_end("remote", now) == datetime(2026, 3, 3, tzinfo=UTC)


def test_end_of_day_at_midnight_is_the_following_midnight() -> None:
    assert DEFAULT.state_end("remote", T0) == T0 + timedelta(days=1)


def test_end_of_day_is_reckoned_in_the_person_s_zone_not_in_the_zone_now_is_written_in() -> None:
    now = datetime(2026, 3, 3, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 2026-03-02 23:30 UTC
    assert DEFAULT.state_end("remote", now) == datetime(2026, 3, 3, tzinfo=UTC)
    assert DEFAULT.state_end("remote", now, "Europe/Berlin") == datetime(2026, 3, 3, 23, tzinfo=UTC)


def test_end_of_day_in_los_angeles_is_their_midnight_the_same_utc_evening() -> None:
    now = datetime(2027, 3, 13, 20, tzinfo=UTC)  # 12:00 PST
    assert DEFAULT.state_end("remote", now, "America/Los_Angeles") == datetime(2027, 3, 14, 8, tzinfo=UTC)


def test_end_of_day_on_the_night_the_clocks_go_forward_comes_an_hour_earlier_in_utc() -> None:
    now = datetime(2027, 3, 28, 0, 30, tzinfo=UTC)  # 01:30 CET, the day Berlin moves to CEST
    assert DEFAULT.state_end("remote", now, "Europe/Berlin") == datetime(2027, 3, 28, 22, tzinfo=UTC)


def test_a_duration_runs_from_now() -> None:
    now = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert DEFAULT.state_end("meeting", now) == now + timedelta(hours=1)


def test_an_all_day_duration_counts_days_from_todays_midnight(tmp_path: Path) -> None:
    mapping = load_mapping(
        write(
            tmp_path,
            MAPPING.replace("{show_as: oof, all_day: true}", "{show_as: oof, all_day: true, state_until: P2D}"),
        )
    )
    assert mapping.state_end("absence", datetime(2026, 3, 2, 14, 30, tzinfo=UTC)) == datetime(2026, 3, 4, tzinfo=UTC)
    # Two calendar days in Berlin across the change to summer time: 47 hours, ending at local midnight.
    berlin = mapping.state_end("absence", datetime(2027, 3, 27, 12, tzinfo=UTC), "Europe/Berlin")
    assert berlin == datetime(2027, 3, 28, 22, tzinfo=UTC)


# --- timeline ------------------------------------------------------------------------------------------------


def test_an_oof_day_with_a_meeting_inside_stays_oof() -> None:
    segments = DEFAULT.timeline([entry("day", FreeBusy.OOF, 0, 24), entry("mtg", FreeBusy.BUSY, 9, 10)], DAY)
    assert segments == [Segment(T0, T0 + timedelta(days=1), "absence", FreeBusy.OOF, "day")]


def test_tentative_overlapping_busy_shows_busy() -> None:
    segments = DEFAULT.timeline([entry("t", FreeBusy.TENTATIVE, 9, 11), entry("b", FreeBusy.BUSY, 10, 12)], DAY)
    assert [(s.item_id, s.start.hour, s.end.hour) for s in segments] == [("t", 9, 10), ("b", 10, 12)]


def test_a_weaker_entry_shows_again_after_a_stronger_one_ends() -> None:
    segments = DEFAULT.timeline([entry("t", FreeBusy.TENTATIVE, 9, 12), entry("b", FreeBusy.BUSY, 10, 11)], DAY)
    assert [(s.item_id, s.start.hour, s.end.hour) for s in segments] == [("t", 9, 10), ("b", 10, 11), ("t", 11, 12)]


def test_gaps_stay_uncovered() -> None:
    segments = DEFAULT.timeline([entry("a", FreeBusy.BUSY, 9, 10), entry("b", FreeBusy.BUSY, 11, 12)], DAY)
    assert [(s.start.hour, s.end.hour) for s in segments] == [(9, 10), (11, 12)]


def test_segments_are_clipped_to_the_window() -> None:
    segments = DEFAULT.timeline([entry("long", FreeBusy.OOF, -5, 30), entry("out", FreeBusy.BUSY, 25, 26)], DAY)
    assert segments == [Segment(DAY.start, DAY.end, "absence", FreeBusy.OOF, "long")]


def test_a_zero_length_entry_has_no_segment_and_splits_nothing() -> None:
    segments = DEFAULT.timeline([entry("b", FreeBusy.BUSY, 9, 12), entry("mark", FreeBusy.OOF, 10, 10)], DAY)
    assert [(s.item_id, s.start.hour, s.end.hour) for s in segments] == [("b", 9, 12)]


def test_stretches_of_one_entry_split_by_a_weaker_one_are_merged() -> None:
    segments = DEFAULT.timeline(
        [entry("b", FreeBusy.BUSY, 9, 12), entry("t1", FreeBusy.TENTATIVE, 10, 11), entry("t2", FreeBusy.BUSY, 12, 13)],
        DAY,
    )
    assert [(s.item_id, s.start.hour, s.end.hour) for s in segments] == [("b", 9, 12), ("t2", 12, 13)]


def test_equal_states_go_to_the_earlier_start_then_the_smaller_item_id() -> None:
    entries = [entry("z", FreeBusy.BUSY, 9, 11), entry("y", FreeBusy.BUSY, 10, 12), entry("a", FreeBusy.BUSY, 10, 12)]
    segments = DEFAULT.timeline(entries, DAY)
    assert [(s.item_id, s.start.hour, s.end.hour) for s in segments] == [("z", 9, 11), ("a", 11, 12)]
    assert DEFAULT.timeline(reversed(entries), DAY) == segments


def test_an_empty_entry_list_gives_an_empty_timeline() -> None:
    assert DEFAULT.timeline([], DAY) == []


STATES = st.sampled_from([FreeBusy.OOF, FreeBusy.BUSY, FreeBusy.WORKING_ELSEWHERE, FreeBusy.TENTATIVE])
ENTRIES = st.lists(
    st.builds(
        lambda item, state, start, length: entry(f"i{item}", state, start / 4, (start + length) / 4),
        st.integers(0, 6),
        STATES,
        st.integers(-8, 100),
        st.integers(1, 40),
    ),
    max_size=12,
)
WINDOWS = st.builds(
    lambda start, length: Window(T0 + timedelta(hours=start / 4), T0 + timedelta(hours=(start + length) / 4)),
    st.integers(0, 60),
    st.integers(1, 60),
)


def best(entries: list[PresenceEntry], at: datetime) -> PresenceEntry | None:
    rank = {state: index for index, state in enumerate(DEFAULT.precedence)}
    covering = [e for e in entries if e.start <= at < e.end]
    return min(covering, key=lambda e: (rank[e.free_busy], e.start, e.item_id, e.end), default=None)


@given(ENTRIES, WINDOWS)
def test_timeline_segments_are_sorted_disjoint_and_inside_the_window(
    entries: list[PresenceEntry], window: Window
) -> None:
    segments = DEFAULT.timeline(entries, window)
    for segment in segments:
        assert window.start <= segment.start < segment.end <= window.end
    for before, after in itertools.pairwise(segments):
        assert before.end <= after.start


@given(ENTRIES, WINDOWS)
def test_timeline_shows_the_best_entry_at_every_instant_and_nothing_else(
    entries: list[PresenceEntry], window: Window
) -> None:
    segments = DEFAULT.timeline(entries, window)
    instants = {window.start} | {t for e in entries for t in (e.start, e.end)} | {s.start for s in segments}
    probes = {t + offset for t in instants for offset in (timedelta(0), timedelta(minutes=7))}
    for at in (t for t in probes if window.start <= t < window.end):
        shown = next((s for s in segments if s.start <= at < s.end), None)
        expected = best(entries, at)
        if expected is None:
            assert shown is None
        else:
            assert shown is not None
            assert (shown.item_id, shown.free_busy, shown.template) == (
                expected.item_id,
                expected.free_busy,
                expected.template,
            )


@given(ENTRIES, WINDOWS)
def test_timeline_merges_adjacent_stretches_of_one_item_and_template(
    entries: list[PresenceEntry], window: Window
) -> None:
    segments = DEFAULT.timeline(entries, window)
    for before, after in itertools.pairwise(segments):
        assert (before.end, before.item_id, before.template) != (after.start, after.item_id, after.template)


# --- loading: problems, each with its line -------------------------------------------------------------------


def test_precedence_left_out_takes_the_default_order(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, "show: {busy: meeting}\ntemplates:\n  meeting: {show_as: busy}\n"))
    assert mapping.precedence == (FreeBusy.OOF, FreeBusy.BUSY, FreeBusy.WORKING_ELSEWHERE, FreeBusy.TENTATIVE)
    assert (mapping.ignore_prefix, mapping.days_ahead) == ("*", 90)
    assert mapping.rule("meeting").state_until is END_OF_DAY


def test_precedence_may_name_states_that_are_not_shown(tmp_path: Path) -> None:
    text = "show: {busy: meeting}\ntemplates: {meeting: {show_as: busy}}\nprecedence: [oof, busy, tentative]\n"
    assert load_mapping(write(tmp_path, text)).precedence == (FreeBusy.OOF, FreeBusy.BUSY, FreeBusy.TENTATIVE)


def test_a_shown_template_must_be_defined(tmp_path: Path) -> None:
    assert "mapping.yaml:5: show.oof: template 'absense' is not defined under templates" in problems(
        tmp_path, MAPPING.replace("oof: absence", "oof: absense")
    )


def test_precedence_must_name_every_shown_state(tmp_path: Path) -> None:
    found = problems(tmp_path, MAPPING.replace("[oof, busy]", "[oof]"))
    assert "mapping.yaml:10: precedence: shown states missing: busy" in found


def test_precedence_must_not_name_a_state_twice(tmp_path: Path) -> None:
    assert "mapping.yaml:10: precedence[2]: 'oof' is listed twice" in problems(
        tmp_path, MAPPING.replace("[oof, busy]", "[oof, busy, oof]")
    )


def test_free_may_not_be_shown(tmp_path: Path) -> None:
    found = problems(tmp_path, MAPPING.replace("  busy: meeting\n", "  busy: meeting\n  free: available\n"))
    assert "mapping.yaml:5: show.free: unknown key" in found


def test_free_may_not_be_written(tmp_path: Path) -> None:
    found = problems(tmp_path, MAPPING.replace("training: {show_as: busy", "training: {show_as: free"))
    assert "mapping.yaml:9: templates.training.show_as: 'free' is not one of" in found


@pytest.mark.parametrize(
    ("until", "message"),
    [
        ("3h", "'3h' is not end_of_day or an ISO 8601 duration such as PT30M, PT8H or P1D"),
        ("P1M", "'P1M' is not end_of_day or an ISO 8601 duration"),
        ("PT0M", "must be longer than zero"),
        # Added to now, these overflowed a datetime when a state was set (a 500).
        ("P3000000D", "P3000000D is longer than P366D"),
        ("P99999999999D", "P99999999999D is longer than P366D"),
    ],
)
def test_state_until_must_be_end_of_day_or_a_positive_duration(tmp_path: Path, until: str, message: str) -> None:
    found = problems(tmp_path, MAPPING.replace("state_until: PT1H", f"state_until: {until}"))
    assert f"mapping.yaml:8: templates.meeting.state_until: {message}" in found


def test_an_all_day_template_needs_whole_days(tmp_path: Path) -> None:
    found = problems(tmp_path, MAPPING.replace("all_day: true}", "all_day: true, state_until: PT3H}"))
    assert "mapping.yaml:7: templates.absence.state_until: PT3H is not a whole number of days" in found


@pytest.mark.parametrize("prefix", ['""', '" "', '"******"'])
def test_the_ignore_prefix_is_one_to_five_visible_characters(tmp_path: Path, prefix: str) -> None:
    assert "mapping.yaml:1: ignore_prefix:" in problems(tmp_path, MAPPING.replace('"*"', prefix))


@pytest.mark.parametrize("days", ["0", "731", "ten"])
def test_days_ahead_is_one_to_730(tmp_path: Path, days: str) -> None:
    assert "mapping.yaml:2: days_ahead:" in problems(tmp_path, MAPPING.replace("days_ahead: 30", f"days_ahead: {days}"))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MAPPING.replace("days_ahead: 30", "days_ahead: 0").replace("oof: absence", "oof: absense")
    text = text.replace("state_until: PT1H", "state_until: 1h").replace("[oof, busy]", "[oof, oof]")
    with pytest.raises(UserError) as caught:
        load_mapping(write(tmp_path, text))
    assert len(caught.value.problems) == 5
    assert caught.value.summary.startswith("template mapping ")


def test_the_template_name_in_show_must_be_a_string(tmp_path: Path) -> None:
    assert "mapping.yaml:4: show.busy: 42 is not of type 'string'" in problems(
        tmp_path, MAPPING.replace("busy: meeting", "busy: 42")
    )


# --- live reload ---------------------------------------------------------------------------------------------


def edit(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def test_a_changed_file_is_applied_on_reload(tmp_path: Path) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    edit(path, MAPPING.replace("busy: meeting", "busy: training"))
    assert live.reload() is True
    assert live.current.show[FreeBusy.BUSY] == "training"


def test_an_unchanged_file_reloads_as_unchanged(tmp_path: Path) -> None:
    live = LiveMapping(write(tmp_path, MAPPING))
    assert live.reload() is False


def test_a_comment_only_edit_is_not_a_change(tmp_path: Path) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    edit(path, "# edited\n" + MAPPING)
    assert live.reload() is False


def test_an_invalid_edit_keeps_the_mapping_in_force(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    before = live.current
    edit(path, MAPPING.replace("oof: absence", "oof: absense"))
    assert live.reload() is False
    assert live.current is before
    assert "show.oof: template 'absense' is not defined" in caplog.text


def test_the_same_invalid_file_is_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    edit(path, MAPPING.replace("oof: absence", "oof: absense"))
    live.reload()
    live.reload()
    edit(path, MAPPING.replace("oof: absence", "oof: absense") + "# still broken\n")
    live.reload()
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_different_problem_is_reported_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    edit(path, MAPPING.replace("oof: absence", "oof: absense"))
    live.reload()
    edit(path, MAPPING.replace("days_ahead: 30", "days_ahead: 0"))
    live.reload()
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_fixing_the_file_applies_it_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    edit(path, MAPPING.replace("oof: absence", "oof: absense"))
    live.reload()
    caplog.set_level(logging.INFO)
    edit(path, MAPPING.replace("days_ahead: 30", "days_ahead: 60"))
    assert live.reload() is True
    assert live.current.days_ahead == 60
    assert "is valid again" in caplog.text


def test_a_file_that_vanishes_for_a_moment_keeps_the_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    before = live.current
    path.unlink()
    assert live.reload() is False
    edit(path, MAPPING)
    assert live.reload() is False
    assert live.current == before


def test_an_invalid_file_at_start_up_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="days_ahead"):
        LiveMapping(write(tmp_path, MAPPING.replace("days_ahead: 30", "days_ahead: 0")))


async def test_watch_calls_back_with_the_old_and_the_new_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    seen: asyncio.Queue[tuple[TemplateMapping, TemplateMapping]] = asyncio.Queue()

    async def on_change(old: TemplateMapping, new: TemplateMapping) -> None:
        await seen.put((old, new))

    watcher = asyncio.create_task(live.watch(0.01, on_change))
    try:
        edit(path, MAPPING.replace("days_ahead: 30", "days_ahead: 45"))
        old, new = await asyncio.wait_for(seen.get(), timeout=5)
    finally:
        watcher.cancel()
    assert (old.days_ahead, new.days_ahead) == (30, 45)


# Which threads open a file: an audit hook (PEP 578) sees every real open. A hook cannot be removed, so it is added
# once and records only the paths a test names.
_OPENED_BY: dict[str, list[int]] = {}


def _note_open(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and isinstance(args[0], str | Path) and str(args[0]) in _OPENED_BY:
        _OPENED_BY[str(args[0])].append(threading.get_ident())


@functools.cache
def _watch_opens() -> None:
    sys.addaudithook(_note_open)


async def test_watch_reads_and_parses_the_file_off_the_event_loop(tmp_path: Path) -> None:
    path = write(tmp_path, MAPPING)
    live = LiveMapping(path)
    edit(path, MAPPING.replace("days_ahead: 30", "days_ahead: 45"))
    changed = asyncio.Event()

    async def on_change(old: TemplateMapping, new: TemplateMapping) -> None:
        changed.set()

    _watch_opens()
    opened = _OPENED_BY.setdefault(str(path), [])
    watcher = asyncio.create_task(live.watch(0.01, on_change))
    try:
        await asyncio.wait_for(changed.wait(), timeout=5)
    finally:
        watcher.cancel()
        del _OPENED_BY[str(path)]
    assert live.latest.days_ahead == 45
    assert opened  # the read that hashes it, the load that parses it
    assert threading.get_ident() not in opened


# --- fuzzing: any mapping is loaded or refused with problems, never an exception of another kind ----------------


def usable_if_loaded(path: Path) -> None:
    mapping = loaded_or_refused(lambda: load_mapping(path))
    for template in mapping.templates if mapping is not None else ():
        mapping.state_end(template, T0)  # durations that load never overflow a date


@pytest.mark.fuzz
@given(document=mutations(yaml.safe_load(MAPPING)))
@fuzz_settings(150)
def test_any_mapping_document_is_loaded_or_refused_with_problems(tmp_path: Path, document: object) -> None:
    usable_if_loaded(write(tmp_path, yaml.safe_dump(document)))


@pytest.mark.fuzz
@given(text=YAML_TEXT)
@fuzz_settings(150)
def test_any_mapping_text_is_loaded_or_refused_with_problems(tmp_path: Path, text: str) -> None:
    usable_if_loaded(write(tmp_path, text))
