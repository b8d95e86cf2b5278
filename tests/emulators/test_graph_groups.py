"""Groups in the Graph emulator, as Graph's `GET /groups/{id}/transitiveMembers` answers (graph_groups.py)."""

from __future__ import annotations

import aiohttp
import pytest

from emulators.graph import GraphEmulator
from emulators.graph_groups import DirectoryGroup
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.emulators.graph_helpers import GraphHttp, fetch_token


async def members(graph: GraphHttp, group_id: str, query: str = "") -> tuple[list[dict[str, object]], int]:
    """Every object of every page, and how many pages it took."""
    found, pages = [], 0
    target = f"/v1.0/groups/{group_id}/transitiveMembers{query}"
    while target:
        answer = await graph.get(target)
        assert answer.status == 200, answer.body
        found += answer.body["value"]
        pages += 1
        target = answer.body.get("@odata.nextLink", "")
    return found, pages


async def test_nested_members_come_once_each_beside_the_nested_group(
    graph_emulator: GraphEmulator, graph: GraphHttp, adele: DirectoryUser, bob: DirectoryUser
) -> None:
    carol = graph_emulator.add_user("carol@contoso.com", employee_id="E3")
    inner = graph_emulator.add_group("Sales Berlin", [carol.user_principal_name, adele.id])
    outer = graph_emulator.add_group("Sales", [adele.user_principal_name, inner.id, bob.mail])
    graph_emulator.add_group_members(inner.id, [outer.id])  # a cycle, as Entra allows through other groups

    found, _ = await members(graph, outer.id, "?$select=id,mail,employeeId")

    assert [(item["@odata.type"], item["id"]) for item in found] == [
        ("#microsoft.graph.user", adele.id),
        ("#microsoft.graph.group", inner.id),
        ("#microsoft.graph.user", bob.id),
        ("#microsoft.graph.user", carol.id),
    ]
    assert found[3] == {"@odata.type": "#microsoft.graph.user", "id": carol.id, "mail": carol.mail, "employeeId": "E3"}


async def test_pages_follow_top_with_an_opaque_skiptoken(graph_emulator: GraphEmulator, graph: GraphHttp) -> None:
    people = [graph_emulator.add_user(f"p{n}@contoso.com") for n in range(7)]
    group = graph_emulator.add_group("Team", [person.id for person in people])

    first = await graph.get(f"/v1.0/groups/{group.id}/transitiveMembers?$top=3")
    found, pages = await members(graph, group.id, "?$top=3")

    assert "$skiptoken=" in first.body["@odata.nextLink"]
    assert "$top=3" in first.body["@odata.nextLink"]
    assert (len(first.body["value"]), pages) == (3, 3)
    assert [item["id"] for item in found] == [person.id for person in people]


async def test_a_page_size_graph_does_not_take_is_refused(graph_emulator: GraphEmulator, graph: GraphHttp) -> None:
    group = graph_emulator.add_group("Team")

    answer = await graph.get(f"/v1.0/groups/{group.id}/transitiveMembers?$top=1000")

    assert answer.status == 400
    assert answer.body["error"]["code"] == "Request_UnsupportedQuery"
    assert (
        answer.body["error"]["message"] == "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    )


async def test_the_server_may_page_below_top(graph_emulator: GraphEmulator, graph: GraphHttp) -> None:
    group = graph_emulator.add_group("Team", [graph_emulator.add_user(f"p{n}@contoso.com").id for n in range(5)])
    graph_emulator.faults.directory_page = 2

    found, pages = await members(graph, group.id, "?$top=999")

    assert (len(found), pages) == (5, 3)


async def test_an_unknown_group_is_404_in_the_directorys_words(graph: GraphHttp) -> None:
    answer = await graph.get("/v1.0/groups/5f6a7b8c-0000-4000-8000-000000000000/transitiveMembers")

    assert (answer.status, answer.body["error"]["code"]) == (404, "Request_ResourceNotFound")


async def granted(
    graph_emulator: GraphEmulator, http_session: aiohttp.ClientSession, app: AppRegistration, roles: list[str]
) -> GraphHttp:
    """A client whose token carries only `roles`."""
    graph_emulator.grant(app.client_id, roles)
    token = await fetch_token(http_session, graph_emulator.base_url, app)
    return GraphHttp(http_session, graph_emulator.base_url, token)


@pytest.fixture
def team(graph_emulator: GraphEmulator, adele: DirectoryUser) -> DirectoryGroup:
    return graph_emulator.add_group("Team", [adele.id])


async def test_without_a_group_permission_the_list_is_403(
    graph_emulator: GraphEmulator,
    http_session: aiohttp.ClientSession,
    tenant_app: AppRegistration,
    team: DirectoryGroup,
) -> None:
    graph = await granted(graph_emulator, http_session, tenant_app, ["Calendars.ReadWrite", "User.Read.All"])

    answer = await graph.get(f"/v1.0/groups/{team.id}/transitiveMembers")

    assert (answer.status, answer.body["error"]["code"]) == (403, "Authorization_RequestDenied")


async def test_without_a_permission_to_read_users_they_come_with_limited_information(
    graph_emulator: GraphEmulator,
    http_session: aiohttp.ClientSession,
    tenant_app: AppRegistration,
    team: DirectoryGroup,
    adele: DirectoryUser,
) -> None:
    graph = await granted(graph_emulator, http_session, tenant_app, ["Calendars.ReadWrite", "GroupMember.Read.All"])

    found, _ = await members(graph, team.id, "?$select=id,mail,userPrincipalName")

    assert found == [{"@odata.type": "#microsoft.graph.user", "id": adele.id, "mail": None, "userPrincipalName": None}]


async def test_the_control_api_adds_and_removes_members(
    graph_emulator: GraphEmulator, http_session: aiohttp.ClientSession, adele: DirectoryUser, bob: DirectoryUser
) -> None:
    control = graph_emulator.control_url
    async with http_session.post(f"{control}/groups", json={"displayName": "Team", "members": [adele.mail]}) as made:
        group_id = (await made.json())["id"]
    async with http_session.post(f"{control}/groups/{group_id}/members", json={"members": [bob.user_principal_name]}):
        pass
    async with http_session.delete(f"{control}/groups/{group_id}/members/{adele.user_principal_name}") as removed:
        body = await removed.json()

    assert body["members"] == [bob.id]
    graph_emulator.remove_user(bob.user_principal_name)
    assert graph_emulator.state.groups.groups[group_id].members == {}
