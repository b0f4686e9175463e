"""Who may contact whom: blocks, permission settings and server policy, enforced for the API,
for a matrix-nio client and (through the same callbacks) for federation; plus the pure decisions."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from nio import RoomCreateError, RoomCreateResponse, RoomInviteError, RoomInviteResponse

from harness import (
    SERVER_NAME,
    TEST_RATE_LIMITS,
    Api,
    SynapseServer,
    expect_error,
    fresh_database,
    licence_verified,
    nio_login,
    present,
    run,
)
from medchat.rules.decisions import (
    PERMISSIONS_SCHEMA,
    Party,
    Permissions,
    PolicyRule,
    federation_refusal,
    policy_refusal,
    recipient_refusal,
)

C = "/api/chat/contacts"
PERMS = f"{C}/permissions"
REFUSED = "ORG_MEDCHAT_CONTACT_REFUSED"


def create_room(api: Api, user: dict[str, Any], invite: list[str], is_direct: bool = False) -> Any:
    body = {"invite": invite, "is_direct": is_direct, "preset": "trusted_private_chat" if is_direct else "private_chat"}
    return api.call("POST", "/_matrix/client/v3/createRoom", token=user["access_token"], json=body)


def refusal(response: Any, rule: str) -> str:
    body = expect_error(response, 403, REFUSED)
    assert body["org.medchat.rule"] == rule and rule in body["error"]
    return body["error"]


def nio_attempts(server: Any, user: dict[str, Any], target: str) -> tuple[Any, Any]:
    """As Element would: a DM with `target`, then a plain room and an invite of `target` into it."""

    async def scenario() -> tuple[Any, Any]:
        client = await nio_login(server.base_url, user["user_id"], user["password"])
        try:
            dm = await client.room_create(is_direct=True, invite=[target])
            room = await client.room_create()
            assert isinstance(room, RoomCreateResponse), room
            return dm, await client.room_invite(room.room_id, target)
        finally:
            await client.close()

    return run(scenario())


def set_permissions(api: Api, user: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    response = api.call("PUT", PERMS, token=user["access_token"], json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- blocks ----------------------------------------------------------------------------------


def test_blocked_user_cannot_dm_invite_or_request_and_is_not_told(api: Api, server: Any) -> None:
    blocker, pest, closed = api.register(), api.register(), api.register()
    assert api.call("POST", f"{C}/{quote(pest['user_id'])}/block", token=blocker["access_token"]).status_code == 200

    block_message = refusal(create_room(api, pest, [blocker["user_id"]], is_direct=True), "recipient_settings")
    refusal(create_room(api, pest, [blocker["user_id"]]), "recipient_settings")
    request_message = refusal(
        api.call("POST", C, token=pest["access_token"], json={"user_id": blocker["user_id"]}), "recipient_settings"
    )
    assert "block" not in (block_message + request_message).lower() and "ignor" not in block_message.lower()

    dm, invite = nio_attempts(server, pest, blocker["user_id"])
    assert isinstance(dm, RoomCreateError) and dm.status_code == REFUSED, dm
    assert isinstance(invite, RoomInviteError) and invite.status_code == REFUSED, invite

    # A refusal by a "block all" setting reads exactly the same: the block does not show.
    set_permissions(api, closed, {"default": "block_all"})
    assert refusal(create_room(api, pest, [closed["user_id"]], is_direct=True), "recipient_settings") == block_message

    # Unblocked, everything works again.
    assert api.call("DELETE", f"{C}/{quote(pest['user_id'])}/block", token=blocker["access_token"]).status_code == 200
    assert create_room(api, pest, [blocker["user_id"]], is_direct=True).status_code == 200
    # Being in the blocker's list (blocking put pest there) is no consent: it takes a request.
    assert api.call("POST", C, token=pest["access_token"], json={"user_id": blocker["user_id"]}).status_code == 202


# --- the user's own permission setting -------------------------------------------------------


def test_permission_setting_with_exceptions(api: Api, server: Any) -> None:
    me, friend, colleague, nurse, other = (
        api.register(),
        api.register(),
        api.register(),
        api.register(role="Nurse"),
        api.register(),
    )
    got = api.call("GET", PERMS, token=me["access_token"]).json()
    assert got["source"] == "server_default" and got["permissions"]["default"] == "allow_all"
    # Before: anyone may.
    assert create_room(api, other, [me["user_id"]]).status_code == 200

    # friend becomes a contact first (requests are allowed then), then the door closes.
    assert api.call("POST", C, token=friend["access_token"], json={"user_id": me["user_id"]}).status_code == 202
    assert (
        api.call("POST", f"{C}/requests/{quote(friend['user_id'])}/accept", token=me["access_token"]).status_code == 200
    )
    saved = set_permissions(
        api, me, {"default": "block_all", "allow": {"users": [colleague["user_id"]]}, "block": {"roles": ["Nurse"]}}
    )
    assert saved["source"] == "account_data"
    assert saved["permissions"]["allow"]["users"] == [colleague["user_id"]]

    assert create_room(api, colleague, [me["user_id"]], is_direct=True).status_code == 200  # listed user
    assert create_room(api, friend, [me["user_id"]], is_direct=True).status_code == 200  # a contact (allow_contacts)
    refusal(create_room(api, other, [me["user_id"]], is_direct=True), "recipient_settings")
    refusal(api.call("POST", C, token=other["access_token"], json={"user_id": me["user_id"]}), "recipient_settings")
    dm, invite = nio_attempts(server, other, me["user_id"])
    assert isinstance(dm, RoomCreateError) and dm.status_code == REFUSED, dm
    assert isinstance(invite, RoomInviteError) and invite.status_code == REFUSED, invite

    # allow_all with a blocked role: nurses are refused, others are not.
    set_permissions(api, me, {"default": "allow_all", "block": {"roles": ["Nurse"]}})
    refusal(create_room(api, nurse, [me["user_id"]]), "recipient_settings")
    assert create_room(api, other, [me["user_id"]]).status_code == 200

    # The setting is plain account data any Matrix client can read.
    stored = api.call(
        "GET",
        f"/_matrix/client/v3/user/{quote(me['user_id'])}/account_data/org.medchat.contact_permissions",
        token=me["access_token"],
    )
    assert stored.json()["block"]["roles"] == ["Nurse"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"default": "maybe"}, "default"),
        ({}, "default"),
        ({"default": "allow_all", "allow": {"users": ["not-a-user"]}}, "allow.users[0]"),
        ({"default": "allow_all", "block": {"levels": ["famous"]}}, "block.levels[0]"),
        ({"default": "allow_all", "block": {"roles": ["Wizard"]}}, "block.roles[0]"),
        ({"default": "allow_all", "block": {"teams": []}}, "teams"),
        ({"default": "allow_all", "allow_contacts": "yes"}, "allow_contacts"),
    ],
)
def test_malformed_permissions_are_400_and_change_nothing(api: Api, body: dict[str, Any], field: str) -> None:
    me = api.register()
    before = set_permissions(api, me, {"default": "block_all", "allow": {"servers": [SERVER_NAME]}})
    response = api.call("PUT", PERMS, token=me["access_token"], json=body)
    error = expect_error(response, 400, "M_MISSING_PARAM" if body == {} else "M_INVALID_PARAM")
    assert field in error["error"]
    assert api.call("GET", PERMS, token=me["access_token"]).json() == before


def test_unreadable_stored_setting_falls_back_to_the_server_default(api: Api, server: Any) -> None:
    me, other = api.register(), api.register()
    set_permissions(api, me, {"default": "block_all"})
    refusal(create_room(api, other, [me["user_id"]]), "recipient_settings")
    # A Matrix client writes something MedChat cannot read.
    put = api.call(
        "PUT",
        f"/_matrix/client/v3/user/{quote(me['user_id'])}/account_data/org.medchat.contact_permissions",
        token=me["access_token"],
        json={"default": 42},
    )
    assert put.status_code == 200
    got = api.call("GET", PERMS, token=me["access_token"]).json()
    assert got == {
        "permissions": Permissions(default="allow_all").to_json(),
        "source": "server_default",
    }  # synapse.yaml's default
    assert f"unreadable org.medchat.contact_permissions of {me['user_id']}" in server.log_tail(400)


# --- server policy ---------------------------------------------------------------------------


POLICY = "students-no-unverified-clinicians"


def test_students_and_unverified_non_students_are_kept_apart_from_both_sides(api: Api, server: Any) -> None:
    student, resident = api.register(role="MBBS Student"), api.register()
    message = refusal(create_room(api, student, [resident["user_id"]], is_direct=True), POLICY)
    assert "students and unverified accounts that are not students may not start direct chats with" in message
    dm, _ = nio_attempts(server, student, resident["user_id"])
    assert isinstance(dm, RoomCreateError) and dm.status_code == REFUSED, dm
    # The rule is about the pair: a group invite, and a DM started by the resident, get the same answer.
    assert refusal(create_room(api, student, [resident["user_id"]]), POLICY) == message
    assert refusal(create_room(api, resident, [student["user_id"]], is_direct=True), POLICY) == message
    # Another student, and a licence-verified resident, are fine either way.
    peer, verified = api.register(role="MBBS Student"), licence_verified(api, server)
    for one, other in ((student, peer), (peer, student), (student, verified), (verified, student)):
        assert create_room(api, one, [other["user_id"]], is_direct=True).status_code == 200
        assert create_room(api, one, [other["user_id"]]).status_code == 200


def test_no_invite_is_left_that_the_invitee_may_not_accept(api: Api, server: Any) -> None:
    """The old dead room: the resident's DM was made and the student invited, but the student's
    join was refused. Now the invite is refused up front, so nothing reaches the student."""
    student, resident = api.register(role="MBBS Student"), api.register()
    refusal(create_room(api, resident, [student["user_id"]], is_direct=True), POLICY)
    rooms = api.call("GET", "/api/chat/rooms", token=student["access_token"]).json()["results"]
    assert rooms == []

    async def nio_invites(inviter: dict[str, Any]) -> Any:
        client = await nio_login(server.base_url, inviter["user_id"], inviter["password"])
        try:
            group = await client.room_create()
            return await client.room_invite(group.room_id, student["user_id"])
        finally:
            await client.close()

    invite = run(nio_invites(resident))
    assert isinstance(invite, RoomInviteError) and invite.status_code == REFUSED, invite
    # An invite the rules allow is delivered, and accepting it works.
    verified = licence_verified(api, server)
    assert isinstance(run(nio_invites(verified)), RoomInviteResponse)
    room = create_room(api, verified, [student["user_id"]], is_direct=True)
    assert room.status_code == 200
    joined = api.call(
        "POST", f"/_matrix/client/v3/join/{quote(room.json()['room_id'])}", token=student["access_token"], json={}
    )
    assert joined.status_code == 200, joined.text


# --- a server without contact requests and with a federation allow-list ----------------------


@pytest.fixture(scope="module")
def strict_api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {"contact_requests": False, "federation_allow_list": ["partner.example"]}
    with fresh_database() as database_url:
        hs = SynapseServer(
            tmp_path_factory.mktemp("strict"),
            database_url=database_url,
            overrides=TEST_RATE_LIMITS,
            module_overrides=config,
        )
        hs.start()
        yield Api(hs.base_url)
        hs.stop()


def test_without_requests_adding_is_immediate_and_one_sided(strict_api: Api) -> None:
    a, b = strict_api.register(), strict_api.register()
    added = strict_api.call("POST", C, token=a["access_token"], json={"user_id": b["user_id"]})
    assert added.status_code == 201 and added.json()["contact"]["id"] == b["user_id"]
    assert strict_api.call("GET", C, token=b["access_token"]).json()["results"] == []
    expect_error(
        strict_api.call("POST", C, token=a["access_token"], json={"user_id": b["user_id"]}),
        409,
        "ORG_MEDCHAT_CONTACT_EXISTS",
    )


def test_invites_to_servers_outside_the_allow_list_are_refused(strict_api: Api) -> None:
    a = strict_api.register()
    refusal(create_room(strict_api, a, ["@someone:outsider.example"], is_direct=True), "federation_allow_list")
    room = create_room(strict_api, a, [])
    assert room.status_code == 200
    invite = strict_api.call(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(room.json()['room_id'])}/invite",
        token=a["access_token"],
        json={"user_id": "@someone:outsider.example"},
    )
    assert "outsider.example" in refusal(invite, "federation_allow_list")
    # The API's DM names the rule and the server too (checked before asking that server).
    dm = strict_api.call(
        "POST",
        "/api/chat/rooms",
        token=a["access_token"],
        json={"type": "direct", "participants": ["@someone:outsider.example"]},
    )
    assert "outsider.example" in refusal(dm, "federation_allow_list")


# --- the pure decisions ----------------------------------------------------------------------

A = Party("@a:home.example", "MBBS Student", "unverified")
B = Party("@b:home.example", "Consultant", "license_verified")
R = Party("@r:remote.example", None, "unverified")
STUDENT_RULE = PolicyRule.parse(
    {
        "name": "no-student-dm",
        "description": "no",
        "actions": ["dm"],
        "actor": {"roles": ["MBBS Student"]},
        "target": {"levels": ["unverified", "identity_verified"]},
    }
)


def test_policy_rule_needs_action_actor_and_target_to_match() -> None:
    U = Party("@u:home.example", "GP", "unverified")
    assert present(policy_refusal([STUDENT_RULE], "dm", A, U)).rule == "no-student-dm"
    assert policy_refusal([STUDENT_RULE], "invite", A, U) is None
    assert policy_refusal([STUDENT_RULE], "dm", A, B) is None  # target verified
    assert policy_refusal([STUDENT_RULE], "dm", B, U) is None  # actor not a student
    everyone = PolicyRule.parse({"name": "closed", "actions": ["contact_request"]})
    assert present(policy_refusal([everyone], "contact_request", B, A)).message == "Refused by server policy 'closed'."


def test_federation_allow_list() -> None:
    assert federation_refusal(None, "home.example", A.user_id, R.user_id) is None
    assert federation_refusal(["remote.example"], "home.example", A.user_id, R.user_id) is None
    refused = present(federation_refusal(["partner.example"], "home.example", R.user_id, A.user_id))
    assert refused.rule == "federation_allow_list" and "remote.example" in refused.message
    assert federation_refusal([], "home.example", A.user_id, B.user_id) is None  # the own server is always allowed


def test_permissions_most_specific_entry_wins() -> None:
    p = Permissions.parse(
        {
            "default": "block_all",
            "allow": {"users": [A.user_id], "servers": ["remote.example"]},
            "block": {"users": [B.user_id], "levels": ["unverified"]},
        }
    )
    assert p.permits(A, False)  # listed user beats the blocked level
    assert not p.permits(B, True)  # a blocked user stays blocked even as a contact
    assert not p.permits(R, False)  # blocked level beats allowed server
    assert p.permits(Party("@x:remote.example", None, "license_verified"), False)
    assert not p.permits(Party("@x:home.example", None, "license_verified"), False)  # default
    assert p.permits(Party("@x:home.example", None, "unverified"), True)  # contacts come before groups
    assert not Permissions.parse(
        {"default": "allow_all", "allow_contacts": False, "block": {"servers": ["home.example"]}}
    ).permits(A, True)


def test_a_block_and_a_closed_setting_read_the_same() -> None:
    open_door = Permissions(default="allow_all")
    ignored = recipient_refusal(open_door, "dm", A, sender_is_contact=True, ignored=True)
    closed = recipient_refusal(
        Permissions(default="block_all", allow_contacts=False), "dm", A, sender_is_contact=True, ignored=False
    )
    assert ignored == closed and present(ignored).rule == "recipient_settings"
    assert recipient_refusal(open_door, "dm", A, sender_is_contact=False, ignored=False) is None


def test_permission_schema_round_trips_the_normalised_form() -> None:
    normalised = Permissions.parse({"default": "block_all", "allow": {"roles": ["GP"]}}).to_json()
    jsonschema.validate(normalised, PERMISSIONS_SCHEMA)
    assert Permissions.parse(normalised).to_json() == normalised
