"""End-to-end encrypted rooms through the REST API, with real Megolm crypto (matrix-nio's e2e extra).

One nio client is the app: it logs in with the REST API's token, encrypts with its own Olm machine
and sends the ciphertext through `POST /api/chat/rooms/{id}/messages`. A second, independent nio
client (as Element would be) decrypts it; the reverse goes through REST history and the WebSocket.
Afterwards no plaintext is anywhere in the database.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import AsyncClient, AsyncClientConfig, LoginResponse, MegolmEvent, RoomMessageText

from harness import PASSWORD, Api, SynapseServer, expect_error, found_in_tables, licence_verified, run
from test_websocket import Socket, connect

ROOMS = "/api/chat/rooms"
CONFIG = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
PAYLOAD_FIELDS = ("algorithm", "ciphertext", "sender_key", "session_id", "device_id")


def messages(room: str) -> str:
    return f"{ROOMS}/{quote(room)}/messages"


async def app_client(base_url: str, session: dict[str, Any], store: Path) -> AsyncClient:
    """The app's crypto: a nio client on the REST API's own token and device, its keys uploaded."""
    store.mkdir()
    client = AsyncClient(base_url, session["user_id"], store_path=str(store), config=CONFIG)
    client.restore_login(session["user_id"], session["device_id"], session["access_token"])
    await client.keys_upload()
    return client


async def element_client(base_url: str, user: dict[str, Any], store: Path) -> AsyncClient:
    """An independent Matrix client with its own device, logged in with the password."""
    store.mkdir()
    client = AsyncClient(base_url, user["user_id"], store_path=str(store), config=CONFIG)
    assert isinstance(await client.login(PASSWORD, device_name="element-like"), LoginResponse)
    await client.keys_upload()
    return client


async def trust_room(client: AsyncClient, room: str) -> None:
    """Syncs the room and its members' devices, and verifies them (as after an emoji verification)."""
    await client.sync(timeout=0, full_state=True)
    await client.joined_members(room)
    await client.keys_query()
    for user_id in client.rooms[room].users:
        for device in client.device_store.active_user_devices(user_id):
            client.verify_device(device)


async def decrypted_in_sync(client: AsyncClient, room: str, event_id: str) -> RoomMessageText:
    """The event as the client's sync decrypts it (room keys arrive as to-device messages)."""
    for _ in range(20):
        response = await client.sync(timeout=500)
        joined = getattr(response, "rooms", None)
        timeline = joined.join[room].timeline.events if joined and room in joined.join else []
        for event in timeline:
            if event.event_id == event_id:
                assert isinstance(event, RoomMessageText), event
                return event
    raise AssertionError(f"{event_id} never arrived decrypted")


def megolm_event(message: dict[str, Any]) -> MegolmEvent:
    """The Matrix event behind a REST message model of type `encrypted`, for the app's Olm machine."""
    encrypted = message["encrypted"]
    created = datetime.fromisoformat(message["created_at"].replace("Z", "+00:00"))
    raw = {
        "type": "m.room.encrypted",
        "event_id": message["id"],
        "room_id": message["room_id"],
        "sender": message["sender"]["id"],
        "origin_server_ts": round(created.timestamp() * 1000),
        "content": {k: encrypted[k] for k in PAYLOAD_FIELDS if encrypted[k] is not None},
    }
    event = MegolmEvent.from_dict(raw)
    assert isinstance(event, MegolmEvent), event
    return event


def payload(content: dict[str, Any]) -> dict[str, Any]:
    """The REST `encrypted` object from nio's encrypted content."""
    return {k: content[k] for k in PAYLOAD_FIELDS if k in content}


def test_ciphertext_both_ways_through_rest_and_websocket_and_no_plaintext_in_the_database(
    api: Api, server: SynapseServer, tmp_path: Path
) -> None:
    alice, bob = api.register(), api.register()
    created = api.call(
        "POST",
        ROOMS,
        token=alice["access_token"],
        json={"type": "group", "name": "Night shift", "participants": [bob["user_id"]], "encrypted": True},
    )
    assert created.status_code == 201, created.text
    room = created.json()["id"]
    assert created.json()["encrypted"] is True
    tag = secrets.token_hex(4)
    to_bob, edited, to_alice = f"Bed 4 lactate rising {tag}", f"Bed 4 lactate falling {tag}", f"On my way {tag}"

    async def scenario() -> None:
        element = await element_client(server.base_url, bob, tmp_path / "element")
        app = await app_client(server.base_url, alice, tmp_path / "app")
        try:
            await element.join(room)
            assert api.call("GET", f"{ROOMS}/{quote(room)}", token=bob["access_token"]).json()["encrypted"] is True
            # App -> Element: encrypted on the app's device, only the ciphertext through REST.
            await trust_room(app, room)
            await app.share_group_session(room)
            _, content = app.encrypt(room, "m.room.message", {"msgtype": "m.text", "body": to_bob})
            body = {"encrypted": payload(content), "client_msg_id": f"m-{tag}"}
            sent = api.call("POST", messages(room), token=alice["access_token"], json=body)
            assert sent.status_code == 201, sent.text
            message = sent.json()
            assert (message["message_type"], message["content"]) == ("encrypted", None)
            assert message["encrypted"]["ciphertext"] == content["ciphertext"]
            again = api.call("POST", messages(room), token=alice["access_token"], json=body)
            assert again.json()["id"] == message["id"]  # the same Matrix transaction
            assert (await decrypted_in_sync(element, room, message["id"])).body == to_bob

            # An encrypted edit (relation in the clear), folded into the original.
            new = {"msgtype": "m.text", "body": f"* {edited}", "m.new_content": {"msgtype": "m.text", "body": edited}}
            _, edit_content = app.encrypt(room, "m.room.message", new)
            edit = api.call(
                "POST",
                messages(room),
                token=alice["access_token"],
                json={
                    "encrypted": payload(edit_content),
                    "relates_to": {"rel_type": "m.replace", "event_id": message["id"]},
                },
            )
            assert edit.status_code == 201, edit.text
            assert (await decrypted_in_sync(element, room, edit.json()["id"])).body == f"* {edited}"

            # Element -> app: read back from the WebSocket and REST history, decrypted on the app's device.
            async with aiohttp.ClientSession() as session:
                sock = Socket(await connect(session, server.base_url, alice["access_token"]))
                await sock.hello()
                await element.keys_query()
                reply = {
                    "msgtype": "m.text",
                    "body": to_alice,
                    "m.relates_to": {"m.in_reply_to": {"event_id": message["id"]}},
                }
                answer = await element.room_send(room, "m.room.message", reply, ignore_unverified_devices=True)
                frame = await sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == answer.event_id)
                notified = await sock.until(lambda e: e["type"] == "notification.new")
                assert notified["notification"]["content"] is None
                await sock.ws.close()
            for _ in range(5):  # the room key arrives as a to-device message
                await app.sync(timeout=500)
            live = frame["message"]
            assert (live["message_type"], live["content"], live["reply_to"]) == ("encrypted", None, message["id"])
            assert app.decrypt_event(megolm_event(live)).body == to_alice
            history = api.call("GET", messages(room), token=alice["access_token"]).json()["results"]
            by_id = {m["id"]: m for m in history}
            assert edit.json()["id"] not in by_id  # edits are folded in, as for plain messages
            assert app.decrypt_event(megolm_event(by_id[answer.event_id])).body == to_alice
            original = by_id[message["id"]]
            assert original["is_edited"] and original["encrypted"]["edit"]["id"] == edit.json()["id"]
            edit_event = megolm_event(
                {
                    **original,
                    "id": edit.json()["id"],
                    "encrypted": original["encrypted"]["edit"],
                    "created_at": edit.json()["created_at"],
                }
            )
            assert app.decrypt_event(edit_event).source["content"]["m.new_content"]["body"] == edited
        finally:
            await element.close()
            await app.close()

    run(scenario())

    # Notifications carry no content; reactions, status and deletion work as for plain messages.
    listed = api.call("GET", "/api/chat/notifications", token=bob["access_token"]).json()["results"]
    assert listed and all(n["content"] is None for n in listed if n["room_id"] == room)
    first = api.call("GET", messages(room), token=bob["access_token"]).json()["results"][-1]
    one = f"{messages(room)}/{quote(first['id'])}"
    reacted = api.call("POST", f"{one}/reactions", token=bob["access_token"], json={"key": "👍"})
    assert reacted.status_code == 201 and reacted.json()["reactions"][0]["count"] == 1, reacted.text
    status = api.call(
        "PUT", f"/api/chat/messages/{quote(first['id'])}/status", token=bob["access_token"], json={"status": "read"}
    )
    assert status.status_code == 200, status.text
    assert api.call("GET", one, token=alice["access_token"]).json()["status"] == "read"
    deleted = api.call("DELETE", one, token=alice["access_token"])
    assert deleted.status_code == 200 and deleted.json()["is_deleted"] and deleted.json()["encrypted"] is None

    leftovers = found_in_tables(server, [to_bob, edited, to_alice])
    assert leftovers == [], leftovers


def test_encryption_is_for_direct_chats_and_groups_and_plaintext_is_refused_in_them(
    api: Api, server: SynapseServer
) -> None:
    alice, bob = api.register(), api.register()
    direct = api.call(
        "POST",
        ROOMS,
        token=alice["access_token"],
        json={"type": "direct", "participants": [bob["user_id"]], "encrypted": True},
    )
    assert direct.status_code == 201, direct.text
    assert (direct.json()["type"], direct.json()["encrypted"]) == ("direct", True)
    room = direct.json()["id"]
    plain = api.call("POST", ROOMS, token=alice["access_token"], json={"type": "group", "name": "Plain"})
    assert plain.json()["encrypted"] is False

    doctor = licence_verified(api, server)
    case = {"type": "case", "name": "Bay 3", "encrypted": True}
    expect_error(api.call("POST", ROOMS, token=doctor["access_token"], json=case), 400, "M_INVALID_PARAM")

    refused = api.call("POST", messages(room), token=alice["access_token"], json={"content": "in the clear"})
    assert "encrypt" in expect_error(refused, 400, "ORG_MEDCHAT_ENCRYPTION_REQUIRED")["error"]
    ciphertext = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnA", "session_id": "c2Vzc2lvbg"}
    mixed = {"encrypted": ciphertext, "content": "in the clear"}
    expect_error(api.call("POST", messages(room), token=alice["access_token"], json=mixed), 400, "M_INVALID_PARAM")
    into_plain = api.call(
        "POST", messages(plain.json()["id"]), token=alice["access_token"], json={"encrypted": ciphertext}
    )
    expect_error(into_plain, 400, "M_INVALID_PARAM")
    missing = {"message_type": "encrypted"}
    expect_error(api.call("POST", messages(room), token=alice["access_token"], json=missing), 400, "M_MISSING_PARAM")
    unknown = {"encrypted": ciphertext, "relates_to": {"rel_type": "m.replace", "event_id": "$nope"}}
    expect_error(api.call("POST", messages(room), token=alice["access_token"], json=unknown), 404, "M_NOT_FOUND")

    # A room a Matrix client encrypted reads as encrypted too.
    native = api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=alice["access_token"],
        json={
            "initial_state": [
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
            ]
        },
    )
    assert api.call("GET", f"{ROOMS}/{quote(native.json()['room_id'])}", token=alice["access_token"]).json()[
        "encrypted"
    ]


def test_an_encrypted_event_sent_natively_is_a_message_of_the_rest_api(api: Api, server: SynapseServer) -> None:
    """What the issue saw vanish: a Matrix client's m.room.encrypted is in history and opens with GET."""
    alice, bob = api.register(), api.register()
    room = api.call(
        "POST",
        ROOMS,
        token=alice["access_token"],
        json={"type": "group", "name": "E2EE", "participants": [bob["user_id"]], "encrypted": True},
    ).json()["id"]
    assert (
        api.call("POST", f"/_matrix/client/v3/join/{quote(room)}", token=bob["access_token"], json={}).status_code
        == 200
    )
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgAEnAx",
        "session_id": "c2Vzc2lvbg",
        "sender_key": "a2V5",
        "device_id": "DEV",
    }
    sent = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.encrypted/t1",
        token=bob["access_token"],
        json=content,
    )
    event_id = sent.json()["event_id"]
    one = api.call("GET", f"{messages(room)}/{quote(event_id)}", token=alice["access_token"])
    assert one.status_code == 200, one.text
    assert one.json()["encrypted"] == {**content, "edit": None}
    assert [m["id"] for m in api.call("GET", messages(room), token=alice["access_token"]).json()["results"]] == [
        event_id
    ]
    listed = api.call("GET", "/api/chat/notifications", token=alice["access_token"]).json()["results"]
    assert [(n["message_id"], n["content"]) for n in listed if n["room_id"] == room] == [(event_id, None)]
    assert (
        api.call("GET", f"{ROOMS}/{quote(room)}", token=alice["access_token"]).json()["last_message"]["message_type"]
        == "encrypted"
    )
