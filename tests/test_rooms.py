"""/api/chat/rooms: direct and group rooms, participants and roles, on a real Synapse."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from harness import Api, expect_error


def room_path(room_id: str, suffix: str = "") -> str:
    return f"/api/chat/rooms/{quote(room_id, safe='')}{suffix}"


def create_room(api: Api, token: str, **body: Any) -> dict[str, Any]:
    response = api.call("POST", "/api/chat/rooms", token=token, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def m_direct(api: Api, user: dict[str, Any]) -> dict[str, list[str]]:
    path = f"/_matrix/client/v3/user/{quote(user['user_id'])}/account_data/m.direct"
    response = api.call("GET", path, token=user["access_token"])
    return response.json() if response.status_code == 200 else {}


def test_direct_room_is_created_once_and_recorded_in_both_m_direct(api: Api) -> None:
    alice, bob = api.register(), api.register()
    first = api.call(
        "POST",
        "/api/chat/rooms",
        token=alice["access_token"],
        json={"type": "direct", "participants": [bob["user_id"]]},
    )
    assert first.status_code == 201, first.text
    room = first.json()
    assert room["type"] == "direct" and room["id"].startswith("!")
    assert room["name"] == f"Dr. {bob['username'].title()}"
    assert {p["id"]: p["membership"] for p in room["participants"]} == {
        alice["user_id"]: "join",
        bob["user_id"]: "invite",
    }
    assert m_direct(api, alice) == {bob["user_id"]: [room["id"]]}
    assert m_direct(api, bob) == {alice["user_id"]: [room["id"]]}

    again = api.call(
        "POST",
        "/api/chat/rooms",
        token=alice["access_token"],
        json={"type": "direct", "participants": [bob["user_id"]]},
    )
    assert again.status_code == 200 and again.json()["id"] == room["id"]
    # Bob opening "his" DM with Alice accepts the invitation instead of making a second room.
    from_bob = api.call(
        "POST",
        "/api/chat/rooms",
        token=bob["access_token"],
        json={"type": "direct", "participants": [alice["user_id"]]},
    )
    assert from_bob.status_code == 200 and from_bob.json()["id"] == room["id"]
    assert from_bob.json()["membership"] == "join"


def test_group_room_list_order_and_details(api: Api) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    group = create_room(
        api,
        alice["access_token"],
        type="group",
        name="Cardiology journal club",
        topic="Fridays",
        participants=[bob["user_id"], carol["user_id"]],
    )
    assert group["type"] == "group" and group["name"] == "Cardiology journal club" and group["topic"] == "Fridays"
    assert group["created_by"] == alice["user_id"]
    roles = {p["id"]: p["role"] for p in group["participants"]}
    assert roles == {alice["user_id"]: "admin", bob["user_id"]: "member", carol["user_id"]: "member"}
    direct = create_room(api, alice["access_token"], type="direct", participants=[bob["user_id"]])

    listed = api.call("GET", "/api/chat/rooms?limit=1", token=alice["access_token"]).json()
    assert [r["id"] for r in listed["results"]] == [direct["id"]] and listed["next_cursor"] == "1"
    second = api.call(
        "GET", f"/api/chat/rooms?limit=1&cursor={listed['next_cursor']}", token=alice["access_token"]
    ).json()
    assert [r["id"] for r in second["results"]] == [group["id"]] and second["next_cursor"] is None

    # Activity reorders: a message in the group puts it first.
    sent = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(group['id'])}/send/m.room.message/t1",
        token=alice["access_token"],
        json={"msgtype": "m.text", "body": "Agenda attached"},
    )
    assert sent.status_code == 200
    listed = api.call("GET", "/api/chat/rooms", token=alice["access_token"]).json()
    assert [r["id"] for r in listed["results"]] == [group["id"], direct["id"]]
    assert listed["results"][0]["last_message"]["content"] == "Agenda attached"

    # Bob sees both as invitations until he joins the group by adding himself.
    bob_rooms = {
        r["id"]: r["membership"]
        for r in api.call("GET", "/api/chat/rooms", token=bob["access_token"]).json()["results"]
    }
    assert bob_rooms == {group["id"]: "invite", direct["id"]: "invite"}
    joined = api.call(
        "POST", room_path(group["id"], "/participants"), token=bob["access_token"], json={"user_id": bob["user_id"]}
    )
    assert joined.status_code == 200 and joined.json()["membership"] == "join"
    # Unread counts are Synapse's notification counts: only what arrived while Bob was a member.
    api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(group['id'])}/send/m.room.message/t2",
        token=alice["access_token"],
        json={"msgtype": "m.text", "body": "Welcome Bob"},
    )
    bob_view = api.call("GET", room_path(group["id"]), token=bob["access_token"]).json()
    assert bob_view["unread_count"] == 1 and bob_view["last_message"]["sender"] == alice["user_id"]


def test_update_room_and_participants(api: Api) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    group = create_room(api, alice["access_token"], type="group", name="Ward 7", participants=[bob["user_id"]])
    path = room_path(group["id"])
    api.call(
        "POST", room_path(group["id"], "/participants"), token=bob["access_token"], json={"user_id": bob["user_id"]}
    )

    renamed = api.call(
        "PUT",
        path,
        token=alice["access_token"],
        json={"name": "Ward 7 (nights)", "topic": "Handover", "avatar_url": "mxc://medchat.test/abcDEF123"},
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["topic"], renamed.json()["avatar_url"]) == (
        "Ward 7 (nights)",
        "Handover",
        "mxc://medchat.test/abcDEF123",
    )
    state = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(group['id'])}/state/m.room.name", token=bob["access_token"]
    ).json()
    assert state == {"name": "Ward 7 (nights)"}
    # Members (power 0) may not rename: Synapse's power levels decide.
    expect_error(api.call("PUT", path, token=bob["access_token"], json={"name": "Mine"}), 403, "M_FORBIDDEN")
    # ... nor invite, in a group.
    expect_error(
        api.call(
            "POST",
            room_path(group["id"], "/participants"),
            token=bob["access_token"],
            json={"user_id": carol["user_id"]},
        ),
        403,
        "M_FORBIDDEN",
    )

    invited = api.call(
        "POST",
        room_path(group["id"], "/participants"),
        token=alice["access_token"],
        json={"user_id": carol["user_id"], "role": "admin"},
    )
    assert invited.status_code == 201, invited.text
    assert invited.json()["membership"] == "invite" and invited.json()["role"] == "admin"
    promoted = api.call(
        "POST",
        room_path(group["id"], "/participants"),
        token=alice["access_token"],
        json={"user_id": bob["user_id"], "role": "admin"},
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    levels = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(group['id'])}/state/m.room.power_levels", token=bob["access_token"]
    ).json()
    assert levels["users"][bob["user_id"]] == 100

    # Matrix's rule: nobody removes a peer of equal power; the creator outranks every admin.
    carol_path = room_path(group["id"], f"/participants/{quote(carol['user_id'])}")
    expect_error(api.call("DELETE", carol_path, token=bob["access_token"]), 403, "M_FORBIDDEN")
    kicked = api.call("DELETE", carol_path, token=alice["access_token"])
    assert kicked.status_code == 200, kicked.text
    listed = api.call("GET", room_path(group["id"], "/participants"), token=alice["access_token"]).json()["results"]
    assert sorted(p["id"] for p in listed) == sorted([alice["user_id"], bob["user_id"]])
    expect_error(
        api.call(
            "DELETE", room_path(group["id"], f"/participants/{quote(carol['user_id'])}"), token=alice["access_token"]
        ),
        404,
        "M_NOT_FOUND",
    )


def test_leave_and_close(api: Api) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    group = create_room(
        api, alice["access_token"], type="group", name="Rota", participants=[bob["user_id"], carol["user_id"]]
    )
    api.call(
        "POST", room_path(group["id"], "/participants"), token=bob["access_token"], json={"user_id": bob["user_id"]}
    )
    expect_error(
        api.call("DELETE", room_path(group["id"]) + "?close=true", token=bob["access_token"]), 403, "M_FORBIDDEN"
    )

    closed = api.call("DELETE", room_path(group["id"]) + "?close=true", token=alice["access_token"])
    assert closed.status_code == 200, closed.text
    assert sorted(closed.json()["removed"]) == sorted([bob["user_id"], carol["user_id"]])
    for user in (alice, bob, carol):
        expect_error(api.call("GET", room_path(group["id"]), token=user["access_token"]), 404, "M_NOT_FOUND")
        assert group["id"] not in [
            r["id"] for r in api.call("GET", "/api/chat/rooms", token=user["access_token"]).json()["results"]
        ]

    direct = create_room(api, alice["access_token"], type="direct", participants=[bob["user_id"]])
    expect_error(
        api.call("DELETE", room_path(direct["id"]) + "?close=true", token=alice["access_token"]), 400, "M_INVALID_PARAM"
    )
    assert api.call("DELETE", room_path(direct["id"]), token=alice["access_token"]).status_code == 200
    expect_error(api.call("GET", room_path(direct["id"]), token=alice["access_token"]), 404, "M_NOT_FOUND")


def test_room_bad_input_and_access(api: Api) -> None:
    alice, bob, mallory = api.register(), api.register(), api.register()
    token = alice["access_token"]
    group = create_room(api, token, type="group", name="Private", participants=[bob["user_id"]])

    expect_error(api.call("POST", "/api/chat/rooms", token=token, json={"type": "party"}), 400, "M_INVALID_PARAM")
    expect_error(api.call("POST", "/api/chat/rooms", token=token, json={"type": "group"}), 400, "M_MISSING_PARAM")
    expect_error(api.call("POST", "/api/chat/rooms", token=token, json={"type": "direct"}), 400, "M_MISSING_PARAM")
    expect_error(
        api.call("POST", "/api/chat/rooms", token=token, json={"type": "direct", "participants": [alice["user_id"]]}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(
        api.call("POST", "/api/chat/rooms", token=token, json={"type": "direct", "participants": ["bob"]}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(
        api.call(
            "POST", "/api/chat/rooms", token=token, json={"type": "direct", "participants": ["@nobody:medchat.test"]}
        ),
        404,
        "M_NOT_FOUND",
    )
    expect_error(api.call("POST", "/api/chat/rooms", token=token, data=b"{nope"), 400, "M_NOT_JSON")
    expect_error(api.call("POST", "/api/chat/rooms", json={"type": "group", "name": "x"}), 401, "M_MISSING_TOKEN")
    expect_error(api.call("PUT", room_path(group["id"]), token=token, json={}), 400, "M_INVALID_PARAM")
    expect_error(
        api.call("PUT", room_path(group["id"]), token=token, json={"avatar_url": "https://x/y.png"}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(api.call("GET", "/api/chat/rooms?limit=0", token=token), 400, "M_INVALID_PARAM")
    expect_error(
        api.call("POST", room_path(group["id"], "/participants"), token=token, json={"user_id": "@ghost:medchat.test"}),
        404,
        "M_NOT_FOUND",
    )

    # An outsider learns nothing about the room, whatever they try.
    outsider = mallory["access_token"]
    expect_error(api.call("GET", room_path(group["id"]), token=outsider), 404, "M_NOT_FOUND")
    expect_error(api.call("PUT", room_path(group["id"]), token=outsider, json={"name": "pwned"}), 404, "M_NOT_FOUND")
    expect_error(api.call("GET", room_path(group["id"], "/participants"), token=outsider), 404, "M_NOT_FOUND")
    expect_error(
        api.call("POST", room_path(group["id"], "/participants"), token=outsider, json={"user_id": mallory["user_id"]}),
        404,
        "M_NOT_FOUND",
    )
    expect_error(api.call("DELETE", room_path(group["id"]), token=outsider), 404, "M_NOT_FOUND")
    expect_error(api.call("GET", room_path("!doesnotexist:medchat.test"), token=outsider), 404, "M_NOT_FOUND")


def test_a_member_cannot_make_anyone_an_admin_and_nothing_half_happens(api: Api) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    group = create_room(api, alice["access_token"], type="group", name="Rota", participants=[bob["user_id"]])
    participants = room_path(group["id"], "/participants")
    power_before = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(group['id'])}/state/m.room.power_levels", token=alice["access_token"]
    ).json()
    # Bob accepting his invitation while asking to be an admin: refused, and he is still only invited.
    expect_error(
        api.call("POST", participants, token=bob["access_token"], json={"user_id": bob["user_id"], "role": "admin"}),
        403,
        "M_FORBIDDEN",
    )
    roles = {p["id"]: (p["membership"], p["role"]) for p in view(api, alice, group["id"])["participants"]}
    assert roles[bob["user_id"]] == ("invite", "member")
    joined = api.call("POST", participants, token=bob["access_token"], json={"user_id": bob["user_id"]})
    assert joined.status_code == 200
    # A member promoting himself, or inviting someone as an admin: 403, no invitation left behind.
    expect_error(
        api.call("POST", participants, token=bob["access_token"], json={"user_id": bob["user_id"], "role": "admin"}),
        403,
        "M_FORBIDDEN",
    )
    expect_error(
        api.call("POST", participants, token=bob["access_token"], json={"user_id": carol["user_id"], "role": "admin"}),
        403,
        "M_FORBIDDEN",
    )
    roles = {p["id"]: (p["membership"], p["role"]) for p in view(api, alice, group["id"])["participants"]}
    assert roles[bob["user_id"]] == ("join", "member") and carol["user_id"] not in roles
    power_after = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(group['id'])}/state/m.room.power_levels", token=alice["access_token"]
    ).json()
    assert power_after == power_before
    # The admin still can.
    promoted = api.call(
        "POST", participants, token=alice["access_token"], json={"user_id": bob["user_id"], "role": "admin"}
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"


def view(api: Api, user: dict[str, Any], room_id: str) -> dict[str, Any]:
    response = api.call("GET", room_path(room_id), token=user["access_token"])
    assert response.status_code == 200, response.text
    return response.json()


def test_room_fields_have_one_definition_each(api: Api) -> None:
    """The avatar is the one mxc:// URL type (at most 500 characters), a participant the one user-id
    type (no whitespace), `close` a true/false flag; each refusal names its field."""
    alice, bob = api.register(), api.register()
    token = alice["access_token"]
    group = create_room(api, token, type="group", name="Limits", participants=[bob["user_id"]])
    prefix = "mxc://medchat.test/"
    too_long = api.call(
        "PUT", room_path(group["id"]), token=token, json={"avatar_url": prefix + "a" * (501 - len(prefix))}
    )
    assert "avatar_url" in expect_error(too_long, 400, "M_INVALID_PARAM")["error"]
    longest = prefix + "a" * (500 - len(prefix))
    updated = api.call("PUT", room_path(group["id"]), token=token, json={"avatar_url": longest})
    assert updated.status_code == 200 and updated.json()["avatar_url"] == longest, updated.text
    spaced = api.call(
        "POST", "/api/chat/rooms", token=token, json={"type": "group", "name": "x", "participants": ["@a b:c"]}
    )
    assert "participants[0]" in expect_error(spaced, 400, "M_INVALID_PARAM")["error"]
    flag = api.call("DELETE", room_path(group["id"]) + "?close=maybe", token=token)
    assert "close" in expect_error(flag, 400, "M_INVALID_PARAM")["error"]
