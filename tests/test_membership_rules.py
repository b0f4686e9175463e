"""One membership decision on every route: a block, the server policy and the case-room rules hold
for the API and for every way a Matrix client can make an `m.room.member` event — `/invite`,
createRoom's `invite` and `initial_state`, `PUT /state/m.room.member`, `/join`, `/knock` — and for
join-rule changes in case rooms. A pair the policy keeps apart gets the same answer whichever side
starts, so no room is left that one of them can never join; two new students can talk."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import requests
from nio import RoomCreateError, RoomInviteError, RoomKnockError

from harness import Api, expect_error, licence_verified, nio_login, present, register_admin, run, send_text
from medchat.rules.decisions import (
    MembershipChange,
    Party,
    PolicyRule,
    Selector,
    case_room_join_rule_refusal,
    case_room_refusal,
    creation_changes,
    creation_join_rule,
    initial_state_refusal,
    policy_refusal,
)

CS = "/_matrix/client/v3"
REFUSED, CASE_REFUSED = "ORG_MEDCHAT_CONTACT_REFUSED", "ORG_MEDCHAT_CASE_ROOM_REFUSED"
POLICY = "students-no-unverified-clinicians"
CASE_RULE, JOIN_RULE = "case_room_verified_only", "case_room_join_rule"
CASE = {"type": "org.medchat.case"}


def raw_create(api: Api, user: dict[str, Any], **body: Any) -> requests.Response:
    return api.call("POST", f"{CS}/createRoom", token=user["access_token"], json=body)


def new_room(api: Api, user: dict[str, Any], **body: Any) -> str:
    response = raw_create(api, user, **body)
    assert response.status_code == 200, response.text
    return response.json()["room_id"]


def member_state(user_id: str, **content: Any) -> dict[str, Any]:
    return {"type": "m.room.member", "state_key": user_id, "content": {"membership": "invite", **content}}


def put_state(api: Api, user: dict[str, Any], room: str, kind: str, key: str, content: Any) -> requests.Response:
    return api.call(
        "PUT", f"{CS}/rooms/{quote(room)}/state/{kind}/{quote(key)}", token=user["access_token"], json=content
    )


def join(api: Api, user: dict[str, Any], room: str) -> requests.Response:
    return api.call("POST", f"{CS}/join/{quote(room)}", token=user["access_token"], json={})


def knock(api: Api, user: dict[str, Any], room: str) -> requests.Response:
    return api.call("POST", f"{CS}/knock/{quote(room)}", token=user["access_token"], json={})


def joined_rooms(api: Api, user: dict[str, Any]) -> set[str]:
    response = api.call("GET", f"{CS}/joined_rooms", token=user["access_token"])
    assert response.status_code == 200, response.text
    return set(response.json()["joined_rooms"])


def api_rooms(api: Api, user: dict[str, Any]) -> dict[str, str]:
    """The user's rooms and invitations as the app lists them (room id -> membership)."""
    response = api.call("GET", "/api/chat/rooms?limit=100", token=user["access_token"])
    assert response.status_code == 200, response.text
    return {r["id"]: r.get("membership", "join") for r in response.json()["results"]}


def membership_of(api: Api, viewer: dict[str, Any], room: str, user_id: str) -> str | None:
    response = api.call(
        "GET", f"{CS}/rooms/{quote(room)}/state/m.room.member/{quote(user_id)}", token=viewer["access_token"]
    )
    return response.json()["membership"] if response.status_code == 200 else None


def invite_routes(api: Api, actor: dict[str, Any], target: dict[str, Any]) -> dict[str, requests.Response]:
    """Every way the API or a Matrix client lets `actor` bring `target` into a room."""
    t, token = target["user_id"], actor["access_token"]
    own = new_room(api, actor)
    rest = "/api/chat/rooms"
    return {
        "api direct": api.call("POST", rest, token=token, json={"type": "direct", "participants": [t]}),
        "api group": api.call("POST", rest, token=token, json={"type": "group", "name": "G", "participants": [t]}),
        "api add participant": api.call(
            "POST", f"{rest}/{quote(own, safe='')}/participants", token=token, json={"user_id": t}
        ),
        "api contact request": api.call("POST", "/api/chat/contacts", token=token, json={"user_id": t}),
        "createRoom invite, is_direct": raw_create(
            api, actor, invite=[t], is_direct=True, preset="trusted_private_chat"
        ),
        "createRoom invite": raw_create(api, actor, invite=[t]),
        "createRoom initial_state, is_direct": raw_create(
            api, actor, is_direct=True, initial_state=[member_state(t, is_direct=True)]
        ),
        "createRoom initial_state": raw_create(api, actor, initial_state=[member_state(t)]),
        "/invite": api.call("POST", f"{CS}/rooms/{quote(own)}/invite", token=token, json={"user_id": t}),
        "PUT state": put_state(api, actor, own, "m.room.member", t, {"membership": "invite"}),
        "PUT state, is_direct": put_state(
            api, actor, own, "m.room.member", t, {"membership": "invite", "is_direct": True}
        ),
    }


def assert_all_refused(
    api: Api, actor: dict[str, Any], target: dict[str, Any], rule: str, errcode: str = REFUSED
) -> dict[str, str]:
    """Every route refused with the rule; nothing reached the target and no room was left behind.
    Returns each route's error message."""
    before, targets_rooms = joined_rooms(api, actor), api_rooms(api, target)
    answers = invite_routes(api, actor, target)
    messages = {}
    for route, response in answers.items():
        assert response.status_code == 403, f"{route}: {response.status_code} {response.text}"
        body = response.json()
        assert body["errcode"] == errcode and body["org.medchat.rule"] == rule, f"{route}: {body}"
        messages[route] = body["error"]
    # Only the helper's own room is new: every refused createRoom was refused before it existed.
    assert len(joined_rooms(api, actor) - before) == 1
    assert api_rooms(api, target) == targets_rooms, "an invitation reached the target"
    return messages


# --- a block holds on every route -------------------------------------------------------------


def test_a_block_holds_on_every_route_including_initial_state(api: Api, server: Any) -> None:
    blocker, pest = api.register(), api.register()
    blocked = api.call("POST", f"/api/chat/contacts/{quote(pest['user_id'])}/block", token=blocker["access_token"])
    assert blocked.status_code == 200, blocked.text
    messages = assert_all_refused(api, pest, blocker, "recipient_settings")
    assert not any("block" in m.lower() or "ignor" in m.lower() for m in messages.values())

    async def element() -> tuple[Any, Any]:
        client = await nio_login(server.base_url, pest["user_id"], pest["password"])
        try:
            state = [member_state(blocker["user_id"])]
            via_state = await client.room_create(initial_state=state)
            via_direct = await client.room_create(is_direct=True, initial_state=state)
            return via_state, via_direct
        finally:
            await client.close()

    for response in run(element()):
        assert isinstance(response, RoomCreateError) and response.status_code == REFUSED, response

    # Unblocked, the same initial_state invite is delivered and can be accepted.
    unblocked = api.call("DELETE", f"/api/chat/contacts/{quote(pest['user_id'])}/block", token=blocker["access_token"])
    assert unblocked.status_code == 200, unblocked.text
    room = new_room(api, pest, initial_state=[member_state(blocker["user_id"])])
    assert api_rooms(api, blocker) == {room: "invite"}
    assert join(api, blocker, room).status_code == 200


# --- the server policy: a pair, whichever side starts -----------------------------------------


def test_the_policy_refuses_the_pair_on_every_route_from_both_sides(api: Api, server: Any) -> None:
    student, resident = api.register(role="MBBS Student"), api.register(role="Resident")
    from_student = assert_all_refused(api, student, resident, POLICY)
    from_resident = assert_all_refused(api, resident, student, POLICY)
    # Either side is told the same thing, naming the rule: no DM one of them could never join.
    assert set(from_student.values()) == set(from_resident.values())
    assert len(set(from_student.values())) == 1
    assert "students and unverified accounts that are not students" in from_student["/invite"]

    # A Matrix client (matrix-nio, as Element would) gets MedChat's errcode too.
    async def element() -> tuple[Any, Any]:
        client = await nio_login(server.base_url, resident["user_id"], resident["password"])
        try:
            dm = await client.room_create(is_direct=True, invite=[student["user_id"]])
            room = new_room(api, resident)
            return dm, await client.room_invite(room, student["user_id"])
        finally:
            await client.close()

    dm, invite = run(element())
    assert isinstance(dm, RoomCreateError) and dm.status_code == REFUSED, dm
    assert isinstance(invite, RoomInviteError) and invite.status_code == REFUSED, invite

    # Once the resident's licence is verified, the two may talk, from either side.
    verified = licence_verified(api, server, role="Resident")
    room = new_room(api, verified, invite=[student["user_id"]], is_direct=True, preset="trusted_private_chat")
    assert join(api, student, room).status_code == 200
    # A Matrix client's join reaches m.direct through the module's on_new_event callback, just after
    # the join returns (as Element's own m.direct update would): wait for it, at most 10 s.
    direct = f"/_matrix/client/v3/user/{quote(student['user_id'])}/account_data/m.direct"
    deadline = time.monotonic() + 10
    while room not in api.call("GET", direct, token=student["access_token"]).json().get(verified["user_id"], []):
        assert time.monotonic() < deadline, "the join did not reach the student's m.direct"
        time.sleep(0.2)
    back = api.call(
        "POST",
        "/api/chat/rooms",
        token=student["access_token"],
        json={"type": "direct", "participants": [verified["user_id"]]},
    )
    # The student's join put the DM in their m.direct (issue 17): it is the DM the two have.
    assert back.status_code == 200 and back.json()["id"] == room and back.json()["type"] == "direct", back.text
    assert join(api, verified, back.json()["id"]).status_code == 200


def test_accounts_without_a_profile_count_as_not_students(api: Api, server: Any) -> None:
    """A plain Matrix account (made with Synapse's admin API, no MedChat profile) has no role."""
    student = api.register(role="MBBS Student")
    plain = server.register_matrix_user(f"plain_{student['username']}")
    plain["password"] = "correct horse battery staple"
    refused = raw_create(api, plain, initial_state=[member_state(student["user_id"], is_direct=True)])
    expect_error(refused, 403, REFUSED)
    assert refused.json()["org.medchat.rule"] == POLICY
    expect_error(raw_create(api, student, invite=[plain["user_id"]]), 403, REFUSED)


def test_two_new_students_can_chat_however_they_start(api: Api) -> None:
    """As two people who have just registered would: every new account starts unverified."""
    amira, ben = api.register(role="MBBS Student"), api.register(role="MBBS Student")
    assert {amira["user"]["verification_level"], ben["user"]["verification_level"]} == {"unverified"}

    # Through the API: Amira opens the DM, Ben opens "his" and so accepts it; both write.
    opened = api.call(
        "POST",
        "/api/chat/rooms",
        token=amira["access_token"],
        json={"type": "direct", "participants": [ben["user_id"]]},
    )
    assert opened.status_code == 201, opened.text
    dm = opened.json()["id"]
    accepted = api.call(
        "POST",
        "/api/chat/rooms",
        token=ben["access_token"],
        json={"type": "direct", "participants": [amira["user_id"]]},
    )
    assert accepted.status_code == 200 and accepted.json()["id"] == dm, accepted.text
    for user in (amira, ben):
        sent = api.call(
            "POST", f"/api/chat/rooms/{quote(dm, safe='')}/messages", token=user["access_token"], json={"content": "hi"}
        )
        assert sent.status_code == 201, sent.text

    # With the Matrix API: createRoom with an invite, or with an invite in initial_state, then /join.
    for body in (
        {"invite": [amira["user_id"]], "is_direct": True, "preset": "trusted_private_chat"},
        {"initial_state": [member_state(amira["user_id"], is_direct=True)], "is_direct": True},
        {"invite": [amira["user_id"]]},
    ):
        room = new_room(api, ben, **body)
        assert join(api, amira, room).status_code == 200
        send_text(api, amira["access_token"], room, "hello from Amira")
        send_text(api, ben["access_token"], room, "hello from Ben")
    # A contact request between them is fine too.
    request = api.call("POST", "/api/chat/contacts", token=amira["access_token"], json={"user_id": ben["user_id"]})
    assert request.status_code in (201, 202), request.text


def test_no_dead_rooms_an_admin_invite_can_be_accepted(api: Api, server: Any) -> None:
    """Admins are exempt from the contact rules (as from Synapse's spam checks); an invitation an
    admin sent is therefore one the invitee can accept, not a room they could never join."""
    admin = register_admin(server)  # no MedChat profile: no role, unverified
    student = api.register(role="MBBS Student")
    room = new_room(api, admin, initial_state=[member_state(student["user_id"], is_direct=True)], is_direct=True)
    assert join(api, student, room).status_code == 200
    other = new_room(api, admin, invite=[student["user_id"]], is_direct=True, preset="trusted_private_chat")
    assert join(api, student, other).status_code == 200
    # The student cannot turn the tables: the rule holds for their own invites to an admin's account.
    expect_error(raw_create(api, student, invite=[admin["user_id"]]), 403, REFUSED)


def test_a_knock_no_one_could_answer_is_refused(api: Api, server: Any) -> None:
    """A knock asks the members who may invite for an invitation; if the rules would refuse each
    of them that invite (or each ignores the knocker), the knock is refused up front."""
    knock_rule = [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]
    blocker, pest = api.register(), api.register()
    door = new_room(api, blocker, initial_state=knock_rule)
    assert api.call("POST", f"/api/chat/contacts/{quote(pest['user_id'])}/block", token=blocker["access_token"]).ok
    refused = expect_error(knock(api, pest, door), 403, REFUSED)
    assert refused["org.medchat.rule"] == "recipient_settings" and "block" not in refused["error"].lower()
    assert membership_of(api, blocker, door, pest["user_id"]) is None

    student, resident = api.register(role="MBBS Student"), api.register(role="Resident")
    ward = new_room(api, resident, initial_state=knock_rule)
    refused = expect_error(knock(api, student, ward), 403, REFUSED)
    assert refused["org.medchat.rule"] == POLICY
    # With a verified member who may invite, someone can let the student in: the knock stands.
    verified = licence_verified(api, server)
    assert api.call(
        "POST",
        f"{CS}/rooms/{quote(ward)}/invite",
        token=resident["access_token"],
        json={"user_id": verified["user_id"]},
    ).ok
    assert join(api, verified, ward).status_code == 200
    assert knock(api, student, ward).status_code == 200
    approved = api.call(
        "POST", f"{CS}/rooms/{quote(ward)}/invite", token=verified["access_token"], json={"user_id": student["user_id"]}
    )
    assert approved.status_code == 200, approved.text
    assert join(api, student, ward).status_code == 200
    # The resident cannot approve it themselves: that invite is between the pair.
    other = api.register(role="MBBS Student")
    assert knock(api, other, ward).status_code == 200
    expect_error(
        api.call(
            "POST",
            f"{CS}/rooms/{quote(ward)}/invite",
            token=resident["access_token"],
            json={"user_id": other["user_id"]},
        ),
        403,
        REFUSED,
    )


# --- case rooms ---------------------------------------------------------------------------------


def test_case_rooms_refuse_unverified_members_on_every_route(api: Api, server: Any) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    nurse = api.register(role="Nurse")  # unverified
    before = joined_rooms(api, doctor)
    for body in (
        {"creation_content": CASE, "initial_state": [member_state(nurse["user_id"])]},
        {
            "creation_content": CASE,
            "initial_state": [member_state(nurse["user_id"], is_direct=True)],
            "is_direct": True,
        },
        {"creation_content": CASE, "invite": [nurse["user_id"]]},
    ):
        refused = expect_error(raw_create(api, doctor, **body), 403, CASE_REFUSED)
        assert refused["org.medchat.rule"] == CASE_RULE and nurse["user_id"] in refused["error"]
    assert joined_rooms(api, doctor) == before and api_rooms(api, nurse) == {}

    case = new_room(api, doctor, creation_content=CASE, initial_state=[member_state(colleague["user_id"])])
    assert join(api, colleague, case).status_code == 200
    for response in (
        put_state(api, doctor, case, "m.room.member", nurse["user_id"], {"membership": "invite"}),
        api.call(
            "POST", f"{CS}/rooms/{quote(case)}/invite", token=doctor["access_token"], json={"user_id": nurse["user_id"]}
        ),
        join(api, nurse, case),
    ):
        assert response.status_code == 403, response.text
    assert membership_of(api, doctor, case, nurse["user_id"]) is None


def test_case_rooms_gate_knocks_and_are_never_public(api: Api, server: Any) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    student = api.register(role="MBBS Student")
    case = new_room(api, doctor, creation_content=CASE)

    # knock is a fine join rule: every knock is checked.
    assert put_state(api, doctor, case, "m.room.join_rules", "", {"join_rule": "knock"}).status_code == 200
    refused = expect_error(knock(api, student, case), 403, CASE_REFUSED)
    assert refused["org.medchat.rule"] == CASE_RULE and "knock" in refused["error"]
    assert membership_of(api, doctor, case, student["user_id"]) is None

    async def element_knocks() -> Any:
        client = await nio_login(server.base_url, student["user_id"], student["password"])
        try:
            return await client.room_knock(case)
        finally:
            await client.close()

    knocked = run(element_knocks())
    assert isinstance(knocked, RoomKnockError) and knocked.status_code == CASE_REFUSED, knocked
    assert knock(api, colleague, case).status_code == 200
    assert membership_of(api, doctor, case, colleague["user_id"]) == "knock"
    approved = api.call(
        "POST", f"{CS}/rooms/{quote(case)}/invite", token=doctor["access_token"], json={"user_id": colleague["user_id"]}
    )
    assert approved.status_code == 200, approved.text
    assert join(api, colleague, case).status_code == 200

    # Never public: by a state change, or at creation (preset, visibility or initial_state).
    public = {"join_rule": "public"}
    refused = expect_error(put_state(api, doctor, case, "m.room.join_rules", "", public), 403, CASE_REFUSED)
    assert refused["org.medchat.rule"] == JOIN_RULE
    before = joined_rooms(api, doctor)
    for body in (
        {"preset": "public_chat"},
        {"visibility": "public"},
        {"initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": public}]},
    ):
        refused = expect_error(raw_create(api, doctor, creation_content=CASE, **body), 403, CASE_REFUSED)
        assert refused["org.medchat.rule"] == JOIN_RULE, body
    assert joined_rooms(api, doctor) == before
    # Never in the room directory: not at creation (with an invite-only join rule), nor later.
    listed = {"visibility": "public", "preset": "private_chat"}
    refused = expect_error(raw_create(api, doctor, creation_content=CASE, **listed), 403, CASE_REFUSED)
    assert refused["org.medchat.rule"] == "case_room_directory"
    assert joined_rooms(api, doctor) == before
    publish = f"/_matrix/client/v3/directory/list/room/{quote(case)}"
    token = doctor["access_token"]
    # Synapse's own answer to a third-party rule's refusal: 403 with its generic errcode.
    refused = expect_error(api.call("PUT", publish, token=token, json={"visibility": "public"}), 403, "M_UNKNOWN")
    assert "publish" in refused["error"]
    assert api.call("GET", publish).json()["visibility"] == "private"
    assert api.call("PUT", publish, token=token, json={"visibility": "private"}).status_code == 200
    # (Plain rooms may be public.)
    assert raw_create(api, doctor, preset="public_chat").status_code == 200

    # restricted: members of another room may join without an invite, if they are verified.
    lounge = new_room(api, doctor, invite=[student["user_id"], colleague["user_id"]])
    assert join(api, student, lounge).status_code == 200
    restricted = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": lounge}]}
    assert put_state(api, doctor, case, "m.room.join_rules", "", restricted).status_code == 200
    refused = expect_error(join(api, student, case), 403, CASE_REFUSED)
    assert refused["org.medchat.rule"] == CASE_RULE
    assert membership_of(api, doctor, case, student["user_id"]) is None


def test_server_admins_are_bound_by_the_case_room_rule(api: Api, server: Any) -> None:
    """The case-room rule is about who is in the room, so it binds server admins too."""
    admin, nurse = register_admin(server), api.register(role="Nurse")
    expect_error(raw_create(api, admin, creation_content=CASE), 403, CASE_REFUSED)
    doctor = licence_verified(api, server)
    case = new_room(api, doctor, creation_content=CASE)
    expect_error(join(api, admin, case), 403, CASE_REFUSED)
    refused = raw_create(api, doctor, creation_content=CASE, initial_state=[member_state(nurse["user_id"])])
    expect_error(refused, 403, CASE_REFUSED)


# --- a remote user in initial_state (issue #21) -------------------------------------------------


def test_a_remote_invite_in_initial_state_is_a_400_not_a_500(api: Api) -> None:
    alice = api.register()
    before = joined_rooms(api, alice)
    for extra in ({}, {"creation_content": CASE}):
        response = raw_create(api, alice, initial_state=[member_state("@someone:elsewhere.example")], **extra)
        body = expect_error(response, 400, "M_INVALID_PARAM")
        assert "@someone:elsewhere.example" in body["error"] and "`invite`" in body["error"]
    # Making another user join or knock is never allowed: refused before the room exists too.
    for membership in ("join", "knock"):
        forced = {"type": "m.room.member", "state_key": alice["user_id"], "content": {"membership": membership}}
        expect_error(raw_create(api, api.register(), initial_state=[forced]), 400, "M_INVALID_PARAM")
    assert joined_rooms(api, alice) == before


# --- the pure decisions -------------------------------------------------------------------------

STUDENT = Party("@s:home.example", "MBBS Student", "unverified")
RESIDENT = Party("@r:home.example", "Resident", "unverified")
VERIFIED = Party("@v:home.example", "Resident", "license_verified")
REMOTE = Party("@x:remote.example", None, "unverified")
SHIPPED = PolicyRule.parse(
    {
        "name": POLICY,
        "actions": ["dm", "invite", "contact_request"],
        "actor": {"roles": ["MBBS Student"]},
        "target": {"levels": ["unverified"], "except": {"roles": ["MBBS Student"]}},
    }
)


def test_policy_rules_refuse_the_pair_whichever_side_acts() -> None:
    for action in ("dm", "invite", "contact_request"):
        for one, other in ((STUDENT, RESIDENT), (RESIDENT, STUDENT), (STUDENT, REMOTE), (REMOTE, STUDENT)):
            assert policy_refusal([SHIPPED], action, one, other) == policy_refusal([SHIPPED], action, other, one)
            assert present(policy_refusal([SHIPPED], action, one, other)).rule == POLICY
    other_student = Party("@t:home.example", "MBBS Student", "unverified")
    for pair in ((STUDENT, other_student), (STUDENT, VERIFIED), (VERIFIED, STUDENT), (RESIDENT, REMOTE)):
        assert policy_refusal([SHIPPED], "dm", *pair) is None


def test_a_selector_leaves_out_its_exceptions() -> None:
    selector = Selector.parse(
        {"levels": ["unverified"], "except": {"roles": ["MBBS Student"], "servers": ["b.example"]}}
    )
    assert selector.requires(RESIDENT) and selector.requires(REMOTE)
    assert not selector.requires(STUDENT) and not selector.requires(VERIFIED)
    assert not selector.requires(Party("@y:b.example", None, "unverified"))
    assert Selector.parse(None).requires(VERIFIED)  # an empty selector matches everyone


def test_a_create_request_reads_as_the_membership_changes_it_makes() -> None:
    config = {
        "creation_content": {"type": "org.medchat.case"},
        "invite": ["@a:h", "not-a-user", 7, "@me:h"],
        "is_direct": True,
        "initial_state": [
            {"type": "m.room.member", "state_key": "@b:h", "content": {"membership": "invite"}},
            {"type": "m.room.member", "state_key": "@c:h", "content": {"membership": "invite", "is_direct": True}},
            {"type": "m.room.member", "state_key": "@d:h", "content": {"membership": "leave"}},
            {"type": "m.room.member", "state_key": 5, "content": {"membership": "invite"}},
            "garbage",
        ],
    }
    changes = creation_changes("@me:h", config)
    assert changes[0] == MembershipChange("join", "@me:h", "@me:h", case_room=True, creator=True)
    assert changes[0].case_room_action == "create"
    assert [(c.target, c.membership, c.is_direct) for c in changes[1:]] == [
        ("@a:h", "invite", True),
        ("@b:h", "invite", False),
        ("@c:h", "invite", True),
    ]
    assert all(c.case_room and c.sender == "@me:h" for c in changes)
    assert creation_changes("@me:h", {})[0].case_room is False


def test_the_join_rule_a_create_request_gives() -> None:
    public = {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "public"}}
    knock = {"type": "m.room.join_rules", "content": {"join_rule": "knock"}}
    assert creation_join_rule({}) == "invite"
    assert creation_join_rule({"preset": "public_chat"}) == "public"
    assert creation_join_rule({"visibility": "public"}) == "public"
    assert creation_join_rule({"visibility": "public", "preset": "private_chat"}) == "invite"
    assert creation_join_rule({"preset": "public_chat", "initial_state": [knock]}) == "knock"
    assert creation_join_rule({"initial_state": [knock, public]}) == "public"
    assert present(case_room_join_rule_refusal("public")).rule == JOIN_RULE
    assert case_room_join_rule_refusal("knock") is None and case_room_join_rule_refusal("restricted") is None


def test_case_room_refusals_and_remote_initial_invites() -> None:
    refused = present(case_room_refusal("@u:h", "identity_verified", "knock"))
    assert refused.rule == CASE_RULE and refused.errcode == CASE_REFUSED and "knock on a case room" in refused.message
    assert case_room_refusal("@u:h", "license_verified", "join") is None
    remote = {
        "initial_state": [{"type": "m.room.member", "state_key": "@x:far.example", "content": {"membership": "invite"}}]
    }
    error = present(initial_state_refusal("@me:home.example", remote, "home.example")).as_error()
    assert error.code == 400 and error.errcode == "M_INVALID_PARAM"
    assert initial_state_refusal("@me:far.example", remote, "far.example") is None
    forced = {"initial_state": [{"type": "m.room.member", "state_key": "@u:h", "content": {"membership": "join"}}]}
    assert "cannot join for @u:h" in present(initial_state_refusal("@me:h", forced, "h")).message
    assert initial_state_refusal("@u:h", forced, "h") is None  # the creator's own (profile) join
