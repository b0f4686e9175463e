"""Interop, the acceptance test: the API and a real Matrix client (matrix-nio) see the same rooms
and messages, in both directions."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from nio import AsyncClient, RoomMessagesResponse, RoomPreset, RoomSendResponse, SyncResponse

from harness import Api, SynapseServer, nio_login, run
from test_messages import msg_path, send
from test_rooms import create_room, m_direct, room_path


async def synced(client: AsyncClient) -> SyncResponse:
    response = await client.sync(timeout=0, full_state=True)
    assert isinstance(response, SyncResponse), response
    return response


async def timeline(client: AsyncClient, room_id: str) -> list[dict[str, Any]]:
    """The room's events as the client receives them (oldest first), in the wire format."""
    response = await client.room_messages(room_id, start="", limit=50)
    assert isinstance(response, RoomMessagesResponse), response
    return [e.source for e in reversed(response.chunk)]


def test_api_rooms_appear_in_a_matrix_client(api: Api, server: SynapseServer) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    direct = create_room(api, alice["access_token"], type="direct", participants=[bob["user_id"]])["id"]
    group = create_room(
        api,
        alice["access_token"],
        type="group",
        name="Neurology rounds",
        participants=[bob["user_id"], carol["user_id"]],
    )["id"]

    async def scenario() -> None:
        client = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            response = await synced(client)
            assert set(response.rooms.invite) == {direct, group}
            own_invite = [
                e for e in response.rooms.invite[direct].invite_state if getattr(e, "state_key", None) == bob["user_id"]
            ]
            assert [e.content.get("is_direct") for e in own_invite] == [True]
            assert client.invited_rooms[group].name == "Neurology rounds"
            for room_id in (direct, group):
                await client.join(room_id)
            await synced(client)
            assert client.rooms[group].display_name == "Neurology rounds"
            assert set(client.rooms[group].users) == {alice["user_id"], bob["user_id"], carol["user_id"]}
            assert set(client.rooms[group].invited_users) == {carol["user_id"]}
            assert set(client.rooms[direct].users) == {alice["user_id"], bob["user_id"]}
            assert client.rooms[direct].display_name == f"Dr. {alice['username'].title()}"
        finally:
            await client.close()

    run(scenario())
    # Element lists it under "People" because of m.direct.
    assert m_direct(api, bob) == {alice["user_id"]: [direct]}


def test_api_messages_render_in_a_matrix_client(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = create_room(api, alice["access_token"], type="group", name="Handover", participants=[bob["user_id"]])["id"]
    api.call("POST", room_path(room, "/participants"), token=bob["access_token"], json={"user_id": bob["user_id"]})
    text = send(api, alice, room, content="Bed 3 needs bloods")
    reply = api.call(
        "POST", msg_path(room, text["id"], "/reply"), token=bob["access_token"], json={"content": "Done at 14:00"}
    ).json()
    api.call("PUT", msg_path(room, reply["id"]), token=bob["access_token"], json={"content": "Done at 14:05"})
    api.call("POST", msg_path(room, text["id"], "/reactions"), token=bob["access_token"], json={"key": "✅"})
    doomed = send(api, alice, room, content="wrong room, sorry")
    api.call("DELETE", msg_path(room, doomed["id"]), token=alice["access_token"])

    async def scenario() -> None:
        client = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            events = await timeline(client, room)
        finally:
            await client.close()
        by_id = {e["event_id"]: e for e in events}
        assert by_id[text["id"]]["content"] == {"msgtype": "m.text", "body": "Bed 3 needs bloods"}
        assert by_id[reply["id"]]["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": text["id"]}}
        edits = [e for e in events if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"]
        assert [(e["content"]["m.relates_to"]["event_id"], e["content"]["m.new_content"]["body"]) for e in edits] == [
            (reply["id"], "Done at 14:05")
        ]
        reactions = [e for e in events if e["type"] == "m.reaction"]
        assert [e["content"]["m.relates_to"] for e in reactions] == [
            {"rel_type": "m.annotation", "event_id": text["id"], "key": "✅"}
        ]
        assert by_id[doomed["id"]]["content"] == {} and "redacted_because" in by_id[doomed["id"]]["unsigned"]

    run(scenario())


def test_matrix_client_messages_show_in_the_api(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = create_room(api, alice["access_token"], type="group", name="Pharmacy", participants=[bob["user_id"]])["id"]
    ids: dict[str, str] = {}

    async def scenario() -> None:
        client = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            await client.join(room)

            async def send_event(kind: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
                response = await client.room_send(room, event_type, content)
                assert isinstance(response, RoomSendResponse), response
                return response.event_id

            ids["text"] = await send_event("text", {"msgtype": "m.text", "body": "Is 5 mg enough?"})
            ids["reply"] = await send_event(
                "reply",
                {
                    "msgtype": "m.text",
                    "body": "> <@x:y> Is 5 mg enough?\n\nStart with 2.5 mg",
                    "m.relates_to": {"m.in_reply_to": {"event_id": ids["text"]}},
                },
            )
            await send_event(
                "edit",
                {
                    "msgtype": "m.text",
                    "body": "* Is 10 mg enough?",
                    "m.new_content": {"msgtype": "m.text", "body": "Is 10 mg enough?"},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": ids["text"]},
                },
            )
            await send_event(
                "reaction",
                {"m.relates_to": {"rel_type": "m.annotation", "event_id": ids["reply"], "key": "🙏"}},
                "m.reaction",
            )
            ids["deleted"] = await send_event("text", {"msgtype": "m.text", "body": "typo"})
            await client.room_redact(room, ids["deleted"])
        finally:
            await client.close()

    run(scenario())
    messages = api.call("GET", room_path(room, "/messages"), token=alice["access_token"]).json()["results"]
    assert [m["id"] for m in messages] == [ids["deleted"], ids["reply"], ids["text"]]  # the edit is folded in
    deleted, reply, text = messages
    assert deleted["is_deleted"] is True and deleted["content"] is None
    assert reply["reply_to"] == ids["text"] and reply["content"] == "Start with 2.5 mg"
    assert [(r["key"], r["count"], r["reacted_by_me"]) for r in reply["reactions"]] == [("🙏", 1, False)]
    assert (
        text["content"] == "Is 10 mg enough?" and text["is_edited"] is True and text["sender"]["id"] == bob["user_id"]
    )
    # ... and the API's rules apply to what the client sent.
    assert (
        api.call("PUT", msg_path(room, ids["text"]), token=alice["access_token"], json={"content": "x"}).status_code
        == 403
    )


def test_dm_made_in_a_matrix_client_is_reused(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()

    async def scenario() -> str:
        client = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            created = await client.room_create(
                is_direct=True, invite=[alice["user_id"]], preset=RoomPreset.trusted_private_chat
            )
            # Element records the DM in m.direct, as every Matrix client should.
            path = f"/_matrix/client/v3/user/{quote(bob['user_id'])}/account_data/m.direct"
            put = api.call("PUT", path, token=client.access_token, json={alice["user_id"]: [created.room_id]})
            assert put.status_code == 200
            return created.room_id
        finally:
            await client.close()

    room_id = run(scenario())
    from_api = api.call(
        "POST",
        "/api/chat/rooms",
        token=alice["access_token"],
        json={"type": "direct", "participants": [bob["user_id"]]},
    )
    assert from_api.status_code == 200, from_api.text
    assert (
        from_api.json()["id"] == room_id
        and from_api.json()["type"] == "direct"
        and from_api.json()["membership"] == "join"
    )
    assert m_direct(api, alice) == {bob["user_id"]: [room_id]}
    from_bob = api.call(
        "POST",
        "/api/chat/rooms",
        token=bob["access_token"],
        json={"type": "direct", "participants": [alice["user_id"]]},
    )
    assert from_bob.status_code == 200 and from_bob.json()["id"] == room_id


def nio_dm(server: SynapseServer, api: Api, creator: dict[str, Any], invitee: dict[str, Any]) -> str:
    """A DM as a Matrix client makes it: createRoom `is_direct` with the invite, and the
    creator's `m.direct`. The room's id."""

    async def scenario() -> str:
        client = await nio_login(server.base_url, creator["user_id"], creator["password"])
        try:
            created = await client.room_create(
                is_direct=True, invite=[invitee["user_id"]], preset=RoomPreset.trusted_private_chat
            )
            path = f"/_matrix/client/v3/user/{quote(creator['user_id'])}/account_data/m.direct"
            put = api.call("PUT", path, token=client.access_token, json={invitee["user_id"]: [created.room_id]})
            assert put.status_code == 200, put.text
            return created.room_id
        finally:
            await client.close()

    return run(scenario())


def listed_type(api: Api, user: dict[str, Any], room_id: str) -> str:
    rooms = api.call("GET", "/api/chat/rooms?limit=100", token=user["access_token"]).json()["results"]
    return next(r["type"] for r in rooms if r["id"] == room_id)


def test_a_client_made_dm_stays_direct_when_joined_through_the_api(api: Api, server: SynapseServer) -> None:
    """Issue 17: the invitee sees `direct` before the join, and after `POST …/join` too; the
    join adds the room to the invitee's `m.direct` under the inviter, keeping what was there."""
    alice, bob, carol = api.register(), api.register(), api.register()
    earlier = create_room(api, bob["access_token"], type="direct", participants=[carol["user_id"]])["id"]
    room_id = nio_dm(server, api, alice, bob)
    assert listed_type(api, bob, room_id) == "direct"
    joined = api.call("POST", room_path(room_id, "/join"), token=bob["access_token"], json={})
    assert joined.status_code == 200, joined.text
    assert joined.json()["room"]["type"] == "direct"
    assert listed_type(api, bob, room_id) == "direct"
    assert m_direct(api, bob) == {carol["user_id"]: [earlier], alice["user_id"]: [room_id]}
    # Reused as the DM of the two from the API, by either side.
    again = api.call(
        "POST",
        "/api/chat/rooms",
        token=bob["access_token"],
        json={"type": "direct", "participants": [alice["user_id"]]},
    )
    assert again.status_code == 200 and again.json()["id"] == room_id


def test_a_client_made_dm_stays_direct_when_joined_in_a_matrix_client(api: Api, server: SynapseServer) -> None:
    """The same join made by a Matrix client that does not update `m.direct` (the module does),
    and by one that does, as Element (the module's merge then changes nothing)."""
    alice, bob, carol = api.register(), api.register(), api.register()
    plain = nio_dm(server, api, alice, bob)
    element = nio_dm(server, api, carol, bob)

    async def scenario() -> None:
        client = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            await synced(client)
            await client.join(plain)
            path = f"/_matrix/client/v3/user/{quote(bob['user_id'])}/account_data/m.direct"
            await client.join(element)
            current = api.call("GET", path, token=client.access_token).json()
            current[carol["user_id"]] = [element]
            assert api.call("PUT", path, token=client.access_token, json=current).status_code == 200
        finally:
            await client.close()

    run(scenario())
    deadline = time.monotonic() + 10
    while alice["user_id"] not in m_direct(api, bob) or carol["user_id"] not in m_direct(api, bob):
        assert time.monotonic() < deadline, m_direct(api, bob)
        time.sleep(0.1)
    assert m_direct(api, bob) == {alice["user_id"]: [plain], carol["user_id"]: [element]}
    assert listed_type(api, bob, plain) == listed_type(api, bob, element) == "direct"
