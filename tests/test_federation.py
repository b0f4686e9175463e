"""Federation between institutions: two real homeservers with the module on loopback
(`hospital-a.test` on 127.0.0.1, `hospital-b.test` on 127.0.0.2) over TLS from a throw-away CA.

SQLite only (the servers are started here, not from the session fixture): skipped on the
PostgreSQL pass of CI, to keep its time down; the federation code paths do not depend on the
database engine.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from nio import AsyncClient, RoomMessagesResponse, SyncResponse
from signedjson.key import generate_signing_key
from synapse.module_api.errors import ConfigError

from federation import FederatedServer, ThrowawayCA, peer, signed_get, start_all
from harness import (
    Api,
    SynapseServer,
    execute_db,
    licence_verified as verified_user,
    nio_login,
    postgres_admin_url,
    run,
)
from medchat.federation.allowlist import check_agreement, load_signed_allow_list, public_key_of, sign_allow_list
from test_messages import msg_path, send
from test_rooms import create_room, room_path

pytestmark = pytest.mark.skipif(
    postgres_admin_url() is not None,
    reason="federation tests run on the SQLite pass only (three extra homeservers; engine-independent)",
)


@dataclass
class Institution:
    server: FederatedServer
    api: Api

    @property
    def name(self) -> str:
        return self.server.server_name


@dataclass
class Federation:
    a: Institution
    b: Institution
    c: Institution  # clinic-c.test: allows everyone; B lists it, A does not


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    a, b, c = (
        peer("hospital-a.test", "127.0.0.1"),
        peer("hospital-b.test", "127.0.0.2"),
        peer("clinic-c.test", "127.0.0.3"),
    )
    network = [a, b, c]
    ca = ThrowawayCA(root / "ca")
    # A's allow-list is only a signed file (as a federation authority would publish it): every
    # test between A and B shows that the file admits B, to Synapse and to the module's rules.
    authority = generate_signing_key("authority")
    allow_file = root / "allow-list.json"
    allow_file.write_text(json.dumps(sign_allow_list([b.server_name], authority)))
    signed_list = {"federation_allow_list_file": {"path": str(allow_file), "public_key": public_key_of(authority)}}
    servers = [
        FederatedServer(root / "a", a, network, ca, allow=None, module_overrides=signed_list),
        FederatedServer(root / "b", b, network, ca, allow=[a.server_name, c.server_name]),
        FederatedServer(root / "c", c, network, ca, allow=None),
    ]
    try:
        start_all(servers)
        yield Federation(*(Institution(s, Api(s.base_url)) for s in servers))
    finally:
        for s in servers:
            s.stop()


def eventually(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Polls until `check()` returns something truthy (federation is asynchronous); a
    `requests.Response` counts as truthy only with a 2xx status."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def history(side: Institution, user: dict[str, Any], room_id: str) -> dict[str, dict[str, Any]]:
    response = side.api.call("GET", room_path(room_id, "/messages"), token=user["access_token"])
    return {m["id"]: m for m in response.json()["results"]} if response.status_code == 200 else {}


def join_direct(side: Institution, user: dict[str, Any], room_id: str) -> None:
    """Accepts a direct-chat invite through the API (a join over federation)."""
    response = side.api.call(
        "POST", room_path(room_id, "/participants"), token=user["access_token"], json={"user_id": user["user_id"]}
    )
    assert response.status_code in (200, 201), response.text


def test_direct_chat_across_servers(federation: Federation) -> None:
    a, b = federation.a, federation.b
    alice, bob = a.api.register(), b.api.register()

    added = a.api.call("POST", "/api/chat/contacts", token=alice["access_token"], json={"user_id": bob["user_id"]})
    assert added.status_code == 201, added.text
    assert added.json()["contact"]["id"] == bob["user_id"]

    room = create_room(a.api, alice["access_token"], type="direct", participants=[bob["user_id"]])["id"]
    invited = eventually(lambda: b.api.call("GET", room_path(room), token=bob["access_token"]), what="the invite on B")
    assert invited.status_code == 200, invited.text
    assert {k: invited.json()[k] for k in ("type", "membership", "created_by")} == {
        "type": "direct",
        "membership": "invite",
        "created_by": alice["user_id"],
    }
    join_direct(b, bob, room)
    joined = b.api.call("GET", room_path(room), token=bob["access_token"]).json()
    assert joined["type"] == "direct" and {p["id"] for p in joined["participants"]} == {
        alice["user_id"],
        bob["user_id"],
    }
    # The same DM is found again from B's side, not a second room made.
    again = b.api.call(
        "POST",
        "/api/chat/rooms",
        token=bob["access_token"],
        json={"type": "direct", "participants": [alice["user_id"]]},
    )
    assert again.status_code == 200 and again.json()["id"] == room, again.text

    hello = send(a.api, alice, room, content="Referral for bed 7")
    answer = eventually(
        lambda: hello["id"] in history(b, bob, room) and history(b, bob, room)[hello["id"]], what="A's message on B"
    )
    assert answer["content"] == "Referral for bed 7" and answer["sender"]["id"] == alice["user_id"]

    reply = b.api.call(
        "POST",
        msg_path(room, hello["id"], "/reply"),
        token=bob["access_token"],
        json={"content": "Accepted, send the notes"},
    )
    assert reply.status_code == 201, reply.text
    reply_id = reply.json()["id"]
    on_a = eventually(lambda: history(a, alice, room).get(reply_id), what="B's reply on A")
    assert on_a["reply_to"] == hello["id"] and on_a["content"] == "Accepted, send the notes"

    edited = a.api.call(
        "PUT", msg_path(room, hello["id"]), token=alice["access_token"], json={"content": "Referral for bed 8"}
    )
    assert edited.status_code == 200, edited.text
    eventually(lambda: history(b, bob, room)[hello["id"]]["content"] == "Referral for bed 8", what="the edit on B")
    assert history(b, bob, room)[hello["id"]]["is_edited"] is True

    reacted = b.api.call(
        "POST", msg_path(room, hello["id"], "/reactions"), token=bob["access_token"], json={"key": "👍"}
    )
    assert reacted.status_code in (200, 201), reacted.text
    eventually(
        lambda: history(a, alice, room)[hello["id"]]["reactions"]
        == [{"key": "👍", "count": 1, "reacted_by_me": False}],
        what="the reaction on A",
    )

    doomed = send(b.api, bob, room, content="wrong patient, ignore")
    eventually(lambda: doomed["id"] in history(a, alice, room), what="B's message on A")
    assert b.api.call("DELETE", msg_path(room, doomed["id"]), token=bob["access_token"]).status_code in (200, 204)
    eventually(lambda: history(a, alice, room)[doomed["id"]]["is_deleted"], what="the deletion on A")
    assert history(a, alice, room)[doomed["id"]]["content"] is None

    # Read receipts travel too: B marks A's message read; A's sender sees it as read.
    read = b.api.call("POST", f"/api/chat/messages/{quote(hello['id'])}/mark-read", token=bob["access_token"])
    assert read.status_code in (200, 204), read.text

    def status_on_a() -> bool:
        body = a.api.call("GET", f"/api/chat/messages/{quote(hello['id'])}/status", token=alice["access_token"]).json()
        return body.get("status") == "read" and {"user_id": bob["user_id"], "status": "read"} in body["participants"]

    eventually(status_on_a, what="B's read receipt on A")
    # ... and A reads B's reply.
    assert a.api.call(
        "POST", f"/api/chat/messages/{quote(reply_id)}/mark-read", token=alice["access_token"]
    ).status_code in (200, 204)

    def status_on_b() -> bool:
        return (
            b.api.call("GET", f"/api/chat/messages/{quote(reply_id)}/status", token=bob["access_token"])
            .json()
            .get("status")
            == "read"
        )

    eventually(status_on_b, what="A's read receipt on B")

    # Each side's Matrix client sees the same conversation.
    for side, user in ((a, alice), (b, bob)):
        events = run(nio_timeline(side.server.base_url, user, room))
        by_id = {e["event_id"]: e for e in events}
        assert by_id[hello["id"]]["content"]["body"] == "Referral for bed 7"
        assert by_id[reply_id]["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": hello["id"]}}
        assert by_id[doomed["id"]]["content"] == {}  # redacted
        edits = [e for e in events if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"]
        assert [e["content"]["m.new_content"]["body"] for e in edits] == ["Referral for bed 8"]
        reactions = [e for e in events if e["type"] == "m.reaction"]
        assert [(e["sender"], e["content"]["m.relates_to"]["key"]) for e in reactions] == [(bob["user_id"], "👍")]


async def nio_timeline(base_url: str, user: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    client: AsyncClient = await nio_login(base_url, user["user_id"], user["password"])
    try:
        assert isinstance(await client.sync(timeout=0), SyncResponse)
        assert room_id in client.rooms
        response = await client.room_messages(room_id, start="", limit=50)
        assert isinstance(response, RoomMessagesResponse), response
        return [e.source for e in reversed(response.chunk)]
    finally:
        await client.close()


# --- the allow-list --------------------------------------------------------------------------


def test_a_server_outside_the_allow_list_cannot_invite_join_or_dm(federation: Federation) -> None:
    a, c = federation.a, federation.c
    alice, mallory = a.api.register(), c.api.register()

    # From C: a DM (the API) and a plain invite (Matrix) to A's user are refused by A's Synapse,
    # naming the module's rule (its refusal of C, passed on by C).
    dm = c.api.call(
        "POST",
        "/api/chat/rooms",
        token=mallory["access_token"],
        json={"type": "direct", "participants": [alice["user_id"]]},
    )
    assert dm.status_code == 403 and dm.json()["org.medchat.rule"] == "federation_allow_list", dm.text
    room = c.api.call("POST", "/_matrix/client/v3/createRoom", token=mallory["access_token"], json={}).json()["room_id"]
    invite = c.api.call(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(room)}/invite",
        token=mallory["access_token"],
        json={"user_id": alice["user_id"]},
    )
    assert invite.status_code == 403 and invite.json()["org.medchat.rule"] == "federation_allow_list", invite.text
    assert a.api.call("GET", "/api/chat/rooms", token=alice["access_token"]).json()["results"] == []

    # From C: joining A's public room is refused.
    public = a.api.call(
        "POST", "/_matrix/client/v3/createRoom", token=alice["access_token"], json={"preset": "public_chat"}
    ).json()["room_id"]
    join = c.api.call(
        "POST",
        f"/_matrix/client/v3/join/{quote(public)}?server_name={quote(a.name)}",
        token=mallory["access_token"],
        json={},
    )
    assert join.status_code == 403 and join.json()["org.medchat.rule"] == "federation_allow_list", join.text
    members = a.api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(public)}/joined_members", token=alice["access_token"]
    ).json()["joined"]
    assert set(members) == {alice["user_id"]}

    # From A: nothing reaches C. The API refuses a DM, a group or an added participant by the
    # module's rule, naming C, before asking C anything (Synapse would answer a generic
    # M_FORBIDDEN); a Matrix invite is refused by the same rule.
    for body in (
        {"type": "direct", "participants": [mallory["user_id"]]},
        {"type": "group", "name": "Ward round", "participants": [mallory["user_id"]]},
    ):
        refused = a.api.call("POST", "/api/chat/rooms", token=alice["access_token"], json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json() == {
            "errcode": "ORG_MEDCHAT_CONTACT_REFUSED",
            "error": f"Refused by rule 'federation_allow_list': {c.name} is not a server this one federates with.",
            "org.medchat.rule": "federation_allow_list",
        }
    group = create_room(a.api, alice["access_token"], type="group", name="Handover")["id"]
    added = a.api.call(
        "POST", room_path(group, "/participants"), token=alice["access_token"], json={"user_id": mallory["user_id"]}
    )
    assert (
        added.status_code == 403
        and added.json()["errcode"] == "ORG_MEDCHAT_CONTACT_REFUSED"
        and c.name in added.json()["error"]
    ), added.text
    assert {r["id"] for r in a.api.call("GET", "/api/chat/rooms", token=alice["access_token"]).json()["results"]} == {
        public,
        group,
    }  # nothing half-made
    added = a.api.call("POST", "/api/chat/contacts", token=alice["access_token"], json={"user_id": mallory["user_id"]})
    assert added.status_code == 403 and c.name in added.json()["error"], added.text
    own = a.api.call("POST", "/_matrix/client/v3/createRoom", token=alice["access_token"], json={}).json()["room_id"]
    native = a.api.call(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(own)}/invite",
        token=alice["access_token"],
        json={"user_id": mallory["user_id"]},
    )
    assert native.status_code == 403 and native.json()["org.medchat.rule"] == "federation_allow_list", native.text


def test_module_refuses_to_start_when_synapse_allows_other_servers(tmp_path: Any) -> None:
    hs = SynapseServer(
        tmp_path,
        overrides={"federation_domain_whitelist": ["partner.example", "other.example"]},
        module_overrides={"federation_allow_list": ["partner.example"]},
    )
    code, output = hs.run_until_exit()
    assert code != 0
    assert (
        "federation_allow_list" in output and "federation_domain_whitelist" in output and "other.example" in output
    ), output[-2000:]


def test_allow_lists_agree_when_they_name_the_same_servers() -> None:
    check_agreement(None, None, "home.example")
    check_agreement(["partner.example"], ["partner.example", "home.example"], "home.example")
    for module_list, synapse_list in (
        (None, ["partner.example"]),
        (["partner.example"], None),
        ([], ["partner.example"]),
    ):
        with pytest.raises(ConfigError, match="federation_domain_whitelist"):
            check_agreement(module_list, synapse_list, "home.example")


def test_signed_allow_list_file_is_checked_against_its_key(tmp_path: Any) -> None:
    key, other = generate_signing_key("authority"), generate_signing_key("impostor")
    path = tmp_path / "allow-list.json"
    signed = sign_allow_list(["partner.example", "clinic.example"], key)
    path.write_text(json.dumps(signed))
    assert load_signed_allow_list(str(path), public_key_of(key)) == ("clinic.example", "partner.example")
    tampered = {**signed, "servers": [*signed["servers"], "intruder.example"]}
    unsigned = {"servers": signed["servers"]}
    for content, public_key in (
        (tampered, public_key_of(key)),
        (signed, public_key_of(other)),
        (unsigned, public_key_of(key)),
    ):
        path.write_text(json.dumps(content))
        with pytest.raises(ConfigError, match=re.escape(public_key)):
            load_signed_allow_list(str(path), public_key)


def test_a_tampered_allow_list_file_stops_start_up_naming_the_key(tmp_path: Any) -> None:
    key = generate_signing_key("authority")
    path = tmp_path / "allow-list.json"
    path.write_text(
        json.dumps({**sign_allow_list(["partner.example"], key), "servers": ["partner.example", "intruder.example"]})
    )
    hs = SynapseServer(
        tmp_path / "hs",
        module_overrides={"federation_allow_list_file": {"path": str(path), "public_key": public_key_of(key)}},
    )
    code, output = hs.run_until_exit()
    assert code != 0
    assert (
        "federation_allow_list_file" in output and public_key_of(key) in output and "is not signed by the key" in output
    ), output[-2000:]


# --- verification that travels and the federated directory -----------------------------------


def licence_verified(side: Institution, **fields: Any) -> dict[str, Any]:
    """A new user of `side`, licence-verified by that server's admin."""
    return verified_user(side.api, side.server, **fields)


def federated_search(side: Institution, user: dict[str, Any], q: str, **params: str) -> dict[str, Any]:
    response = side.api.call(
        "GET", "/api/chat/users/search", token=user["access_token"], params={"q": q, "scope": "federation", **params}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_attestation_is_published_signed_and_checked(federation: Federation) -> None:
    a, b = federation.a, federation.b
    doctor = licence_verified(b, username="dr_attested", full_name="Dr. Attested Osei")
    alice = licence_verified(a)  # only licence-verified practitioners host case rooms
    profile = a.api.call(
        "GET", f"/_matrix/client/v3/profile/{quote(doctor['user_id'])}", token=alice["access_token"]
    ).json()
    attestation = profile["org.medchat.attestation"]
    assert {k: attestation[k] for k in ("user_id", "level", "registration_body")} == {
        "user_id": doctor["user_id"],
        "level": "license_verified",
        "registration_body": "General Medical Council",
    }
    assert attestation["expires_ts"] > attestation["issued_ts"] and set(attestation["signatures"]) == {b.name}

    # A case room on A admits B's verified doctor, not B's unverified user.
    case = a.api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=alice["access_token"],
        json={"creation_content": {"type": "org.medchat.case"}},
    ).json()["room_id"]
    invite = a.api.call(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(case)}/invite",
        token=alice["access_token"],
        json={"user_id": doctor["user_id"]},
    )
    assert invite.status_code == 200, invite.text
    nobody = b.api.register()
    refused = a.api.call(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(case)}/invite",
        token=alice["access_token"],
        json={"user_id": nobody["user_id"]},
    )
    assert refused.status_code == 403 and refused.json()["org.medchat.rule"] == "case_room_verified_only", refused.text
    join_direct(
        b,
        doctor,
        eventually(
            lambda: case if b.api.call("GET", room_path(case), token=doctor["access_token"]).ok else None,
            what="the case-room invite on B",
        ),
    )


def participants_on(side: Institution, user: dict[str, Any], room_id: str) -> dict[str, str]:
    response = side.api.call("GET", room_path(room_id, "/participants"), token=user["access_token"])
    return {p["id"]: p["membership"] for p in response.json()["results"]} if response.ok else {}


def test_case_room_admits_a_verified_remote_practitioner_and_refuses_a_forged_attestation(
    federation: Federation,
) -> None:
    a, b = federation.a, federation.b
    alice, doctor, nobody = licence_verified(a), licence_verified(b), b.api.register()

    # Through the API: a case room with B's unverified user is refused up front, nothing made.
    refused = a.api.call(
        "POST",
        "/api/chat/rooms",
        token=alice["access_token"],
        json={"type": "case", "name": "Case 12", "participants": [nobody["user_id"]]},
    )
    assert refused.status_code == 403 and refused.json()["errcode"] == "ORG_MEDCHAT_CASE_ROOM_REFUSED", refused.text
    assert nobody["user_id"] in refused.json()["error"]
    assert a.api.call("GET", "/api/chat/rooms", token=alice["access_token"]).json()["results"] == []

    # With B's licence-verified doctor: made, invited over federation, joined from B's API.
    case = create_room(a.api, alice["access_token"], type="case", name="Case 12", participants=[doctor["user_id"]])[
        "id"
    ]
    eventually(
        lambda: b.api.call("GET", room_path(case), token=doctor["access_token"]), what="the case-room invite on B"
    )
    join_direct(b, doctor, case)
    eventually(lambda: participants_on(a, alice, case).get(doctor["user_id"]) == "join", what="the doctor's join on A")
    note = send(b.api, doctor, case, content="Echo shows reduced ejection fraction")
    eventually(lambda: note["id"] in history(a, alice, case), what="the doctor's message on A")

    # A compromised B serves a forged attestation for its unverified user (written straight into
    # its database: B's module withdraws one a client writes). A checks it against B's key.
    forger = b.api.register()
    genuine = a.api.call(
        "GET", f"/_matrix/client/v3/profile/{quote(doctor['user_id'])}", token=alice["access_token"]
    ).json()["org.medchat.attestation"]
    forged = resign({**genuine, "user_id": forger["user_id"]}, generate_signing_key("forged"), {})
    execute_db(
        b.server,
        "UPDATE profiles SET fields = ? WHERE full_user_id = ?",
        (json.dumps({"org.medchat.attestation": forged}), forger["user_id"]),
    )
    served = a.api.call(
        "GET", f"/_matrix/client/v3/profile/{quote(forger['user_id'])}", token=alice["access_token"]
    ).json()
    assert served.get("org.medchat.attestation") == forged, served
    invite = a.api.call(
        "POST", room_path(case, "/participants"), token=alice["access_token"], json={"user_id": forger["user_id"]}
    )
    assert (
        invite.status_code == 403
        and invite.json()["errcode"] == "ORG_MEDCHAT_CASE_ROOM_REFUSED"
        and forger["user_id"] in invite.json()["error"]
    ), invite.text
    # ... nor may they join one by themselves. A case room is never public; where its join rule lets
    # others in without an invite (restricted to a lobby the forger is in), A's event rules refuse
    # the remote join.
    public = a.api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=alice["access_token"],
        json={"preset": "public_chat", "creation_content": {"type": "org.medchat.case"}},
    )
    assert public.status_code == 403 and public.json()["org.medchat.rule"] == "case_room_join_rule", public.text
    lobby = a.api.call(
        "POST", "/_matrix/client/v3/createRoom", token=alice["access_token"], json={"preset": "public_chat"}
    ).json()["room_id"]
    entered = b.api.call(
        "POST",
        f"/_matrix/client/v3/join/{quote(lobby)}?server_name={quote(a.name)}",
        token=forger["access_token"],
        json={},
    )
    assert entered.status_code == 200, entered.text
    restricted = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": lobby}]}
    gated = a.api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=alice["access_token"],
        json={
            "creation_content": {"type": "org.medchat.case"},
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": restricted}],
        },
    )
    assert gated.status_code == 200, gated.text
    gated_room = gated.json()["room_id"]
    join = b.api.call(
        "POST",
        f"/_matrix/client/v3/join/{quote(gated_room)}?server_name={quote(a.name)}",
        token=forger["access_token"],
        json={},
    )
    assert join.status_code == 403, join.text
    assert join.json()["org.medchat.rule"] == "case_room_verified_only", join.text
    members = a.api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(gated_room)}/joined_members", token=alice["access_token"]
    ).json()["joined"]
    assert set(members) == {alice["user_id"]}
    assert set(participants_on(a, alice, case)) == {alice["user_id"], doctor["user_id"]}


# --- the membership rules across servers -------------------------------------------------------


def member_invite(user_id: str) -> dict[str, Any]:
    return {"type": "m.room.member", "state_key": user_id, "content": {"membership": "invite", "is_direct": True}}


def raw(side: Institution, user: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    return side.api.call(method, f"/_matrix/client/v3{path}", token=user["access_token"], json=body or {})


def test_the_policy_and_initial_state_invites_across_servers(federation: Federation) -> None:
    """A's student and B's unverified resident are a pair A's policy keeps apart (A knows no role
    for B's users): refused from A's side by A, from B's side by A when the invite arrives. An
    invite of another server's user in `initial_state` is a 400 (Synapse could not deliver it)."""
    a, b = federation.a, federation.b
    student, resident = a.api.register(role="MBBS Student"), b.api.register(role="Resident")

    for body in (
        {"invite": [resident["user_id"]], "is_direct": True, "preset": "trusted_private_chat"},
        {"invite": [resident["user_id"]]},
    ):
        refused = raw(a, student, "POST", "/createRoom", body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["org.medchat.rule"] == "students-no-unverified-clinicians", refused.text
    remote_state = raw(a, student, "POST", "/createRoom", {"initial_state": [member_invite(resident["user_id"])]})
    assert remote_state.status_code == 400 and remote_state.json()["errcode"] == "M_INVALID_PARAM", remote_state.text
    assert "`invite`" in remote_state.json()["error"]

    # From B: B's own rules let it go (B knows no role for A's student); A refuses the invite.
    room = raw(b, resident, "POST", "/createRoom", {}).json()["room_id"]
    invite = raw(b, resident, "POST", f"/rooms/{quote(room)}/invite", {"user_id": student["user_id"]})
    assert invite.status_code == 403, invite.text
    assert invite.json()["org.medchat.rule"] == "students-no-unverified-clinicians", invite.text  # A's answer
    dm = raw(b, resident, "POST", "/createRoom", {"invite": [student["user_id"]], "is_direct": True})
    assert dm.status_code == 403 and dm.json()["errcode"] == "ORG_MEDCHAT_CONTACT_REFUSED", dm.text
    from_b_state = raw(b, resident, "POST", "/createRoom", {"initial_state": [member_invite(student["user_id"])]})
    assert from_b_state.status_code == 400, from_b_state.text
    time.sleep(1)
    assert a.api.call("GET", "/api/chat/rooms", token=student["access_token"]).json()["results"] == []

    # A pair the policy allows: the same invite through `invite` reaches B's user, who accepts it.
    peer, colleague = a.api.register(role="MBBS Student"), b.api.register(role="Resident")
    licensed = licence_verified(b)
    made = raw(a, peer, "POST", "/createRoom", {"invite": [licensed["user_id"]], "is_direct": True})
    assert made.status_code == 200, made.text
    eventually(
        lambda: b.api.call("GET", room_path(made.json()["room_id"]), token=licensed["access_token"]),
        what="the invite on B",
    )
    join_direct(b, licensed, made.json()["room_id"])
    group = raw(a, a.api.register(role="Resident"), "POST", "/createRoom", {"invite": [colleague["user_id"]]})
    assert group.status_code == 200, group.text


def test_remote_knocks_on_a_case_room_need_a_licence(federation: Federation) -> None:
    a, b = federation.a, federation.b
    alice, doctor, nobody = licence_verified(a), licence_verified(b), b.api.register()
    knock_rule = {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
    case = raw(
        a,
        alice,
        "POST",
        "/createRoom",
        {"creation_content": {"type": "org.medchat.case"}, "initial_state": [knock_rule]},
    )
    assert case.status_code == 200, case.text
    case_id = case.json()["room_id"]

    refused = raw(b, nobody, "POST", f"/knock/{quote(case_id)}?server_name={quote(a.name)}")
    assert refused.status_code == 403, refused.text
    assert refused.json()["errcode"] == "ORG_MEDCHAT_CASE_ROOM_REFUSED" and nobody["user_id"] in refused.text
    knocked = raw(b, doctor, "POST", f"/knock/{quote(case_id)}?server_name={quote(a.name)}")
    assert knocked.status_code == 200, knocked.text
    eventually(lambda: participants_on(a, alice, case_id).get(doctor["user_id"]) == "knock", what="the knock on A")
    assert nobody["user_id"] not in participants_on(a, alice, case_id)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda att, key: {**att, "level": "license_verified", "registration_body": "Forged Council"},
            id="altered-field",
        ),
        pytest.param(lambda att, key: resign(att, key, {}), id="signed-with-another-key"),
        pytest.param(lambda att, key: resign(att, key, {"expires_ts": att["issued_ts"] + 1}), id="expired"),
        pytest.param(lambda att, key: {k: v for k, v in att.items() if k != "signatures"}, id="unsigned"),
    ],
)
def test_forged_or_expired_attestations_read_as_unverified(
    federation: Federation, tamper: Callable[[dict[str, Any], Any], dict[str, Any]]
) -> None:
    """B's server is honest; a tampered copy of its attestation (as a malicious peer or a
    man-in-the-middle would serve it) is checked by A's module code against B's real key."""
    a, b = federation.a, federation.b
    doctor = licence_verified(b)
    alice = a.api.register()
    genuine = a.api.call(
        "GET", f"/_matrix/client/v3/profile/{quote(doctor['user_id'])}", token=alice["access_token"]
    ).json()["org.medchat.attestation"]
    forged = tamper(genuine, generate_signing_key("forged"))
    checked = a.api.call(
        "POST", "/api/chat/verification/attestations/check", token=alice["access_token"], json={"attestation": forged}
    )
    assert checked.status_code == 200, checked.text
    assert checked.json() == {"user_id": doctor["user_id"], "verification_level": "unverified", "is_verified": False}
    assert (
        a.api.call(
            "POST",
            "/api/chat/verification/attestations/check",
            token=alice["access_token"],
            json={"attestation": genuine},
        ).json()["is_verified"]
        is True
    )


def resign(attestation: dict[str, Any], key: Any, changes: dict[str, Any]) -> dict[str, Any]:
    from signedjson.sign import sign_json

    server = attestation["user_id"].split(":", 1)[1]
    body = {k: v for k, v in attestation.items() if k != "signatures"}
    signed = sign_json({**body, **changes}, server, key)
    if not changes:  # same content, other key: keep the key id the server really uses
        real_key_id = next(iter(attestation["signatures"][server]))
        signed["signatures"] = {server: {real_key_id: next(iter(signed["signatures"][server].values()))}}
    return signed


def test_federated_search_merges_peers_with_their_home_server(federation: Federation) -> None:
    a, b, c = federation.a, federation.b, federation.c
    a.api.register(username="zanele_a", full_name="Dr. Zanele Mokoena")
    verified = licence_verified(b, username="zanele_b", full_name="Dr. Zanele Dube")
    b.api.register(username="zanele_unverified", full_name="Dr. Zanele Unverified")
    alice = a.api.register()

    found = federated_search(a, alice, "Zanele")
    by_id = {r["id"]: r for r in found["results"]}
    assert found["peers"] == [{"server": b.name, "status": "ok"}]
    assert {r["home_server"] for r in found["results"]} == {a.name, b.name}
    assert (
        by_id[verified["user_id"]]["is_verified"] is True
        and by_id[verified["user_id"]]["verification_level"] == "license_verified"
    )
    assert by_id[f"@zanele_unverified:{b.name}"]["is_verified"] is False
    assert all(r["user"]["email"] is None for r in found["results"] if r["home_server"] == b.name)
    assert by_id[f"@zanele_a:{a.name}"]["user"]["full_name"] == "Dr. Zanele Mokoena"
    # The local scope is unchanged: only this server's users.
    local = a.api.call("GET", "/api/chat/users/search", token=alice["access_token"], params={"q": "Zanele"}).json()
    assert {r["id"] for r in local["results"]} == {f"@zanele_a:{a.name}"}

    # The peer endpoint answers only signed requests from allowed servers.
    unsigned = b.api.call("GET", "/_medchat/federation/v1/users/search", params={"q": "Zanele"})
    assert unsigned.status_code == 401 and unsigned.json()["errcode"].startswith("M_"), unsigned.text
    # C's allow-list is open, so it has no peers to ask: it searches itself only.
    mallory = c.api.register()
    from_c = federated_search(c, mallory, "Zanele")
    assert from_c["peers"] == [] and all(r["home_server"] == c.name for r in from_c["results"])

    for bad in ({"scope": "galaxy"}, {"cursor": "abc"}):
        response = a.api.call(
            "GET",
            "/api/chat/users/search",
            token=alice["access_token"],
            params={"q": "Zanele", "scope": "federation", **bad},
        )
        assert response.status_code == 400 and response.json()["errcode"] == "M_INVALID_PARAM", response.text


def test_the_peer_directory_is_rate_limited_per_origin(federation: Federation) -> None:
    """B lists A and C: A searching B's directory past the burst (`federation_directory.
    burst_count`, 20 by default) gets 429 while C is still answered; A is answered again soon."""
    a, b, c = federation.a, federation.b, federation.c
    path = "/_medchat/federation/v1/users/search?q="
    served, limited = 0, None
    while served < 100 and limited is None:
        response = signed_get(a.server, b.server, f"{path}burst{served}")
        if response.status_code == 429:
            limited = response
        else:
            assert response.status_code == 200 and "results" in response.json(), response.text
            served += 1
    assert limited is not None and served >= 20, f"{served} served, no 429"
    assert limited.json()["errcode"] == "M_LIMIT_EXCEEDED" and limited.json()["retry_after_ms"] > 0, limited.text
    other = signed_get(c.server, b.server, f"{path}burst")
    assert other.status_code == 200 and "results" in other.json(), other.text
    eventually(
        lambda: signed_get(a.server, b.server, f"{path}again").status_code == 200, timeout=10, what="A answered again"
    )
    # A lists only B (its signed file): C's signed request is refused by A's Synapse.
    assert signed_get(c.server, a.server, f"{path}burst").status_code == 403


# --- remote profiles and the module's own fields ------------------------------------------------


def user_path(user_id: str) -> str:
    return f"/api/chat/users/{quote(user_id)}"


def test_a_remote_users_profile_comes_from_their_server_with_its_checked_attestation(federation: Federation) -> None:
    a, b, c = federation.a, federation.b, federation.c
    doctor = licence_verified(
        b, full_name="Dr. Remote Adeyemi", role="Consultant", institution="Hospital B", specialization="Neurology"
    )
    plain = b.api.register(full_name="Dr. Plain Okafor", role="Resident", institution="Hospital B")
    alice = a.api.register()

    found = a.api.call("GET", user_path(doctor["user_id"]), token=alice["access_token"])
    assert found.status_code == 200, found.text
    body = found.json()
    assert {
        k: body[k] for k in ("id", "role", "institution", "specialization", "is_verified", "verification_level")
    } == {
        "id": doctor["user_id"],
        "role": "Consultant",
        "institution": "Hospital B",
        "specialization": "Neurology",
        "is_verified": True,
        "verification_level": "license_verified",
    }
    assert body["user"] == {
        "id": doctor["user_id"],
        "username": doctor["username"],
        "email": None,
        "full_name": "Dr. Remote Adeyemi",
    }
    assert body["home_server"] == b.name
    unverified = a.api.call("GET", user_path(plain["user_id"]), token=alice["access_token"]).json()
    assert unverified["is_verified"] is False and unverified["verification_level"] == "unverified", unverified
    assert unverified["institution"] == "Hospital B" and unverified["user"]["full_name"] == "Dr. Plain Okafor"

    # A remote contact's card shows the same, from the same (cached) lookup.
    added = a.api.call("POST", "/api/chat/contacts", token=alice["access_token"], json={"user_id": doctor["user_id"]})
    assert added.status_code == 201, added.text
    card = added.json()["contact"]
    assert {k: card[k] for k in ("full_name", "role", "institution", "specialization")} == {
        "full_name": "Dr. Remote Adeyemi",
        "role": "Consultant",
        "institution": "Hospital B",
        "specialization": "Neurology",
    }
    listed = a.api.call("GET", "/api/chat/contacts", token=alice["access_token"]).json()
    assert [c["contact"]["institution"] for c in listed["results"]] == ["Hospital B"], listed

    # No such user on B; a server outside A's allow-list (nothing is asked of it).
    missing = a.api.call("GET", user_path(f"@nobody_here:{b.name}"), token=alice["access_token"])
    assert missing.status_code == 404 and missing.json()["errcode"] == "M_NOT_FOUND", missing.text
    assert b.name in missing.json()["error"]
    outsider = c.api.register()
    refused = a.api.call("GET", user_path(outsider["user_id"]), token=alice["access_token"])
    assert refused.status_code == 403, refused.text
    assert refused.json() == {
        "errcode": "ORG_MEDCHAT_CONTACT_REFUSED",
        "error": f"Refused by rule 'federation_allow_list': {c.name} is not a server this one federates with.",
        "org.medchat.rule": "federation_allow_list",
    }
    # ... and the other way: C asks A, whose Synapse refuses C, naming the rule.
    from_c = c.api.call("GET", user_path(alice["user_id"]), token=outsider["access_token"])
    assert from_c.status_code == 403 and from_c.json()["org.medchat.rule"] == "federation_allow_list", from_c.text
    # A server that does not answer (C allows every server): 502 with the module's errcode.
    # (B's host name, which the servers resolve to B's address, on a port nothing listens on.)
    with socket.socket() as closed:
        closed.bind((b.server.peer.address, 0))
        nowhere = f"{b.server.peer.host}:{closed.getsockname()[1]}"
    unreachable = c.api.call("GET", user_path(f"@ghost:{nowhere}"), token=outsider["access_token"])
    assert unreachable.status_code == 502, unreachable.text
    assert unreachable.json()["errcode"] == "ORG_MEDCHAT_SERVER_UNREACHABLE" and nowhere in unreachable.json()["error"]
    # One that accepts the connection and never answers (frozen): 504 after the lookup's 5 s.
    with socket.socket() as silent:
        silent.bind((b.server.peer.address, 0))
        silent.listen(4)
        frozen = f"{b.server.peer.host}:{silent.getsockname()[1]}"
        started = time.monotonic()
        stuck = c.api.call("GET", user_path(f"@ghost:{frozen}"), token=outsider["access_token"])
        assert time.monotonic() - started < 15
    assert stuck.status_code == 504 and stuck.json()["errcode"] == "ORG_MEDCHAT_SERVER_UNREACHABLE", stuck.text


@pytest.mark.parametrize("field", ["org.medchat.attestation", "org.medchat.profile", "org.medchat.anything"])
def test_clients_cannot_write_the_modules_profile_fields(federation: Federation, field: str) -> None:
    a, b = federation.a, federation.b
    doctor = licence_verified(b)
    path = f"/_matrix/client/v3/profile/{quote(doctor['user_id'])}"
    before = b.api.call("GET", path, token=doctor["access_token"]).json()
    forged = {"user_id": doctor["user_id"], "level": "license_verified", "role": "Chief of Medicine"}
    for method, body in (("PUT", {field: forged}), ("DELETE", None)):
        refused = b.api.call(method, f"{path}/{field}", token=doctor["access_token"], json=body)
        assert refused.status_code == 403, (method, refused.text)
        assert refused.json()["errcode"] == "ORG_MEDCHAT_MODULE_FIELD" and field in refused.json()["error"]
    assert b.api.call("GET", path, token=doctor["access_token"]).json() == before
    # What A reads over federation is still what B's module wrote.
    alice = a.api.register()
    served = a.api.call("GET", path, token=alice["access_token"]).json()
    assert served.get("org.medchat.profile") == before.get("org.medchat.profile")
    assert served.get("org.medchat.attestation") == before.get("org.medchat.attestation")
    # Other custom fields stay the user's.
    own = b.api.call(
        "PUT", f"{path}/com.example.pronouns", token=doctor["access_token"], json={"com.example.pronouns": "she"}
    )
    assert own.status_code == 200, own.text


def test_allow_list_refusals_name_the_rule_on_both_servers(federation: Federation) -> None:
    """C (open) lets its user reach for A's; A (which does not list C) refuses in Synapse's
    federation layer, with the module's errcode and rule, and C passes that on to its client."""
    a, c = federation.a, federation.c
    alice, mallory = a.api.register(), c.api.register()
    expected = {
        "errcode": "ORG_MEDCHAT_CONTACT_REFUSED",
        "error": f"Refused by rule 'federation_allow_list': {c.name} is not a server this one federates with.",
        "org.medchat.rule": "federation_allow_list",
    }
    dm = c.api.call(
        "POST",
        "/api/chat/rooms",
        token=mallory["access_token"],
        json={"type": "direct", "participants": [alice["user_id"]]},
    )
    assert dm.status_code == 403 and dm.json() == expected, dm.text
    room = raw(c, mallory, "POST", "/createRoom", {}).json()["room_id"]
    invite = raw(c, mallory, "POST", f"/rooms/{quote(room)}/invite", {"user_id": alice["user_id"]})
    assert invite.status_code == 403 and invite.json() == expected, invite.text
    native_dm = raw(c, mallory, "POST", "/createRoom", {"invite": [alice["user_id"]], "is_direct": True})
    assert native_dm.status_code == 403 and native_dm.json() == expected, native_dm.text
    # C's request signed and sent straight to A: A's own answer.
    straight = signed_get(c.server, a.server, "/_medchat/federation/v1/users/search?q=x")
    assert straight.status_code == 403 and straight.json() == expected, straight.text
    # A's side, for its own user: the module's rules refuse before anything reaches C.
    outbound = raw(a, alice, "POST", "/createRoom", {"invite": [mallory["user_id"]], "is_direct": True})
    assert outbound.status_code == 403, outbound.text
    assert outbound.json() == expected


def test_a_peer_going_down_is_reported_and_does_not_fail_the_search(federation: Federation) -> None:
    """Last in this module: it stops server B."""
    a, b = federation.a, federation.b
    a.api.register(username="yusuf_a", full_name="Dr. Yusuf Haddad")
    alice = a.api.register()
    assert federated_search(a, alice, "Yusuf")["peers"] == [{"server": b.name, "status": "ok"}]
    b.server.stop()
    started = time.monotonic()
    found = federated_search(a, alice, "Yusuf Haddad")
    assert time.monotonic() - started < 10
    assert found["peers"] == [{"server": b.name, "status": "error"}]
    assert [r["id"] for r in found["results"]] == [f"@yusuf_a:{a.name}"]

    # A peer that accepts the connection but never answers is cut off after `timeout_seconds`.
    with socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind((b.server.peer.address, b.server.peer.federation_port))
        silent.listen(16)
        started = time.monotonic()
        found = federated_search(a, alice, "Dr. Yusuf")
        assert 1.5 < time.monotonic() - started < 8
    assert found["peers"] == [{"server": b.name, "status": "timeout"}]
    assert [r["id"] for r in found["results"]] == [f"@yusuf_a:{a.name}"]
