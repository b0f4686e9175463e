"""/api/chat/contacts*: life-cycle, requests, filters, and the Matrix mirror (ignore list, tags)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nio import RoomCreateResponse, TagEvent, UnknownAccountDataEvent

from harness import SERVER_NAME, Api, expect_error, nio_login, present, run

C = "/api/chat/contacts"


def path(user_id: str, suffix: str = "") -> str:
    return f"{C}/{quote(user_id)}{suffix}"


def befriend(api: Api, a: dict[str, Any], b: dict[str, Any]) -> None:
    """a sends b a request and b accepts it."""
    response = api.call("POST", C, token=a["access_token"], json={"user_id": b["user_id"]})
    assert response.status_code == 202, response.text
    response = api.call("POST", f"{C}/requests/{quote(a['user_id'])}/accept", token=b["access_token"])
    assert response.status_code == 200, response.text


def contact_ids(api: Api, user: dict[str, Any], query: str = "") -> list[str]:
    response = api.call("GET", f"{C}{query}", token=user["access_token"])
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["results"]]


def nio_sync(server: Any, user: dict[str, Any]) -> Any:
    """A full /sync as a matrix-nio client (Element's view) of the user."""

    async def scenario() -> Any:
        client = await nio_login(server.base_url, user["user_id"], user["password"])
        try:
            return await client.sync(timeout=0, full_state=True)
        finally:
            await client.close()

    return run(scenario())


def global_account_data(sync: Any, data_type: str) -> dict[str, Any] | None:
    return next(
        (e.content for e in sync.account_data_events if isinstance(e, UnknownAccountDataEvent) and e.type == data_type),
        None,
    )


def room_tags(sync: Any, room_id: str) -> dict[str, Any]:
    events = sync.rooms.join[room_id].account_data if room_id in sync.rooms.join else []
    return next((e.tags for e in events if isinstance(e, TagEvent)), {})


# --- life-cycle ------------------------------------------------------------------------------


def test_contact_life_cycle_through_a_request(api: Api) -> None:
    a, b = api.register(), api.register(role="GP", institution="Mercy General", specialization="Oncology")
    sent = api.call(
        "POST",
        C,
        token=a["access_token"],
        json={"user_id": b["user_id"], "nickname": "Bee", "message": "Hi, we met at the congress"},
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "pending" and sent.json()["request"]["id"] == b["user_id"]
    assert contact_ids(api, a) == []  # nothing until b says yes

    incoming = api.call("GET", f"{C}/requests", token=b["access_token"]).json()["results"]
    assert [(r["id"], r["direction"], r["message"]) for r in incoming] == [
        (a["user_id"], "incoming", "Hi, we met at the congress")
    ]
    assert incoming[0]["user"]["full_name"] == a["user"]["user"]["full_name"]
    outgoing = api.call("GET", f"{C}/requests?direction=outgoing", token=a["access_token"]).json()["results"]
    assert [r["id"] for r in outgoing] == [b["user_id"]]

    accepted = api.call(
        "POST", f"{C}/requests/{quote(a['user_id'])}/accept", token=b["access_token"], json={"nickname": "Ay"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["nickname"] == "Ay"
    assert contact_ids(api, a) == [b["user_id"]] and contact_ids(api, b) == [a["user_id"]]
    assert api.call("GET", f"{C}/requests", token=b["access_token"]).json()["results"] == []

    seen = api.call("GET", path(b["user_id"]), token=a["access_token"]).json()
    assert seen["nickname"] == "Bee" and seen["is_favorite"] is False and seen["is_blocked"] is False
    assert seen["contact"] == {
        "id": b["user_id"],
        "username": b["username"],
        "full_name": b["user"]["user"]["full_name"],
        "profile_image": None,
        "specialization": "Oncology",
        "institution": "Mercy General",
        "role": "GP",
        "is_online": seen["contact"]["is_online"],
        "last_seen": seen["contact"]["last_seen"],
    }
    assert isinstance(seen["contact"]["is_online"], bool) and seen["created_at"].endswith("Z")

    renamed = api.call("PUT", path(b["user_id"]), token=a["access_token"], json={"nickname": "Dr B"})
    assert renamed.status_code == 200 and renamed.json()["nickname"] == "Dr B"
    assert api.call("DELETE", path(b["user_id"]), token=a["access_token"]).status_code == 200
    expect_error(api.call("GET", path(b["user_id"]), token=a["access_token"]), 404, "M_NOT_FOUND")
    assert contact_ids(api, b) == [a["user_id"]]  # b's own list is b's


def test_declined_request_can_be_sent_again_but_not_twice(api: Api) -> None:
    a, b = api.register(), api.register()
    assert api.call("POST", C, token=a["access_token"], json={"contact_id": b["user_id"]}).status_code == 202
    expect_error(
        api.call("POST", C, token=a["access_token"], json={"user_id": b["user_id"]}), 409, "ORG_MEDCHAT_REQUEST_PENDING"
    )
    assert api.call("POST", f"{C}/requests/{quote(a['user_id'])}/decline", token=b["access_token"]).status_code == 200
    assert api.call("GET", f"{C}/requests", token=b["access_token"]).json()["results"] == []
    assert contact_ids(api, a) == [] and contact_ids(api, b) == []
    expect_error(
        api.call("POST", f"{C}/requests/{quote(a['user_id'])}/accept", token=b["access_token"]), 404, "M_NOT_FOUND"
    )
    assert api.call("POST", C, token=a["access_token"], json={"user_id": b["user_id"]}).status_code == 202
    # The sender can withdraw it.
    assert api.call("DELETE", f"{C}/requests/{quote(b['user_id'])}", token=a["access_token"]).status_code == 200
    assert api.call("GET", f"{C}/requests", token=b["access_token"]).json()["results"] == []


def test_adding_someone_who_asked_you_accepts_their_request(api: Api) -> None:
    a, b = api.register(), api.register()
    assert api.call("POST", C, token=a["access_token"], json={"user_id": b["user_id"]}).status_code == 202
    added = api.call("POST", C, token=b["access_token"], json={"user_id": a["user_id"]})
    assert added.status_code == 201 and added.json()["id"] == a["user_id"]
    assert contact_ids(api, a) == [b["user_id"]]


def test_bad_input(api: Api) -> None:
    a, b = api.register(), api.register()
    token = a["access_token"]
    expect_error(api.call("POST", C, token=token, json={"user_id": a["user_id"]}), 400, "M_INVALID_PARAM")
    expect_error(api.call("POST", C, token=token, json={"user_id": f"@nobody_here:{SERVER_NAME}"}), 404, "M_NOT_FOUND")
    expect_error(api.call("POST", C, token=token, json={"user_id": "not-a-user-id"}), 400, "M_INVALID_PARAM")
    expect_error(api.call("POST", C, token=token, json={}), 400, "M_MISSING_PARAM")
    expect_error(
        api.call("POST", C, token=token, json={"user_id": b["user_id"], "nickname": "x" * 101}), 400, "M_INVALID_PARAM"
    )
    befriend(api, a, b)
    expect_error(api.call("POST", C, token=token, json={"user_id": b["user_id"]}), 409, "ORG_MEDCHAT_CONTACT_EXISTS")
    expect_error(api.call("PUT", path(b["user_id"]), token=token, json={"nick": "x"}), 400, "M_INVALID_PARAM")
    stranger = api.register()
    for method, suffix in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/favorite"), ("DELETE", "/block")):
        response = api.call(
            method, path(stranger["user_id"], suffix), token=token, json={"nickname": None} if method == "PUT" else None
        )
        expect_error(response, 404, "M_NOT_FOUND")
    for query in ("?limit=0", "?limit=101", "?limit=x", "?favorite=maybe", "?q=" + "x" * 201):
        expect_error(api.call("GET", C + query, token=token), 400, "M_INVALID_PARAM")
    expect_error(api.call("GET", f"{C}/requests?direction=sideways", token=token), 400, "M_INVALID_PARAM")
    for method, suffix in (("POST", "/block"), ("GET", ""), ("POST", "/favorite")):
        expect_error(api.call(method, f"{C}/not-a-user{suffix}", token=token), 400, "M_INVALID_PARAM")
    expect_error(api.call("POST", path(f"@ghost:{SERVER_NAME}", "/block"), token=token), 404, "M_NOT_FOUND")
    # One's list is one's own: b's contact a is invisible to a third user.
    expect_error(api.call("GET", path(a["user_id"]), token=stranger["access_token"]), 404, "M_NOT_FOUND")
    assert api.call("GET", C).status_code == 401


def test_filters_search_and_pagination(api: Api) -> None:
    me = api.register()
    gp = api.register(role="GP", institution="Mercy General", full_name="Dr. Zed Quill", specialization="Cardiology")
    nurse = api.register(role="Nurse", institution="Mercy General", specialization="Oncology")
    blocked = api.register(specialization="Neurology")
    for other in (gp, nurse, blocked):
        befriend(api, me, other)
    token = me["access_token"]
    assert api.call("POST", path(gp["user_id"], "/favorite"), token=token).json()["is_favorite"] is True
    assert api.call("PUT", path(nurse["user_id"]), token=token, json={"nickname": "Night shift"}).status_code == 200
    assert api.call("POST", path(blocked["user_id"], "/block"), token=token).json()["is_blocked"] is True

    everyone = sorted(u["user_id"] for u in (gp, nurse, blocked))
    assert contact_ids(api, me) == everyone
    assert contact_ids(api, me, "?favorite=true") == [gp["user_id"]]
    assert contact_ids(api, me, "?blocked=true") == [blocked["user_id"]]
    assert contact_ids(api, me, "?blocked=false") == sorted([gp["user_id"], nurse["user_id"]])
    assert contact_ids(api, me, "?role=Nurse") == [nurse["user_id"]]
    assert contact_ids(api, me, "?institution=Mercy%20General&favorite=false") == [nurse["user_id"]]
    # As the directory filters (issue 17): only the cardiologist, not the oncologist.
    assert contact_ids(api, me, "?specialization=Cardiology") == [gp["user_id"]]
    assert contact_ids(api, me, "?specialization=Oncology&role=GP") == []
    assert contact_ids(api, me, "?q=zed%20q") == [gp["user_id"]]  # display name
    assert contact_ids(api, me, "?q=NIGHT") == [nurse["user_id"]]  # nickname
    assert contact_ids(api, me, f"?q={blocked['username']}") == [blocked["user_id"]]  # username

    seen, cursor = [], ""
    while True:
        page = api.call("GET", f"{C}?limit=1{cursor}", token=token).json()
        assert len(page["results"]) == 1
        seen += [c["id"] for c in page["results"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={quote(page['next_cursor'])}"
    assert seen == everyone
    page = api.call("GET", f"{C}?limit=1&q=mercy", token=token).json()  # q matches names, not institutions
    assert page["results"] == [] and page["next_cursor"] is None


# --- the Matrix mirror -----------------------------------------------------------------------


def test_block_is_the_matrix_ignore_list(api: Api, server: Any) -> None:
    me, pest = api.register(), api.register()
    befriend(api, me, pest)
    token = me["access_token"]
    # Someone ignored from Element before: MedChat must keep that entry.
    element_ignored = "@spammer:elsewhere.example"
    put = api.call(
        "PUT",
        f"/_matrix/client/v3/user/{quote(me['user_id'])}/account_data/m.ignored_user_list",
        token=token,
        json={"ignored_users": {element_ignored: {}}},
    )
    assert put.status_code == 200
    api.call("POST", path(pest["user_id"], "/block"), token=token)
    ignored = present(global_account_data(nio_sync(server, me), "m.ignored_user_list"))
    assert ignored is not None and set(ignored["ignored_users"]) == {element_ignored, pest["user_id"]}

    unblocked = api.call("DELETE", path(pest["user_id"], "/block"), token=token)
    assert unblocked.status_code == 200 and unblocked.json()["is_blocked"] is False
    ignored = present(global_account_data(nio_sync(server, me), "m.ignored_user_list"))
    assert set(ignored["ignored_users"]) == {element_ignored}

    # Ignoring in a Matrix client is a block in the API.
    api.call(
        "PUT",
        f"/_matrix/client/v3/user/{quote(me['user_id'])}/account_data/m.ignored_user_list",
        token=token,
        json={"ignored_users": {element_ignored: {}, pest["user_id"]: {}}},
    )
    assert api.call("GET", path(pest["user_id"]), token=token).json()["is_blocked"] is True


def test_blocking_a_stranger_lists_them_and_declines_their_request(api: Api) -> None:
    me, pest = api.register(), api.register()
    assert api.call("POST", C, token=pest["access_token"], json={"user_id": me["user_id"]}).status_code == 202
    blocked = api.call("POST", path(pest["user_id"], "/block"), token=me["access_token"])
    assert blocked.status_code == 200 and blocked.json()["is_blocked"] is True
    assert api.call("GET", f"{C}/requests", token=me["access_token"]).json()["results"] == []
    assert contact_ids(api, me, "?blocked=true") == [pest["user_id"]]


def _direct_room(api: Api, server: Any, owner: dict[str, Any], other: dict[str, Any]) -> str:
    """A DM made the way Element makes one: createRoom is_direct, then m.direct account data."""

    async def create() -> str:
        client = await nio_login(server.base_url, owner["user_id"], owner["password"])
        try:
            response = await client.room_create(is_direct=True, invite=[other["user_id"]])
            assert isinstance(response, RoomCreateResponse), response
            return response.room_id
        finally:
            await client.close()

    room_id = run(create())
    direct = api.call(
        "GET", f"/_matrix/client/v3/user/{quote(owner['user_id'])}/account_data/m.direct", token=owner["access_token"]
    )
    content = direct.json() if direct.status_code == 200 else {}
    content.setdefault(other["user_id"], []).append(room_id)
    put = api.call(
        "PUT",
        f"/_matrix/client/v3/user/{quote(owner['user_id'])}/account_data/m.direct",
        token=owner["access_token"],
        json=content,
    )
    assert put.status_code == 200
    return room_id


def test_favourite_tags_the_dm_room(api: Api, server: Any) -> None:
    me, friend, later = api.register(), api.register(), api.register()
    befriend(api, me, friend)
    befriend(api, me, later)
    room_id = _direct_room(api, server, me, friend)
    assert "m.favourite" not in room_tags(nio_sync(server, me), room_id)

    assert api.call("POST", path(friend["user_id"], "/favorite"), token=me["access_token"]).status_code == 200
    assert "m.favourite" in room_tags(nio_sync(server, me), room_id)
    assert (
        api.call("DELETE", path(friend["user_id"], "/favorite"), token=me["access_token"]).json()["is_favorite"]
        is False
    )
    assert "m.favourite" not in room_tags(nio_sync(server, me), room_id)

    # Favourite first, DM later: the tag follows when m.direct names the new room.
    assert api.call("POST", path(later["user_id"], "/favorite"), token=me["access_token"]).status_code == 200
    later_room = _direct_room(api, server, me, later)
    assert "m.favourite" in room_tags(nio_sync(server, me), later_room)
