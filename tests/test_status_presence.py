"""Message status (sent → delivered → read on Matrix receipts), mark-read, presence."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import aiohttp
from nio import ReceiptEvent, SyncResponse

from harness import Api, SynapseServer, expect_error, nio_login, run, send_text, shared_room


def status_of(api: Api, token: str, message_id: str) -> dict:
    response = api.call("GET", f"/api/chat/messages/{quote(message_id)}/status", token=token)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_status(api: Api, token: str, message_id: str, wanted: str, timeout: float = 5) -> dict:
    """Delivery marks are written just after the frame goes out, so the sender sees them shortly after."""
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(api, token, message_id)
        if status["status"] == wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_sent_then_delivered_then_read(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)

    async def sent_while_bob_listens() -> str:
        async with aiohttp.ClientSession() as session:
            url = server.base_url.replace("http", "ws", 1) + "/api/chat/ws"
            async with session.ws_connect(url, params={"access_token": bob["access_token"]}) as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
                loop = asyncio.get_running_loop()
                message = await loop.run_in_executor(None, send_text, api, alice["access_token"], room, "Labs are back")
                status = await loop.run_in_executor(None, status_of, api, alice["access_token"], message)
                assert status["participants"][0]["user_id"] == bob["user_id"]
                while True:
                    frame = await ws.receive_json(timeout=10)
                    if any(e.get("message", {}).get("id") == message for e in frame.get("events", [])):
                        return message

    message = run(sent_while_bob_listens())
    assert wait_for_status(api, alice["access_token"], message, "delivered")["status"] == "delivered"

    async def bob_reads_in_a_matrix_client() -> None:
        nio = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            await nio.room_read_markers(room, fully_read_event=message, read_event=message)
        finally:
            await nio.close()

    run(bob_reads_in_a_matrix_client())
    status = status_of(api, alice["access_token"], message)
    assert (status["status"], status["participants"][0]["status"]) == ("read", "read")
    # The Message model carries the same aggregate for its sender; other viewers keep `sent`.
    path = f"/api/chat/rooms/{quote(room)}/messages/{quote(message)}"
    assert api.call("GET", path, token=alice["access_token"]).json()["status"] == "read"
    assert api.call("GET", path, token=bob["access_token"]).json()["status"] == "sent"


def test_a_message_nobody_received_is_sent(api: Api) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    message = send_text(api, alice["access_token"], room, "Anyone?")
    status = status_of(api, alice["access_token"], message)
    assert (status["status"], status["participants"]) == ("sent", [{"user_id": bob["user_id"], "status": "sent"}])
    history = api.call("GET", f"/api/chat/rooms/{quote(room)}/messages", token=alice["access_token"]).json()["results"]
    assert [m["status"] for m in history if m["id"] == message] == ["sent"]


def test_a_matrix_client_sync_marks_delivered(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    message = send_text(api, alice["access_token"], room, "Sent while bob uses Element")
    assert status_of(api, alice["access_token"], message)["status"] == "sent"

    async def bob_syncs() -> None:
        nio = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            sync = await nio.sync(timeout=0)
            assert isinstance(sync, SyncResponse)
            assert message in [e.event_id for e in sync.rooms.join[room].timeline.events]
        finally:
            await nio.close()

    run(bob_syncs())
    assert wait_for_status(api, alice["access_token"], message, "delivered")["status"] == "delivered"


def test_app_acknowledgements_and_mark_read_are_matrix_receipts(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    first = send_text(api, alice["access_token"], room, "first")
    second = send_text(api, alice["access_token"], room, "second")

    acked = api.call(
        "PUT", f"/api/chat/messages/{quote(first)}/status", token=bob["access_token"], json={"status": "delivered"}
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["participants"] == [{"user_id": bob["user_id"], "status": "delivered"}]
    assert status_of(api, alice["access_token"], second)["status"] == "sent"

    read = api.call("POST", f"/api/chat/messages/{quote(second)}/mark-read", token=bob["access_token"])
    assert read.status_code == 200, read.text
    assert status_of(api, alice["access_token"], first)["status"] == "read"  # a receipt reads what came before

    async def alice_sees_the_receipt() -> set[str]:
        nio = await nio_login(server.base_url, alice["user_id"], alice["password"])
        try:
            sync = await nio.sync(timeout=0, full_state=True)
            assert isinstance(sync, SyncResponse)
            return {
                receipt.event_id
                for event in sync.rooms.join[room].ephemeral
                if isinstance(event, ReceiptEvent)
                for receipt in event.receipts
                if receipt.user_id == bob["user_id"] and receipt.receipt_type == "m.read"
            }
        finally:
            await nio.close()

    assert second in run(alice_sees_the_receipt())


def test_mark_all_read_moves_receipt_and_fully_read_marker(api: Api) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    for text in ("one", "two", "three"):
        last = send_text(api, alice["access_token"], room, text)
    response = api.call("POST", f"/api/chat/rooms/{quote(room)}/mark-all-read", token=bob["access_token"])
    assert response.status_code == 200, response.text
    assert response.json()["read_up_to"] == last
    marker = api.call(
        "GET",
        f"/_matrix/client/v3/user/{quote(bob['user_id'])}/rooms/{quote(room)}/account_data/m.fully_read",
        token=bob["access_token"],
    )
    assert marker.json()["event_id"] == last
    assert status_of(api, alice["access_token"], last)["status"] == "read"


def test_status_access_and_bad_input(api: Api) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    room = shared_room(api, alice, bob)
    message = send_text(api, alice["access_token"], room, "private")
    path = f"/api/chat/messages/{quote(message)}/status"
    expect_error(api.call("GET", path), 401, "M_MISSING_TOKEN")
    expect_error(api.call("GET", path, token=carol["access_token"]), 404, "M_NOT_FOUND")
    expect_error(
        api.call("POST", f"/api/chat/messages/{quote(message)}/mark-read", token=carol["access_token"]),
        404,
        "M_NOT_FOUND",
    )
    expect_error(
        api.call("GET", "/api/chat/messages/%24nope%3Amedchat.test/status", token=alice["access_token"]),
        404,
        "M_NOT_FOUND",
    )
    expect_error(api.call("PUT", path, token=bob["access_token"], json={"status": "sent"}), 400, "M_INVALID_PARAM")
    expect_error(api.call("PUT", path, token=bob["access_token"], json={}), 400, "M_MISSING_PARAM")
    expect_error(
        api.call("POST", f"/api/chat/rooms/{quote(room)}/mark-all-read", token=carol["access_token"]),
        404,
        "M_NOT_FOUND",
    )


def test_presence_through_the_api_and_matrix(api: Api, server: SynapseServer) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    shared_room(api, alice, bob)
    path = f"/api/chat/users/{quote(alice['user_id'])}/status"

    put = api.call("PUT", path, token=alice["access_token"], json={"status": "unavailable", "status_msg": "In theatre"})
    assert put.status_code == 200, put.text
    seen = api.call("GET", path, token=bob["access_token"]).json()
    assert (seen["status"], seen["is_online"], seen["status_msg"]) == ("unavailable", False, "In theatre")

    async def matrix_side() -> tuple[str, str]:
        nio = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            theirs = await nio.get_presence(alice["user_id"])
            await nio.set_presence("online", "On call")
            return theirs.presence, theirs.status_msg
        finally:
            await nio.close()

    assert run(matrix_side()) == ("unavailable", "In theatre")
    bobs = api.call("GET", f"/api/chat/users/{quote(bob['user_id'])}/status", token=alice["access_token"]).json()
    assert (bobs["status"], bobs["is_online"], bobs["status_msg"]) == ("online", True, "On call")
    assert bobs["last_seen"].endswith("Z")

    expect_error(api.call("GET", path, token=carol["access_token"]), 403, "M_FORBIDDEN")
    # A contact sees it without sharing a room, once the request is accepted.
    api.call("POST", "/api/chat/contacts", token=carol["access_token"], json={"user_id": alice["user_id"]})
    expect_error(api.call("GET", path, token=carol["access_token"]), 403, "M_FORBIDDEN")
    accepted = api.call(
        "POST", f"/api/chat/contacts/requests/{quote(carol['user_id'])}/accept", token=alice["access_token"], json={}
    )
    assert accepted.status_code == 200, accepted.text
    assert api.call("GET", path, token=carol["access_token"]).json()["status"] == "unavailable"
    expect_error(api.call("PUT", path, token=bob["access_token"], json={"status": "offline"}), 403, "M_FORBIDDEN")
    expect_error(api.call("PUT", path, token=alice["access_token"], json={"status": "asleep"}), 400, "M_INVALID_PARAM")
    expect_error(
        api.call("GET", "/api/chat/users/%40ghost%3Amedchat.test/status", token=alice["access_token"]),
        404,
        "M_NOT_FOUND",
    )
