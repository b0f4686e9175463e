"""Every message kind, both ways (issue 17, items 1 and 5): sent through the REST API and read by
matrix-nio as the Matrix spec (and Element) shapes them, sent by matrix-nio and read through REST
history, GET of one message and the WebSocket; polls tallied across users; history pages that are
never empty while older messages exist."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from nio import AsyncClient, RoomGetEventResponse, RoomSendResponse

from harness import Api, SynapseServer, expect_error, nio_login, run, send_text, shared_room
from test_messages import msg_path
from test_rooms import room_path
from test_websocket import Socket, connect

User = dict[str, Any]


@pytest.fixture(scope="module")
def mapi(server: SynapseServer) -> Api:
    return Api(server.base_url)


@pytest.fixture(scope="module")
def users(mapi: Api) -> dict[str, User]:
    return {name: mapi.register() for name in ("alice", "bob", "carol")}


@pytest.fixture(scope="module")
def room(mapi: Api, users: dict[str, User]) -> str:
    """A room of the three, made with the native Matrix API (the REST API reads any room)."""
    return shared_room(mapi, users["alice"], users["bob"], users["carol"])


def post(api: Api, user: User, path: str, status: int = 201, **body: Any) -> dict[str, Any]:
    response = api.call("POST", path, token=user["access_token"], json=body)
    assert response.status_code == status, response.text
    return response.json()


def get(api: Api, user: User, path: str) -> dict[str, Any]:
    response = api.call("GET", path, token=user["access_token"])
    assert response.status_code == 200, response.text
    return response.json()


async def nio_event(client: AsyncClient, room: str, event_id: str) -> dict[str, Any]:
    """The raw event as matrix-nio reads it from the server."""
    response = await client.room_get_event(room, event_id)
    assert isinstance(response, RoomGetEventResponse), response
    return dict(response.event.source)


async def nio_send(client: AsyncClient, room: str, event_type: str, content: dict[str, Any]) -> str:
    response = await client.room_send(room, event_type, content)
    assert isinstance(response, RoomSendResponse), response
    return response.event_id


def history(api: Api, user: User, room: str, limit: int = 100) -> dict[str, dict[str, Any]]:
    page = get(api, user, room_path(room, f"/messages?limit={limit}"))
    return {m["id"]: m for m in page["results"]}


# --- REST -> Matrix -----------------------------------------------------------------------------


def test_rest_kinds_as_matrix_clients_read_them(
    mapi: Api, server: SynapseServer, users: dict[str, User], room: str
) -> None:
    alice, bob = users["alice"], users["bob"]
    path = room_path(room, "/messages")
    notice = post(mapi, alice, path, message_type="notice", content="Ward 7 is full")
    emote = post(mapi, alice, path, message_type="emote", content="waves")
    html = post(
        mapi,
        alice,
        path,
        format="html",
        formatted_content='<b onclick="x()">Stat</b> <script>alert(1)</script><a href="javascript:x">ECG</a>',
    )
    location = post(
        mapi, alice, path, message_type="location", geo_uri="geo:51.5072,-0.1276;u=35", content="A&E entrance"
    )
    voice = post(
        mapi,
        alice,
        path,
        message_type="audio",
        media_url="mxc://medchat.test/voice_2",
        mime_type="audio/ogg",
        duration=4200,
        voice=True,
        waveform=[0, 512, 1024, 300],
    )

    assert (notice["message_type"], notice["content"], notice["event_type"]) == (
        "notice",
        "Ward 7 is full",
        "m.room.message",
    )
    assert (emote["message_type"], emote["content"]) == ("emote", "waves")
    assert (html["message_type"], html["format"], html["content"]) == ("text", "html", "Stat ECG")
    assert html["formatted_content"] == "<b>Stat</b> <a>ECG</a>"
    assert (location["message_type"], location["geo_uri"], location["content"]) == (
        "location",
        "geo:51.5072,-0.1276;u=35",
        "A&E entrance",
    )
    assert (voice["message_type"], voice["is_voice"], voice["duration"], voice["waveform"]) == (
        "audio",
        True,
        4200,
        [0, 512, 1024, 300],
    )
    assert notice["format"] is None and notice["thread_id"] is None and notice["poll"] is None

    async def read() -> None:
        nio = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            raw = {
                m["id"]: (await nio_event(nio, room, m["id"]))["content"]
                for m in (notice, emote, html, location, voice)
            }
        finally:
            await nio.close()
        assert raw[notice["id"]] == {"msgtype": "m.notice", "body": "Ward 7 is full"}
        assert raw[emote["id"]] == {"msgtype": "m.emote", "body": "waves"}
        assert raw[html["id"]] == {
            "msgtype": "m.text",
            "body": "Stat ECG",
            "format": "org.matrix.custom.html",
            "formatted_body": "<b>Stat</b> <a>ECG</a>",
        }
        assert raw[location["id"]] == {
            "msgtype": "m.location",
            "body": "A&E entrance",
            "geo_uri": "geo:51.5072,-0.1276;u=35",
            "org.matrix.msc3488.location": {"uri": "geo:51.5072,-0.1276;u=35", "description": "A&E entrance"},
            "org.matrix.msc3488.asset": {"type": "m.pin"},
            "org.matrix.msc1767.text": "A&E entrance",
        }
        sound = raw[voice["id"]]
        assert sound["msgtype"] == "m.audio" and sound["org.matrix.msc3245.voice"] == {}
        assert sound["org.matrix.msc1767.audio"] == {"duration": 4200, "waveform": [0, 512, 1024, 300]}
        assert sound["info"] == {"mimetype": "audio/ogg", "duration": 4200}

    run(read())


def test_send_validation_refuses_before_sending(
    mapi: Api, server: SynapseServer, users: dict[str, User], room: str
) -> None:
    alice, path = users["alice"], room_path(room, "/messages")
    before = get(mapi, alice, room_path(room, "/messages?limit=1"))["results"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"format": "html"}, "M_MISSING_PARAM"),
        ({"content": "x", "format": "markdown", "formatted_content": "*x*"}, "M_INVALID_PARAM"),
        (
            {"formatted_content": "<b>x</b>", "format": "html", "message_type": "image", "media_url": "mxc://a/b"},
            "M_INVALID_PARAM",
        ),
        ({"format": "html", "formatted_content": "<script>only</script>"}, "M_INVALID_PARAM"),
        ({"message_type": "location"}, "M_MISSING_PARAM"),
        ({"message_type": "location", "geo_uri": "geo:91,0"}, "M_INVALID_PARAM"),
        ({"message_type": "location", "geo_uri": "http://maps"}, "M_INVALID_PARAM"),
        ({"content": "x", "geo_uri": "geo:1,2"}, "M_INVALID_PARAM"),
        ({"message_type": "image", "media_url": "mxc://medchat.test/a", "voice": True}, "M_INVALID_PARAM"),
        (
            {"message_type": "audio", "media_url": "mxc://medchat.test/a", "waveform": [2000]},
            "M_INVALID_PARAM",
        ),
        ({"message_type": "sticker", "media_url": "mxc://medchat.test/a"}, "M_INVALID_PARAM"),
        ({"message_type": "emote"}, "M_MISSING_PARAM"),
        ({"content": "x", "thread_id": "$nope"}, "M_NOT_FOUND"),
    ]
    for body, errcode in cases:
        expect_error(
            mapi.call("POST", path, token=alice["access_token"], json=body),
            400 if errcode != "M_NOT_FOUND" else 404,
            errcode,
        )
    polls = room_path(room, "/polls")
    for body in (
        {"question": "Q?", "answers": ["only one"]},
        {"question": "Q?", "answers": ["a", "a"]},
        {"question": "Q?", "answers": ["a", "b"], "max_selections": 3},
        {"question": " ", "answers": ["a", "b"]},
        {"question": "Q?", "answers": ["a", "b"], "kind": "open"},
    ):
        expect_error(mapi.call("POST", polls, token=alice["access_token"], json=body), 400, "M_INVALID_PARAM")
    assert get(mapi, alice, room_path(room, "/messages?limit=1"))["results"] == before


# --- Matrix -> REST (history, GET, WebSocket) ------------------------------------------------------

_ELEMENT_POLL = {
    "org.matrix.msc3381.poll.start": {
        "question": {"org.matrix.msc1767.text": "Lunch?"},
        "kind": "org.matrix.msc3381.poll.disclosed",
        "max_selections": 1,
        "answers": [{"id": "p", "org.matrix.msc1767.text": "Pizza"}, {"id": "s", "org.matrix.msc1767.text": "Salad"}],
    },
    "org.matrix.msc1767.text": "Lunch?\n1. Pizza\n2. Salad",
}
_STABLE_POLL = {
    "m.poll": {
        "question": {"m.text": [{"body": "Handover at?"}]},
        "kind": "m.poll.undisclosed",
        "max_selections": 2,
        "answers": [
            {"m.id": "7", "m.text": [{"body": "7 am"}]},
            {"m.id": "8", "m.text": [{"body": "8 am"}]},
            {"m.id": "9", "m.text": [{"body": "9 am"}]},
        ],
    },
    "m.text": [{"body": "Handover at?\n1. 7 am\n2. 8 am\n3. 9 am"}],
}


def test_matrix_kinds_read_through_rest_and_the_socket(
    mapi: Api, server: SynapseServer, users: dict[str, User], room: str
) -> None:
    alice, bob = users["alice"], users["bob"]
    mxc = "mxc://medchat.test/sticker1"
    sent: dict[str, str] = {}

    async def scenario() -> list[dict[str, Any]]:
        nio = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            async with aiohttp.ClientSession() as session:
                sock = Socket(await connect(session, server.base_url, alice["access_token"]))
                await sock.hello()
                plain: dict[str, dict[str, Any]] = {
                    "notice": {"msgtype": "m.notice", "body": "Bot: lab results ready"},
                    "emote": {"msgtype": "m.emote", "body": "is on call"},
                    "html": {
                        "msgtype": "m.text",
                        "body": "K+ 6.1",
                        "format": "org.matrix.custom.html",
                        "formatted_body": '<p>K<sup>+</sup> <font data-mx-color="#ff0000" style="x">6.1</font></p><img src="https://evil/x.png"><iframe>hidden</iframe>',
                    },
                    "location": {
                        "msgtype": "m.location",
                        "body": "Location: helipad",
                        "geo_uri": "geo:48.85,2.35",
                        "org.matrix.msc3488.location": {"uri": "geo:48.85,2.35", "description": "Helipad"},
                        "org.matrix.msc3488.asset": {"type": "m.pin"},
                    },
                    "voice": {
                        "msgtype": "m.audio",
                        "body": "Voice message",
                        "url": "mxc://medchat.test/voice9",
                        "info": {"mimetype": "audio/ogg", "duration": 2500, "size": 999},
                        "org.matrix.msc1767.audio": {"duration": 2500, "waveform": [1, 2, 3]},
                        "org.matrix.msc3245.voice": {},
                    },
                }
                for name, content in plain.items():
                    sent[name] = await nio_send(nio, room, "m.room.message", content)
                sticker = {"body": "thumbs up", "url": mxc, "info": {"mimetype": "image/png", "w": 64, "h": 64}}
                sent["sticker"] = await nio_send(nio, room, "m.sticker", sticker)
                sent["thread"] = await nio_send(
                    nio,
                    room,
                    "m.room.message",
                    {
                        "msgtype": "m.text",
                        "body": "In the thread",
                        "m.relates_to": {
                            "rel_type": "m.thread",
                            "event_id": sent["notice"],
                            "is_falling_back": True,
                            "m.in_reply_to": {"event_id": sent["notice"]},
                        },
                    },
                )
                sent["poll"] = await nio_send(nio, room, "org.matrix.msc3381.poll.start", _ELEMENT_POLL)
                sent["stable_poll"] = await nio_send(nio, room, "m.poll.start", _STABLE_POLL)
                sent["custom"] = await nio_send(nio, room, "com.example.vitals", {"body": "HR 80", "hr": 80})
                sent["encrypted"] = await nio_send(
                    nio,
                    room,
                    "m.room.encrypted",
                    {
                        "algorithm": "m.megolm.v1.aes-sha2",
                        "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
                        "sender_key": "SGFsbG8gV2VsdA",
                        "session_id": "c2Vzc2lvbg",
                        "device_id": "NIODEVICE",
                    },
                )
                await nio_send(
                    nio,
                    room,
                    "m.reaction",
                    {"m.relates_to": {"rel_type": "m.annotation", "event_id": sent["poll"], "key": "👍"}},
                )
                frames = []
                for _ in sent:
                    frames.append(
                        await sock.until(
                            lambda e: e["type"] == "message.new" and e["message"]["sender"]["id"] == bob["user_id"]
                        )
                    )
                return frames
        finally:
            await nio.close()

    frames = {f["message"]["id"]: f["message"] for f in run(scenario())}
    assert set(frames) == set(sent.values())
    listed = history(mapi, alice, room)
    for name, event_id in sent.items():
        one = get(mapi, alice, msg_path(room, event_id))
        assert listed[event_id] == one, name
        live = ("status", "reactions")  # read afresh by GET: the socket's model is as sent
        assert {k: v for k, v in frames[event_id].items() if k not in live} == {
            k: v for k, v in one.items() if k not in live
        }, name
    m = {name: listed[event_id] for name, event_id in sent.items()}
    assert (m["notice"]["message_type"], m["notice"]["content"]) == ("notice", "Bot: lab results ready")
    assert (m["emote"]["message_type"], m["emote"]["content"]) == ("emote", "is on call")
    assert (m["html"]["message_type"], m["html"]["format"], m["html"]["content"]) == ("text", "html", "K+ 6.1")
    assert m["html"]["formatted_content"] == '<p>K<sup>+</sup> <font data-mx-color="#ff0000">6.1</font></p><img>'
    assert (m["location"]["message_type"], m["location"]["geo_uri"], m["location"]["content"]) == (
        "location",
        "geo:48.85,2.35",
        "Helipad",
    )
    voice = m["voice"]
    assert (voice["message_type"], voice["is_voice"], voice["duration"], voice["waveform"], voice["file_size"]) == (
        "audio",
        True,
        2500,
        [1, 2, 3],
        999,
    )
    sticker = m["sticker"]
    assert (sticker["message_type"], sticker["media_url"], sticker["content"], sticker["event_type"]) == (
        "sticker",
        mxc,
        "thumbs up",
        "m.sticker",
    )
    assert (m["thread"]["thread_id"], m["thread"]["reply_to"], m["thread"]["content"]) == (
        sent["notice"],
        None,
        "In the thread",
    )
    poll = m["poll"]
    assert (poll["message_type"], poll["content"], poll["event_type"]) == (
        "poll",
        "Lunch?",
        "org.matrix.msc3381.poll.start",
    )
    assert poll["poll"]["answers"] == [
        {"id": "p", "text": "Pizza", "votes": 0},
        {"id": "s", "text": "Salad", "votes": 0},
    ]
    assert poll["reactions"] == [{"key": "👍", "count": 1, "reacted_by_me": False}]
    stable = m["stable_poll"]["poll"]
    assert (stable["question"], stable["kind"], stable["max_selections"], stable["total_votes"]) == (
        "Handover at?",
        "undisclosed",
        2,
        None,
    )
    assert [a["text"] for a in stable["answers"]] == ["7 am", "8 am", "9 am"]
    assert (m["custom"]["message_type"], m["custom"]["event_type"], m["custom"]["content"]) == (
        "unsupported",
        "com.example.vitals",
        "HR 80",
    )
    assert (m["encrypted"]["message_type"], m["encrypted"]["content"], m["encrypted"]["event_type"]) == (
        "encrypted",
        None,
        "m.room.encrypted",
    )
    # What acts on another event is not a message of its own: no reaction, vote or state here.
    assert all(msg["event_type"] not in ("m.reaction", "m.room.member") for msg in listed.values())


# --- polls --------------------------------------------------------------------------------------


def test_polls_votes_changed_votes_and_end(mapi: Api, server: SynapseServer, users: dict[str, User], room: str) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    created = post(
        mapi, alice, room_path(room, "/polls"), question="Discharge today?", answers=["Yes", "No", "Tomorrow"]
    )
    poll_id, answers = created["id"], created["poll"]["answers"]
    yes, no, later = (a["id"] for a in answers)
    assert created["message_type"] == "poll" and created["content"] == "Discharge today?"
    assert created["poll"]["ended"] is False and [a["votes"] for a in answers] == [0, 0, 0]
    votes = room_path(room, f"/polls/{quote(poll_id)}/votes")

    async def matrix_side() -> None:
        nio = await nio_login(server.base_url, carol["user_id"], carol["password"])
        try:
            raw = await nio_event(nio, room, poll_id)
            assert raw["type"] == "org.matrix.msc3381.poll.start"  # what Element reads
            start = raw["content"]["org.matrix.msc3381.poll.start"]
            assert start["question"]["org.matrix.msc1767.text"] == "Discharge today?"
            assert start["kind"] == "org.matrix.msc3381.poll.disclosed" and start["max_selections"] == 1
            assert [a["org.matrix.msc1767.text"] for a in start["answers"]] == ["Yes", "No", "Tomorrow"]
            assert raw["content"]["org.matrix.msc1767.text"] == "Discharge today?\n1. Yes\n2. No\n3. Tomorrow"
            # Carol votes from Element's side, in the unstable form.
            await nio_send(
                nio,
                room,
                "org.matrix.msc3381.poll.response",
                {
                    "m.relates_to": {"rel_type": "m.reference", "event_id": poll_id},
                    "org.matrix.msc3381.poll.response": {"answers": [no]},
                },
            )
        finally:
            await nio.close()

    run(matrix_side())
    after_bob = post(mapi, bob, votes, 200, answers=[yes])
    assert [a["votes"] for a in after_bob["poll"]["answers"]] == [1, 1, 0] and after_bob["poll"]["my_selections"] == [
        yes
    ]
    changed = post(mapi, bob, votes, 200, answers=[later])  # a changed vote replaces the first
    assert [a["votes"] for a in changed["poll"]["answers"]] == [0, 1, 1] and changed["poll"]["total_votes"] == 2
    post(mapi, alice, votes, 200, answers=[later])
    response = raw_type(mapi, bob, room, changed)
    assert response == "org.matrix.msc3381.poll.response"
    expect_error(
        mapi.call("POST", votes, token=bob["access_token"], json={"answers": ["nope"]}), 400, "M_INVALID_PARAM"
    )
    expect_error(
        mapi.call("POST", votes, token=bob["access_token"], json={"answers": [yes, no]}), 400, "M_INVALID_PARAM"
    )
    end = room_path(room, f"/polls/{quote(poll_id)}/end")
    expect_error(mapi.call("POST", end, token=bob["access_token"]), 403, "M_FORBIDDEN")
    ended = post(mapi, alice, end, 200)
    assert ended["poll"]["ended"] is True and ended["poll"]["ended_at"]
    assert [a["votes"] for a in ended["poll"]["answers"]] == [0, 1, 2]
    expect_error(mapi.call("POST", votes, token=carol["access_token"], json={"answers": [yes]}), 400, "M_INVALID_PARAM")

    async def late_vote() -> None:  # a vote after the end does not count, whoever sends it
        nio = await nio_login(server.base_url, carol["user_id"], carol["password"])
        try:
            await nio_send(
                nio,
                room,
                "org.matrix.msc3381.poll.response",
                {
                    "m.relates_to": {"rel_type": "m.reference", "event_id": poll_id},
                    "org.matrix.msc3381.poll.response": {"answers": [yes]},
                },
            )
        finally:
            await nio.close()

    run(late_vote())
    final = get(mapi, carol, msg_path(room, poll_id))
    assert [a["votes"] for a in final["poll"]["answers"]] == [0, 1, 2] and final["poll"]["my_selections"] == [no]
    again = post(mapi, alice, end, 200)["poll"]  # ending twice changes nothing
    assert {**again, "my_selections": None} == {**final["poll"], "my_selections": None}
    expect_error(
        mapi.call("PUT", msg_path(room, poll_id), token=alice["access_token"], json={"content": "x"}),
        400,
        "M_INVALID_PARAM",
    )


def raw_type(api: Api, user: User, room: str, poll_model: dict[str, Any]) -> str:
    """The type of the user's latest vote on the poll, as Synapse's relations API lists it."""
    path = f"/_matrix/client/v1/rooms/{quote(room)}/relations/{quote(poll_model['id'])}/m.reference"
    chunk = get(api, user, path)["chunk"]
    return str(next(e["type"] for e in chunk if e["sender"] == user["user_id"]))


def test_undisclosed_stable_poll_hides_votes_until_it_ends(
    mapi: Api, server: SynapseServer, users: dict[str, User], room: str
) -> None:
    alice, bob = users["alice"], users["bob"]
    poll_id = send_raw(mapi, alice, room, "m.poll.start", _STABLE_POLL)
    votes = room_path(room, f"/polls/{quote(poll_id)}/votes")

    async def on_the_socket() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        async with aiohttp.ClientSession() as session:
            sock = Socket(await connect(session, server.base_url, alice["access_token"]))
            await sock.hello()
            voted = post(mapi, bob, votes, 200, answers=["7", "9"])
            await sock.until(lambda e: e["type"] == "poll.voted" and e["message_id"] == poll_id)
            ended = post(mapi, alice, room_path(room, f"/polls/{quote(poll_id)}/end"), 200)
            await sock.until(lambda e: e["type"] == "poll.ended" and e["message_id"] == poll_id)
            return voted, ended, sock.events

    voted, ended, frames = run(on_the_socket())
    assert not [f for f in frames if f["type"] == "message.new"]  # a vote or an end is not a message
    assert voted["poll"]["my_selections"] == ["7", "9"] and voted["poll"]["total_votes"] is None
    assert all(a["votes"] is None for a in voted["poll"]["answers"])
    assert raw_type(mapi, bob, room, voted) == "m.poll.response"  # the form of its poll
    assert [a["votes"] for a in ended["poll"]["answers"]] == [1, 0, 1] and ended["poll"]["total_votes"] == 1
    assert raw_type(mapi, alice, room, ended) == "m.poll.end"
    expect_error(
        mapi.call(
            "POST",
            room_path(room, f"/polls/{quote(poll_id)}x/votes"),
            token=bob["access_token"],
            json={"answers": ["7"]},
        ),
        404,
        "M_NOT_FOUND",
    )


def send_raw(api: Api, user: User, room: str, event_type: str, content: dict[str, Any]) -> str:
    response = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/send/{event_type}/t{time.monotonic_ns()}",
        token=user["access_token"],
        json=content,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["event_id"])


# --- threads ------------------------------------------------------------------------------------


def test_threads_send_and_list(mapi: Api, server: SynapseServer, users: dict[str, User], room: str) -> None:
    alice, bob = users["alice"], users["bob"]
    path = room_path(room, "/messages")
    root = post(mapi, alice, path, content="Bed 12 plan")
    first = post(mapi, bob, path, content="Start IV fluids", thread_id=root["id"])
    second = post(mapi, alice, path, content="Agreed", thread_id=root["id"], reply_to=first["id"])
    assert (first["thread_id"], first["reply_to"], second["thread_id"], second["reply_to"]) == (
        root["id"],
        None,
        root["id"],
        first["id"],
    )

    async def matrix_side() -> tuple[dict[str, Any], dict[str, Any]]:
        nio = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            return (await nio_event(nio, room, first["id"]))["content"], (await nio_event(nio, room, second["id"]))[
                "content"
            ]
        finally:
            await nio.close()

    one, two = run(matrix_side())
    assert one["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": root["id"],
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root["id"]},
    }
    assert two["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": root["id"],
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": first["id"]},
    }
    third = post(mapi, bob, path, content="Done", thread_id=root["id"])
    assert run(matrix_third(server, bob, room, third["id"]))["m.in_reply_to"] == {"event_id": second["id"]}
    listed = get(mapi, alice, room_path(room, f"/threads/{quote(root['id'])}/messages"))
    assert listed["root"]["id"] == root["id"] and listed["next_cursor"] is None
    assert [m["content"] for m in listed["results"]] == ["Done", "Agreed", "Start IV fluids"]
    page = get(mapi, alice, room_path(room, f"/threads/{quote(root['id'])}/messages?limit=2"))
    assert len(page["results"]) == 2 and page["next_cursor"]
    expect_error(
        mapi.call("POST", path, token=alice["access_token"], json={"content": "x", "thread_id": first["id"]}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(
        mapi.call("GET", room_path(room, "/threads/%24nope/messages"), token=alice["access_token"]), 404, "M_NOT_FOUND"
    )
    outsider = mapi.register()
    expect_error(
        mapi.call("GET", room_path(room, f"/threads/{quote(root['id'])}/messages"), token=outsider["access_token"]),
        404,
        "M_NOT_FOUND",
    )


async def matrix_third(server: SynapseServer, user: User, room: str, event_id: str) -> dict[str, Any]:
    nio = await nio_login(server.base_url, user["user_id"], user["password"])
    try:
        return dict((await nio_event(nio, room, event_id))["content"]["m.relates_to"])
    finally:
        await nio.close()


# --- item 5: never an empty page ----------------------------------------------------------------


@pytest.fixture(scope="module")
def edited_room(mapi: Api, users: dict[str, User]) -> Iterator[tuple[str, list[str]]]:
    """60 messages, then 200 edits (the newest 200 events are all edits)."""
    alice = users["alice"]
    room = shared_room(mapi, alice)
    ids = [send_text(mapi, alice["access_token"], room, f"obs {i}") for i in range(60)]
    for n in range(200):
        send_raw(
            mapi,
            alice,
            room,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": f"* obs {n}",
                "m.new_content": {"msgtype": "m.text", "body": f"obs 59 v{n}"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": ids[-1]},
            },
        )
    yield room, ids


def test_a_page_is_never_empty_while_older_messages_exist(
    mapi: Api, users: dict[str, User], edited_room: tuple[str, list[str]]
) -> None:
    alice = users["alice"]
    room, ids = edited_room
    first = get(mapi, alice, room_path(room, "/messages?limit=50"))
    assert [m["id"] for m in first["results"]] == ids[::-1][:50] and first["next_cursor"]
    assert first["results"][0]["content"].startswith("obs 59 v") and first["results"][0]["is_edited"]
    rest = get(mapi, alice, room_path(room, f"/messages?limit=50&cursor={quote(first['next_cursor'])}"))
    assert [m["id"] for m in rest["results"]] == ids[::-1][50:] and rest["next_cursor"] is None
    one = get(mapi, alice, room_path(room, "/messages?limit=1"))
    assert [m["id"] for m in one["results"]] == [ids[-1]] and one["next_cursor"]
