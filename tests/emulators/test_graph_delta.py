"""calendarView delta in the Graph emulator, checked against the documented pages in tests/fixtures/graph."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.graph import GraphEmulator
from tests.emulators.graph_helpers import Answer, GraphHttp, assert_shape, event_payload, fixture

EVENTS = "/v1.0/users/AdeleV@contoso.com/events"
DELTA = "/v1.0/users/AdeleV@contoso.com/calendarView/delta"
WINDOW = "startDateTime=2026-11-24T00:00:00Z&endDateTime=2026-11-28T00:00:00Z"


@pytest.fixture
async def calendar(graph: GraphHttp) -> dict[str, Any]:
    """The situation of delta_page_1.json: a single event, a daily series, one occurrence moved (an exception)."""
    single = (await graph.post(EVENTS, event_payload())).body
    master = (
        await graph.post(
            EVENTS,
            event_payload(
                subject="Daily stand-up",
                start="2026-11-25T07:00:00",
                end="2026-11-25T07:30:00",
                recurrence={
                    "pattern": {"type": "daily", "interval": 1},
                    "range": {"type": "noEnd", "startDate": "2026-11-25"},
                },
            ),
        )
    ).body
    view = await graph.get(
        "/v1.0/users/AdeleV@contoso.com/calendarView?startDateTime=2026-11-27T00:00:00Z&endDateTime=2026-11-27T23:00:00Z"
    )
    moved = {
        "subject": "Daily stand-up (moved)",
        "showAs": "tentative",
        "start": {"dateTime": "2026-11-27T08:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-27T08:30:00", "timeZone": "UTC"},
    }
    exception = (await graph.patch(f"{EVENTS}/{view.body['value'][0]['id']}", moved)).body
    return {"single": single, "master": master, "exception": exception}


async def delta_round(graph: GraphHttp, url: str, *, page_size: int | None = None) -> tuple[list[Answer], str]:
    """Every page of one round, and its deltaLink."""
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    pages = [await graph.get(url, headers=headers)]
    while "@odata.nextLink" in pages[-1].body:
        assert pages[-1].status == 200, pages[-1].body
        pages.append(await graph.get(pages[-1].body["@odata.nextLink"], headers=headers))
    assert pages[-1].status == 200, pages[-1].body
    return pages, pages[-1].body["@odata.deltaLink"]


def items_of(pages: list[Answer]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page.body["value"]]


async def test_first_round_matches_the_documented_pages(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    pages, _ = await delta_round(graph, f"{DELTA}?{WINDOW}", page_size=3)

    documented_first, documented_last = fixture("delta_page_1.json"), fixture("delta_page_2_final.json")
    assert len(pages) == 2
    assert set(pages[0].body) == set(documented_first)
    assert set(pages[1].body) == set(documented_last)
    items = items_of(pages)
    assert [item["type"] for item in items] == [item["type"] for item in documented_first["value"]]
    single, first_stub, second_stub, exception = items
    assert_shape(documented_first["value"][0], single)
    assert_shape(documented_first["value"][1], first_stub, exact=True)
    assert_shape(documented_first["value"][2], second_stub, exact=True)
    assert_shape(documented_first["value"][3], exception)
    assert first_stub["seriesMasterId"] == calendar["master"]["id"]
    assert first_stub["start"] == {"dateTime": "2026-11-25T07:00:00.0000000", "timeZone": "UTC"}
    assert exception["id"] == calendar["exception"]["id"]


async def test_first_round_never_sends_series_masters(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    pages, _ = await delta_round(graph, f"{DELTA}?{WINDOW}")

    assert calendar["master"]["id"] not in {item["id"] for item in items_of(pages)}


async def test_links_are_absolute_on_the_emulators_base_url(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    pages, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}", page_size=2)

    assert pages[0].body["@odata.context"] == f"{graph.base_url}/v1.0/$metadata#Collection(event)"
    assert pages[0].body["@odata.nextLink"].startswith(f"{graph.base_url}{DELTA}?$skiptoken=")
    assert delta_link.startswith(f"{graph.base_url}{DELTA}?$deltatoken=")


async def test_page_size_follows_prefer_maxpagesize(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    answer = await graph.get(f"{DELTA}?{WINDOW}", headers={"Prefer": "odata.maxpagesize=2"})

    assert len(answer.body["value"]) == 2
    assert answer.headers["Preference-Applied"] == "odata.maxpagesize=2"


async def test_skip_token_link_can_be_fetched_again(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    first = await graph.get(f"{DELTA}?{WINDOW}", headers={"Prefer": "odata.maxpagesize=2"})
    link = first.body["@odata.nextLink"]

    once = await graph.get(link, headers={"Prefer": "odata.maxpagesize=2"})
    twice = await graph.get(link, headers={"Prefer": "odata.maxpagesize=2"})

    assert [item["id"] for item in once.body["value"]] == [item["id"] for item in twice.body["value"]]


async def test_next_round_returns_only_what_changed(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    changed = (await graph.patch(f"{EVENTS}/{calendar['single']['id']}", {"subject": "Customer visit (2)"})).body

    pages, _ = await delta_round(graph, delta_link)

    assert [(item["id"], item["subject"]) for item in items_of(pages)] == [(changed["id"], "Customer visit (2)")]


async def test_nothing_changed_gives_an_empty_page_with_a_delta_link(
    graph: GraphHttp, calendar: dict[str, Any]
) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")

    answer = await graph.get(delta_link)

    assert answer.body["value"] == []
    assert "@odata.deltaLink" in answer.body


async def test_delta_token_can_be_replayed(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    await graph.patch(f"{EVENTS}/{calendar['single']['id']}", {"subject": "Again"})

    once, _ = await delta_round(graph, delta_link)
    twice, _ = await delta_round(graph, delta_link)

    assert [item["id"] for item in items_of(once)] == [item["id"] for item in items_of(twice)] != []


async def test_master_change_changes_every_occurrence_etag(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    first, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    before = {item["id"]: item["@odata.etag"] for item in items_of(first) if item["type"] == "occurrence"}
    await graph.patch(f"{EVENTS}/{calendar['master']['id']}", {"subject": "Stand-up"})

    pages, _ = await delta_round(graph, delta_link)

    after = {item["id"]: item["@odata.etag"] for item in items_of(pages)}
    assert set(after) == set(before)
    assert all(after[item_id] != etag for item_id, etag in before.items())


async def test_deleted_event_comes_back_removed(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    await graph.delete(f"{EVENTS}/{calendar['single']['id']}")

    pages, _ = await delta_round(graph, delta_link)

    documented = fixture("delta_removed.json")
    assert set(pages[-1].body) == set(documented)
    assert_shape(documented["value"][0], items_of(pages)[0], exact=True)
    assert items_of(pages) == [
        {"@odata.type": "#microsoft.graph.event", "id": calendar["single"]["id"], "@removed": {"reason": "deleted"}}
    ]


async def test_event_moved_out_of_the_window_is_removed(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    await graph.patch(
        f"{EVENTS}/{calendar['single']['id']}",
        {
            "start": {"dateTime": "2026-12-24T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-24T10:00:00", "timeZone": "UTC"},
        },
    )

    pages, _ = await delta_round(graph, delta_link)

    assert [(item["id"], "@removed" in item) for item in items_of(pages)] == [(calendar["single"]["id"], True)]


async def test_event_deleted_outside_the_window_is_reported_removed(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    far = (await graph.post(EVENTS, event_payload(start="2027-05-01T09:00:00", end="2027-05-01T10:00:00"))).body
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    await graph.delete(f"{EVENTS}/{far['id']}")

    pages, _ = await delta_round(graph, delta_link)

    assert [item["id"] for item in items_of(pages) if "@removed" in item] == [far["id"]]


async def test_cancelled_occurrence_is_removed(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    first, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    occurrence = next(item for item in items_of(first) if item["start"]["dateTime"].startswith("2026-11-26"))
    await graph.delete(f"{EVENTS}/{occurrence['id']}")

    pages, _ = await delta_round(graph, delta_link)

    removed = [item["id"] for item in items_of(pages) if "@removed" in item]
    assert removed == [occurrence["id"]]


async def test_new_exception_arrives_in_full(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    first, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    occurrence = next(item for item in items_of(first) if item["start"]["dateTime"].startswith("2026-11-26"))
    await graph.patch(f"{EVENTS}/{occurrence['id']}", {"showAs": "oof"})

    pages, _ = await delta_round(graph, delta_link)

    exception = next(item for item in items_of(pages) if item["id"] == occurrence["id"])
    assert (exception["type"], exception["showAs"], exception["subject"]) == ("exception", "oof", "Daily stand-up")


async def test_window_is_fixed_inside_the_token(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    await graph.post(EVENTS, event_payload(start="2026-11-29T09:00:00", end="2026-11-29T10:00:00"))

    pages, _ = await delta_round(graph, delta_link)

    assert items_of(pages) == []


async def test_empty_pages_carry_fresh_next_links(
    graph: GraphHttp, graph_emulator: GraphEmulator, calendar: dict[str, Any]
) -> None:
    graph_emulator.empty_delta_pages(2, user="AdeleV@contoso.com")

    pages, _ = await delta_round(graph, f"{DELTA}?{WINDOW}")

    documented = fixture("delta_empty_page_with_next.json")
    assert set(pages[0].body) == set(documented)
    assert [len(page.body["value"]) for page in pages] == [0, 0, 4]
    assert pages[0].body["@odata.nextLink"] != pages[1].body["@odata.nextLink"]


async def test_expired_token_answers_410_sync_state_not_found(
    graph: GraphHttp, graph_emulator: GraphEmulator, calendar: dict[str, Any]
) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    graph_emulator.expire_delta_tokens("AdeleV@contoso.com")

    answer = await graph.get(delta_link)

    assert answer.status == 410
    assert answer.body["error"]["code"] == "SyncStateNotFound"


async def test_expired_token_can_answer_400_as_documented(
    graph: GraphHttp, graph_emulator: GraphEmulator, calendar: dict[str, Any]
) -> None:
    _, delta_link = await delta_round(graph, f"{DELTA}?{WINDOW}")
    graph_emulator.expire_delta_tokens("AdeleV@contoso.com", status=400)

    answer = await graph.get(delta_link)

    documented = fixture("error_sync_state_not_found.json")
    assert answer.status == documented["_status"]
    assert answer.body["error"]["code"] == documented["body"]["error"]["code"]
    assert answer.body["error"]["message"] == documented["body"]["error"]["message"]


async def test_unknown_token_answers_sync_state_not_found(graph: GraphHttp) -> None:
    answer = await graph.get(f"{DELTA}?$deltatoken=never-issued")

    assert answer.body["error"]["code"] == "SyncStateNotFound"


async def test_delta_path_with_parentheses_is_accepted(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    answer = await graph.get(f"{DELTA}()?{WINDOW}")

    assert answer.status == 200
    assert len(answer.body["value"]) == 4


async def test_delta_honours_prefer_timezone(graph: GraphHttp, calendar: dict[str, Any]) -> None:
    answer = await graph.get(f"{DELTA}?{WINDOW}", headers={"Prefer": 'outlook.timezone="Eastern Standard Time"'})

    assert answer.body["value"][0]["start"] == {
        "dateTime": "2026-11-24T04:00:00.0000000",
        "timeZone": "Eastern Standard Time",
    }


async def test_first_round_needs_a_window(graph: GraphHttp) -> None:
    answer = await graph.get(DELTA)

    assert answer.status == 400
