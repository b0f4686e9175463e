"""Study groups and institution spaces: one Matrix space per institution (created once, even under
concurrent first use), study groups as its children, the per-institution listing for members only,
open joins and knocks — from the API and from a Matrix client (matrix-nio)."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from nio import RoomKnockResponse, SpaceGetHierarchyResponse

from harness import Api, SynapseServer, expect_error, nio_login, query_db, register_admin, run
from medchat.config import MedChatConfig


def institution() -> str:
    return f"Hospital {secrets.token_hex(3)}"


def create_group(api: Api, user: dict[str, Any], **body: Any) -> Any:
    return api.call(
        "POST",
        "/api/chat/rooms",
        token=user["access_token"],
        json={"type": "study_group", "name": "Renal physiology", **body},
    )


def listing(api: Api, user: dict[str, Any], name: str, **params: Any) -> Any:
    return api.call("GET", f"/api/chat/institutions/{quote(name)}/rooms", token=user["access_token"], params=params)


def join(api: Api, user: dict[str, Any], room_id: str, **body: Any) -> Any:
    return api.call("POST", f"/api/chat/rooms/{quote(room_id)}/join", token=user["access_token"], json=body)


def state(api: Api, user: dict[str, Any], room_id: str, event_type: str, state_key: str = "") -> Any:
    return api.call(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}",
        token=user["access_token"],
    )


def space_rows(server: SynapseServer, name: str) -> list[tuple[Any, ...]]:
    return query_db(server, "SELECT space_id FROM medchat_institution_spaces WHERE institution = ?", (name,))


def test_a_study_group_is_a_child_of_its_institution_space(api: Api, server: SynapseServer) -> None:
    name = institution()
    creator = api.register(institution=name)
    created = create_group(api, creator, topic="Weekly", join_rule="open")
    assert created.status_code == 201, created.text
    room = created.json()
    assert (room["type"], room["institution"], room["join_rule"]) == ("study_group", name, "open")

    [(space_id,)] = space_rows(server, name)
    create = state(api, creator, space_id, "m.room.create").json()
    assert create["type"] == "m.space" and create["org.medchat.institution"] == name
    assert state(api, creator, room["id"], "m.room.create").json()["type"] == "org.medchat.study_group"
    assert state(api, creator, space_id, "m.space.child", room["id"]).json()["via"] == ["medchat.test"]
    parent = state(api, creator, room["id"], "m.space.parent", space_id).json()
    assert parent["canonical"] is True
    rules = state(api, creator, room["id"], "m.room.join_rules").json()
    assert rules == {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space_id}]}
    # The space belongs to the module's service account, not to the creator.
    assert api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(space_id)}/joined_members", token=creator["access_token"]
    ).json()["joined"].keys() == {"@medchat:medchat.test", creator["user_id"]}

    listed = listing(api, creator, name)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["space_id"] == space_id and body["next_cursor"] is None
    assert body["results"] == [
        {
            "id": room["id"],
            "name": "Renal physiology",
            "topic": "Weekly",
            "avatar_url": None,
            "type": "study_group",
            "join_rule": "open",
            "member_count": 1,
            "membership": "join",
        }
    ]
    # The space is not a chat: the room list leaves it out.
    mine = api.call("GET", "/api/chat/rooms", token=creator["access_token"]).json()["results"]
    assert [r["id"] for r in mine] == [room["id"]]


def test_only_the_institution_and_admins_may_list(api: Api, server: SynapseServer) -> None:
    name = institution()
    member, outsider = api.register(institution=name), api.register(institution=institution())
    assert create_group(api, member).status_code == 201
    refused = expect_error(listing(api, outsider, name), 403, "ORG_MEDCHAT_INSTITUTION_ONLY")
    assert name in refused["error"]
    admin = register_admin(server)
    assert [r["name"] for r in listing(api, admin, name).json()["results"]] == ["Renal physiology"]
    expect_error(listing(api, member, "No Such Institution"), 404, "M_NOT_FOUND")
    # An institution without rooms yet lists nothing (no space is made for a listing).
    fresh = institution()
    newcomer = api.register(institution=fresh)
    assert listing(api, newcomer, fresh).json() == {
        "institution": fresh,
        "space_id": None,
        "results": [],
        "next_cursor": None,
    }
    assert space_rows(server, fresh) == []
    expect_error(api.call("GET", f"/api/chat/institutions/{quote(name)}/rooms"), 401, "M_MISSING_TOKEN")
    expect_error(listing(api, member, name, cursor="not-a-token"), 400, "M_INVALID_PARAM")


def test_open_groups_admit_the_institution_at_once(api: Api, server: SynapseServer) -> None:
    name = institution()
    creator, colleague, outsider = (
        api.register(institution=name),
        api.register(institution=name),
        api.register(institution=institution()),
    )
    room = create_group(api, creator, join_rule="open").json()["id"]

    joined = join(api, colleague, room)
    assert joined.status_code == 200, joined.text
    assert joined.json()["membership"] == "join" and joined.json()["room"]["type"] == "study_group"
    assert join(api, colleague, room).status_code == 200  # again: still joined
    assert listing(api, colleague, name).json()["results"][0]["member_count"] == 2
    # Another institution's group does not exist for an outsider, through the API or Matrix.
    expect_error(join(api, outsider, room), 404, "M_NOT_FOUND")
    native = api.call("POST", f"/_matrix/client/v3/join/{quote(room)}", token=outsider["access_token"], json={})
    assert native.status_code == 403, native.text


def test_knock_and_approval(api: Api, server: SynapseServer) -> None:
    name = institution()
    creator, asker, nio_user = (api.register(institution=name) for _ in range(3))
    outsider = api.register(institution=institution())
    room = create_group(api, creator, join_rule="knock").json()
    assert room["join_rule"] == "knock"
    room_id = room["id"]

    asked = join(api, asker, room_id, reason="Revising for finals")
    assert asked.status_code == 202, asked.text
    assert asked.json() == {"room_id": room_id, "membership": "knock", "room": None}
    assert join(api, asker, room_id).status_code == 202  # asking again: still waiting
    assert listing(api, asker, name).json()["results"][0]["membership"] == "knock"

    async def knocks() -> tuple[Any, Any]:
        ours, theirs = (
            await nio_login(server.base_url, nio_user["user_id"], nio_user["password"]),
            await nio_login(server.base_url, outsider["user_id"], outsider["password"]),
        )
        try:
            return await ours.room_knock(room_id, reason="From Element"), await theirs.room_knock(room_id)
        finally:
            await ours.close()
            await theirs.close()

    ours, theirs = run(knocks())
    assert isinstance(ours, RoomKnockResponse), ours
    assert not isinstance(theirs, RoomKnockResponse) and theirs.transport_response.status == 403, theirs

    participants = api.call(
        "GET", f"/api/chat/rooms/{quote(room_id)}/participants", token=creator["access_token"]
    ).json()["results"]
    assert {p["id"]: p["membership"] for p in participants} == {
        creator["user_id"]: "join",
        asker["user_id"]: "knock",
        nio_user["user_id"]: "knock",
    }

    approved = api.call(
        "POST",
        f"/api/chat/rooms/{quote(room_id)}/participants",
        token=creator["access_token"],
        json={"user_id": asker["user_id"]},
    )
    assert approved.status_code == 201 and approved.json()["membership"] == "invite", approved.text
    assert join(api, asker, room_id).json()["membership"] == "join"
    [(space_id,)] = space_rows(server, name)
    space_members = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(space_id)}/joined_members", token=asker["access_token"]
    )
    assert asker["user_id"] in space_members.json()["joined"], space_members.text
    declined = api.call(
        "DELETE",
        f"/api/chat/rooms/{quote(room_id)}/participants/{quote(nio_user['user_id'])}",
        token=creator["access_token"],
    )
    assert declined.status_code == 200, declined.text
    assert listing(api, creator, name).json()["results"][0]["member_count"] == 2


def test_a_matrix_client_sees_the_space_hierarchy(api: Api, server: SynapseServer) -> None:
    name = institution()
    creator, outsider = api.register(institution=name), api.register(institution=institution())
    knock_room = create_group(api, creator, name="Anatomy", join_rule="knock").json()["id"]
    open_room = create_group(api, creator, name="Pharmacology", join_rule="open").json()["id"]
    [(space_id,)] = space_rows(server, name)

    async def hierarchy(user: dict[str, Any]) -> Any:
        client = await nio_login(server.base_url, user["user_id"], user["password"])
        try:
            return await client.space_get_hierarchy(space_id)
        finally:
            await client.close()

    seen = run(hierarchy(creator))
    assert isinstance(seen, SpaceGetHierarchyResponse), seen
    rooms = {r["room_id"]: r for r in seen.rooms}
    assert rooms[space_id]["room_type"] == "m.space" and rooms[space_id]["name"] == name
    assert {c["state_key"] for c in rooms[space_id]["children_state"]} == {knock_room, open_room}
    assert (rooms[knock_room]["join_rule"], rooms[open_room]["join_rule"]) == ("knock", "restricted")
    assert rooms[open_room]["room_type"] == "org.medchat.study_group"
    assert not isinstance(run(hierarchy(outsider)), SpaceGetHierarchyResponse)  # not a member of that space


def test_the_service_account_that_invites_members_into_spaces_is_not_rate_limited(api: Api) -> None:
    """Each user's first study group has the service account invite them into their institution's
    space; Synapse limits invites per issuer (a burst of 10 by default), which would turn the
    eleventh newcomer of a busy hour away with 429."""
    users = [api.register(institution=institution()) for _ in range(14)]
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda u: create_group(api, u, join_rule="open"), users))
    assert [r.status_code for r in responses] == [201] * len(users), [r.text for r in responses if r.status_code != 201]


def test_concurrent_first_use_makes_one_space(api: Api, server: SynapseServer) -> None:
    name = institution()
    users = [api.register(institution=name) for _ in range(5)]
    with ThreadPoolExecutor(len(users)) as pool:
        responses = list(pool.map(lambda u: create_group(api, u, join_rule="open"), users))
    assert [r.status_code for r in responses] == [201] * len(users), [r.text for r in responses]
    [(space_id,)] = space_rows(server, name)
    for user, response in zip(users, responses):
        assert state(api, user, response.json()["id"], "m.space.parent", space_id).status_code == 200
    listed = listing(api, users[0], name, limit=2)
    found = [r["id"] for r in listed.json()["results"]]
    while listed.json()["next_cursor"]:
        listed = listing(api, users[0], name, limit=2, cursor=listed.json()["next_cursor"])
        found += [r["id"] for r in listed.json()["results"]]
    assert sorted(found) == sorted(r.json()["id"] for r in responses)


def test_bad_input(api: Api, server: SynapseServer) -> None:
    user = api.register(institution=institution())
    expect_error(create_group(api, user, join_rule="public"), 400, "M_INVALID_PARAM")
    expect_error(
        api.call(
            "POST",
            "/api/chat/rooms",
            token=user["access_token"],
            json={"type": "group", "name": "x", "join_rule": "open"},
        ),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(
        api.call("POST", "/api/chat/rooms", token=user["access_token"], json={"type": "study_group"}),
        400,
        "M_MISSING_PARAM",
    )
    # An account without an institution (here an admin made with Synapse's API) has no space.
    expect_error(create_group(api, register_admin(server)), 400, "ORG_MEDCHAT_NO_INSTITUTION")
    expect_error(join(api, user, "!nowhere:medchat.test"), 404, "M_NOT_FOUND")
    plain = api.call(
        "POST", "/api/chat/rooms", token=api.register()["access_token"], json={"type": "group", "name": "Private"}
    ).json()["id"]
    expect_error(join(api, user, plain), 404, "M_NOT_FOUND")
    expect_error(join(api, user, plain, colour="blue"), 400, "M_INVALID_PARAM")


def test_config_keeps_the_default_among_the_allowed_join_rules() -> None:
    assert (
        MedChatConfig.parse({"study_groups": {"allowed_join_rules": ["open"]}}).study_groups.default_join_rule == "open"
    )
    with pytest.raises(jsonschema.ValidationError) as refused:
        MedChatConfig.parse({"study_groups": {"allowed_join_rules": ["open"], "default_join_rule": "knock"}})
    assert list(refused.value.absolute_path) == ["study_groups", "default_join_rule"]
    with pytest.raises(jsonschema.ValidationError):
        MedChatConfig.parse({"study_groups": {"allowed_join_rules": ["public"]}})
