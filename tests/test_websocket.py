"""GET /api/chat/ws: what Matrix clients do arrives on the app's socket, resumably."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import quote

import aiohttp
import pytest

from harness import Api, SynapseServer, nio_login, register_admin, run, send_text, shared_room, transactions

Frame = dict[str, Any]


class Socket:
    """An app-side WebSocket: collects event frames and remembers the last position."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]):
        self.ws = ws
        self.pos: str | None = None
        self.events: list[Frame] = []
        self._queue: list[Frame] = []

    async def hello(self) -> Frame:
        frame = await self.ws.receive_json(timeout=10)
        assert frame["type"] == "hello", frame
        self.pos = frame["pos"]
        return frame

    async def until(self, predicate: Callable[[Frame], bool], timeout: float = 10) -> Frame:
        """The next event frame matching `predicate`, reading on as needed; later frames of the
        same batch stay queued for the next call."""
        deadline = time.monotonic() + timeout
        while True:
            while self._queue:
                event = self._queue.pop(0)
                if predicate(event):
                    return event
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching frame within {timeout}s; got {self.events}")
            frame = await self.ws.receive_json(timeout=deadline - time.monotonic())
            if "pos" in frame:
                self.pos = frame["pos"]
            self.events.extend(frame.get("events", []))
            self._queue.extend(frame.get("events", []))


async def connect(
    session: aiohttp.ClientSession, base_url: str, token: str | None, since: str | None = None, **kw: Any
) -> aiohttp.ClientWebSocketResponse[bool]:
    query = {k: v for k, v in {"access_token": token, "since": since}.items() if v}
    return await session.ws_connect(base_url.replace("http", "ws", 1) + "/api/chat/ws", params=query, **kw)


def test_matrix_client_activity_arrives_on_the_socket(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)

    async def scenario() -> None:
        nio = await nio_login(server.base_url, alice["user_id"], alice["password"])
        try:
            async with aiohttp.ClientSession() as session:
                sock = Socket(await connect(session, server.base_url, bob["access_token"]))
                await sock.hello()

                sent = await nio.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "Ward round at 8"})
                new = await sock.until(lambda e: e["type"] == "message.new")
                assert new["message"]["id"] == sent.event_id
                notified = await sock.until(lambda e: e["type"] == "notification.new")
                assert notified["notification"]["id"] == sent.event_id
                assert notified["notification"]["type"] == "new_message"
                assert (new["message"]["content"], new["message"]["message_type"]) == ("Ward round at 8", "text")
                assert new["message"]["sender"]["id"] == alice["user_id"] and new["room_id"] == room
                rest = api.call(
                    "GET", f"/api/chat/rooms/{quote(room)}/messages/{quote(sent.event_id)}", token=bob["access_token"]
                ).json()
                assert {k: new["message"][k] for k in ("sender", "content", "created_at", "reply_to")} == {
                    k: rest[k] for k in ("sender", "content", "created_at", "reply_to")
                }

                await nio.room_send(
                    room,
                    "m.room.message",
                    {
                        "msgtype": "m.text",
                        "body": "* Ward round at 9",
                        "m.new_content": {"msgtype": "m.text", "body": "Ward round at 9"},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": sent.event_id},
                    },
                )
                edit = await sock.until(lambda e: e["type"] == "message.edited")
                assert (edit["message_id"], edit["content"]) == (sent.event_id, "Ward round at 9")

                await nio.room_send(
                    room,
                    "m.reaction",
                    {"m.relates_to": {"rel_type": "m.annotation", "event_id": sent.event_id, "key": "👍"}},
                )
                reaction = await sock.until(lambda e: e["type"] == "reaction.added")
                assert (reaction["message_id"], reaction["key"], reaction["user_id"]) == (
                    sent.event_id,
                    "👍",
                    alice["user_id"],
                )

                await nio.room_typing(room, True, timeout=5000)
                typing = await sock.until(lambda e: e["type"] == "typing" and e["user_ids"])
                assert typing["user_ids"] == [alice["user_id"]]

                await nio.room_read_markers(room, fully_read_event=sent.event_id, read_event=sent.event_id)
                read = await sock.until(lambda e: e["type"] == "message.status")
                assert (read["message_id"], read["user_id"], read["status"]) == (
                    sent.event_id,
                    alice["user_id"],
                    "read",
                )

                await nio.room_redact(room, sent.event_id, reason="wrong ward")
                deleted = await sock.until(lambda e: e["type"] == "message.deleted")
                assert (deleted["message_id"], deleted["deleted_by"]) == (sent.event_id, alice["user_id"])

                carol = api.register()
                await nio.room_invite(room, carol["user_id"])
                member = await sock.until(lambda e: e["type"] == "membership" and e["user_id"] == carol["user_id"])
                assert member["membership"] == "invite"
                await sock.ws.close()
        finally:
            await nio.close()

    run(scenario())


def test_resume_delivers_everything_missed_in_order_once(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock = Socket(await connect(session, server.base_url, bob["access_token"]))
            await sock.hello()
            first = send_text(api, alice["access_token"], room, "before the tunnel")
            await sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == first)
            await sock.ws.close()

            missed = [send_text(api, alice["access_token"], room, f"missed {i}") for i in range(3)]

            again = Socket(await connect(session, server.base_url, bob["access_token"], since=sock.pos))
            hello = await again.hello()
            assert hello["pos"] == sock.pos
            await again.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == missed[-1])
            got = [e["message"]["id"] for e in again.events if e["type"] == "message.new"]
            assert got == missed  # in order, nothing twice, nothing from before the position
            await again.ws.close()

    run(scenario())


@pytest.mark.parametrize("token", [None, "syt_not_a_real_token"])
def test_missing_or_bad_token_closes_4001(api: Api, server: SynapseServer, token: str | None) -> None:
    async def scenario() -> int | None:
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, server.base_url, token)
            message = await ws.receive(timeout=10)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            return ws.close_code

    assert run(scenario()) == 4001


def test_bad_resume_position_closes_4400(api: Api, server: SynapseServer) -> None:
    bob = api.register()

    async def scenario() -> int | None:
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, server.base_url, bob["access_token"], since="not-a-position")
            await ws.receive(timeout=10)
            return ws.close_code

    assert run(scenario()) == 4400


def test_logout_closes_an_open_socket(api: Api, server: SynapseServer) -> None:
    bob = api.register()

    async def scenario() -> int | None:
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, server.base_url, bob["access_token"])
            await Socket(ws).hello()
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: api.call("POST", "/api/auth/logout", token=bob["access_token"])
            )
            while True:
                message = await ws.receive(timeout=15)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return ws.close_code

    assert run(scenario()) == 4001


def test_malformed_frames_get_errors_and_the_socket_stays(api: Api, server: SynapseServer) -> None:
    bob = api.register()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, server.base_url, bob["access_token"])
            await Socket(ws).hello()

            async def reply_to(send: Callable[[], Any]) -> Frame:
                await send()
                while True:
                    frame = await ws.receive_json(timeout=10)
                    if frame["type"] not in ("heartbeat", "events"):
                        return frame

            assert (await reply_to(lambda: ws.send_str("{oops")))["errcode"] == "M_NOT_JSON"
            assert (await reply_to(lambda: ws.send_bytes(b"\x00\x01")))["errcode"] == "M_NOT_JSON"
            assert (await reply_to(lambda: ws.send_str(json.dumps({"type": "subscribe"}))))[
                "errcode"
            ] == "M_UNRECOGNIZED"
            assert (await reply_to(lambda: ws.send_str(json.dumps([1, 2]))))["errcode"] == "M_UNRECOGNIZED"
            pong = await reply_to(lambda: ws.send_str(json.dumps({"type": "ping"})))
            assert pong["type"] == "pong" and pong["pos"]
            await ws.close()

    run(scenario())


def test_quiet_socket_gets_heartbeats(api: Api, server: SynapseServer) -> None:
    bob = api.register()

    async def scenario() -> Frame:
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, server.base_url, bob["access_token"])
            await Socket(ws).hello()
            while True:  # heartbeat_seconds is 2 in the test config
                frame = await ws.receive_json(timeout=10)
                if frame["type"] == "heartbeat":
                    await ws.close()
                    return frame

    assert run(scenario())["pos"]


def test_slow_consumer_is_closed_with_its_position(api: Api, server: SynapseServer) -> None:
    """A client that stops reading is not buffered for without bound: once the socket's send
    buffer stays full for slow_consumer_seconds (2 in the test config) it is closed with 4008."""
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)

    def small_buffer_socket(addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return sock

    async def scenario() -> tuple[int | None, str]:
        connector = aiohttp.TCPConnector(socket_factory=small_buffer_socket)
        async with aiohttp.ClientSession(connector=connector) as session:
            ws = await connect(session, server.base_url, bob["access_token"], max_msg_size=0)
            await Socket(ws).hello()
            body = "x" * 30_000
            # ~3.6 MB that the client does not read, sent 8 at a time: the server closes (after its
            # buffer stayed full for 2 s) and then cuts off a peer that still reads nothing after
            # ABORT_AFTER_SECONDS, so the sends must be over well before that, even on a loaded machine.
            with ThreadPoolExecutor(max_workers=8) as pool:
                await asyncio.gather(
                    *[
                        asyncio.wrap_future(pool.submit(send_text, api, alice["access_token"], room, f"{i} {body}"))
                        for i in range(120)
                    ]
                )
            await asyncio.sleep(3)
            last_pos = ""
            while True:
                message = await ws.receive(timeout=30)
                if message.type == aiohttp.WSMsgType.TEXT:
                    last_pos = json.loads(message.data).get("pos", last_pos)
                else:
                    return ws.close_code, last_pos

    code, last_pos = run(scenario())
    assert code == 4008
    assert last_pos


def test_sender_sees_delivery_and_module_notifications_arrive_live_and_on_resume(
    api: Api, server: SynapseServer
) -> None:
    alice, bob = api.register(), api.register()
    admin = register_admin(server)
    room = shared_room(api, alice, bob)

    async def scenario() -> None:
        loop_call = asyncio.get_running_loop
        async with aiohttp.ClientSession() as session:
            alice_sock = Socket(await connect(session, server.base_url, alice["access_token"]))
            bob_sock = Socket(await connect(session, server.base_url, bob["access_token"]))
            await alice_sock.hello()
            await bob_sock.hello()

            message = await loop_call().run_in_executor(
                None, send_text, api, alice["access_token"], room, "Handover at 7"
            )
            await bob_sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == message)
            delivered = await alice_sock.until(lambda e: e["type"] == "message.status" and e["status"] == "delivered")
            assert (delivered["message_id"], delivered["user_id"]) == (message, bob["user_id"])

            await loop_call().run_in_executor(
                None,
                lambda: api.call(
                    "POST", "/api/chat/contacts", token=alice["access_token"], json={"user_id": bob["user_id"]}
                ),
            )
            request = await bob_sock.until(
                lambda e: e["type"] == "notification.new" and e["notification"]["type"] == "contact_request"
            )
            assert request["notification"]["sender"] == alice["user_id"]
            await bob_sock.ws.close()

            # While bob is away his verification is decided; resuming delivers that notification once.
            asked = api.call(
                "POST",
                "/api/chat/verification/requests",
                token=bob["access_token"],
                json={"registration_body": "GMC", "license_number": "1234567"},
            )
            api.call(
                "POST",
                f"/api/chat/verification/requests/{asked.json()['id']}/approve",
                token=admin["access_token"],
                json={},
            )
            again = Socket(await connect(session, server.base_url, bob["access_token"], since=bob_sock.pos))
            await again.hello()
            decision = await again.until(lambda e: e["type"] == "notification.new")
            assert decision["notification"]["type"] == "verification_decision"
            assert not [
                e
                for e in again.events
                if e["type"] == "notification.new" and e["notification"]["type"] == "contact_request"
            ]
            await again.ws.close()
            await alice_sock.ws.close()

    run(scenario())


@pytest.mark.parametrize("size", [64 * 1024 + 1, 200 * 1024, 10 * 1024 * 1024])
def test_an_oversized_inbound_message_closes_1009(api: Api, server: SynapseServer, size: int) -> None:
    """Inbound messages are capped at 64 KiB: over it the server closes with 1009 (message too big)
    without buffering the rest; a message just under it is answered as usual."""
    bob = api.register()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, server.base_url, bob["access_token"], max_msg_size=0)
            await Socket(ws).hello()
            await ws.send_str(json.dumps({"type": "ping", "pad": "x" * (60 * 1024)}))
            while (frame := await ws.receive_json(timeout=10))["type"] in ("heartbeat", "events"):
                pass
            assert frame["type"] == "pong", frame
            started = time.monotonic()
            try:
                await ws.send_str("x" * size)
            except ConnectionResetError:
                pass  # the server closed while the message was still being written
            message = await ws.receive(timeout=20)
            while message.type == aiohttp.WSMsgType.TEXT and time.monotonic() - started < 15:
                message = await ws.receive(timeout=20)  # frames the server sent before closing
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert ws.close_code == 1009, (message, ws.close_code)
            assert time.monotonic() - started < 15

    run(scenario())


async def greeted(session: aiohttp.ClientSession, server: SynapseServer, *users: dict[str, Any]) -> list[Socket]:
    """A socket for each user, each past its hello."""
    sockets = [Socket(await connect(session, server.base_url, user["access_token"])) for user in users]
    for sock in sockets:
        await sock.hello()
    return sockets


def test_sockets_of_one_room_each_get_their_own_viewer_fields(api: Api, server: SynapseServer) -> None:
    """The fan-out builds a message once for all its recipients: each still sees its own
    `reacted_by_me`, and only the sender's socket carries the sender's `client_msg_id`."""
    alice, bob, carol, dave = (api.register() for _ in range(4))
    room = shared_room(api, alice, bob, carol, dave)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            starts = {}
            for user in (alice, bob, carol, dave):
                first = Socket(await connect(session, server.base_url, user["access_token"]))
                await first.hello()
                starts[user["user_id"]] = first.pos
                await first.ws.close()
            # While everyone is away: alice posts, carol reacts. Resuming delivers the message with
            # its reactions, as each viewer sees them.
            sent = await loop.run_in_executor(
                None,
                lambda: api.call(
                    "POST",
                    f"/api/chat/rooms/{quote(room)}/messages",
                    token=alice["access_token"],
                    json={"content": "Bed 4 needs review", "client_msg_id": "fanout-1"},
                ),
            )
            assert sent.status_code == 201, sent.text
            message_id = sent.json()["id"]
            reacted = await loop.run_in_executor(
                None,
                lambda: api.call(
                    "POST",
                    f"/api/chat/rooms/{quote(room)}/messages/{quote(message_id)}/reactions",
                    token=carol["access_token"],
                    json={"key": "👍"},
                ),
            )
            assert reacted.status_code in (200, 201), reacted.text
            sockets = {}
            for user in (bob, carol, dave, alice):
                sock = Socket(
                    await connect(session, server.base_url, user["access_token"], since=starts[user["user_id"]])
                )
                await sock.hello()
                sockets[user["user_id"]] = sock
            models = {
                user_id: (await sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == message_id))[
                    "message"
                ]
                for user_id, sock in sockets.items()
            }
            for user_id, model in models.items():
                assert model["reactions"] == [
                    {"key": "👍", "count": 1, "reacted_by_me": user_id == carol["user_id"]}
                ], user_id
                assert model["content"] == "Bed 4 needs review"
                assert model.get("client_msg_id") == ("fanout-1" if user_id == alice["user_id"] else None), user_id
            for sock in sockets.values():
                await sock.ws.close()

    run(scenario())


def test_a_socket_of_a_member_who_left_stops_receiving_the_room(api: Api, server: SynapseServer) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    room = shared_room(api, alice, bob, carol)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            bob_sock, carol_sock = await greeted(session, server, bob, carol)
            before = await loop.run_in_executor(None, send_text, api, alice["access_token"], room, "Before")
            for sock in (bob_sock, carol_sock):
                await sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == before)
            left = await loop.run_in_executor(
                None,
                lambda: api.call(
                    "POST", f"/_matrix/client/v3/rooms/{room}/leave", token=carol["access_token"], json={}
                ),
            )
            assert left.status_code == 200, left.text
            await carol_sock.until(lambda e: e["type"] == "membership" and e["membership"] == "leave")
            after = await loop.run_in_executor(None, send_text, api, alice["access_token"], room, "After")
            await bob_sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == after)
            with pytest.raises((AssertionError, TimeoutError)):  # nothing of the room any more
                await carol_sock.until(lambda e: e["type"] in ("message.new", "notification.new"), timeout=3)
            assert not [e for e in carol_sock.events if after in json.dumps(e)]
            await bob_sock.ws.close()
            await carol_sock.ws.close()

    run(scenario())


def test_sockets_sharing_a_room_read_still_see_only_what_each_may_see(api: Api, server: SynapseServer) -> None:
    """A room's new events are read once for all its sockets; what each socket gets of them is
    still Synapse's visibility decision for its user: one who ignores the sender (Matrix's
    `m.ignored_user_list`) gets nothing of the message that the others receive."""
    alice, bob, carol = api.register(), api.register(), api.register()
    room = shared_room(api, alice, bob, carol)
    ignored = api.call(
        "PUT",
        f"/_matrix/client/v3/user/{quote(carol['user_id'])}/account_data/m.ignored_user_list",
        token=carol["access_token"],
        json={"ignored_users": {alice["user_id"]: {}}},
    )
    assert ignored.status_code == 200, ignored.text

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            bob_sock, carol_sock = await greeted(session, server, bob, carol)
            sent = await loop.run_in_executor(None, send_text, api, alice["access_token"], room, "Ward round at 9")
            await bob_sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == sent)
            # Bob's own message comes after Alice's: Carol's socket reads past it, without it.
            own = await loop.run_in_executor(None, send_text, api, bob["access_token"], room, "Noted")
            await carol_sock.until(lambda e: e["type"] == "message.new" and e["message"]["id"] == own)
            assert not [e for e in carol_sock.events if sent in json.dumps(e)]
            await bob_sock.ws.close()
            await carol_sock.ws.close()

    run(scenario())


# What Synapse's visibility filter reads of each user alone, once per user and then cached.
PER_USER_READS = ("get_global_account_data_by_type_for_user", "ignored_users")


def test_a_message_to_sockets_just_opened_reads_nothing_per_socket(api: Api, server: SynapseServer) -> None:
    """A socket reads what its wakes read of its user alone before it waits: the first message to
    sockets that have just opened is not one database read per socket late."""
    alice, *members = (api.register() for _ in range(5))
    room = shared_room(api, alice, *members)
    send_text(api, alice["access_token"], room, "before anyone listens")  # the sender's own first reads

    async def scenario() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            sockets = await greeted(session, server, *members)
            await asyncio.sleep(1)  # each socket is in its first wait
            before = transactions(server)
            await loop.run_in_executor(None, send_text, api, alice["access_token"], room, "first to the sockets")
            for sock in sockets:
                await sock.until(lambda e: e["type"] == "message.new")
            after = transactions(server)
        return {name: after.get(name, 0) - before.get(name, 0) for name in PER_USER_READS}

    assert run(scenario()) == dict.fromkeys(PER_USER_READS, 0)
