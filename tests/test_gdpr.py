"""GDPR: the export archive, erasure with password confirmation, and an audit trail that stays
verifiable after a person's entries are pseudonymised."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from typing import Any
from urllib.parse import quote

import pytest

from harness import (
    PASSWORD,
    TEST_RATE_LIMITS,
    Api,
    SynapseServer,
    all_tables,
    execute_db,
    expect_error,
    found_in_tables,
    fresh_database,
    licence_verified,
    query_db,
    register_admin,
    row_text,
    send_text,
    shared_room,
)
from medchat.store.audit import legacy_hash
from medchat.store.gdpr import planned

PROFILE = "/api/auth/profile"
EXPORT = "/api/auth/profile/export"
C = "/api/chat/contacts"


def medchat_tables(server: SynapseServer) -> list[str]:
    """Every table of the module in the database (so a table added later is checked too)."""
    return [name for name in all_tables(server) if name.startswith("medchat_")]


def mentions(server: SynapseServer, user_id: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Every row of every medchat_ table with `user_id` in any column."""
    found = []
    for table in medchat_tables(server):
        for row in query_db(server, f"SELECT * FROM {table}"):
            if user_id in row_text(row):
                found.append((table, row))
    return found


def befriend(api: Api, user: dict[str, Any], friend: dict[str, Any]) -> None:
    assert api.call("POST", C, token=user["access_token"], json={"user_id": friend["user_id"]}).status_code == 202
    accepted = api.call("POST", f"{C}/requests/{quote(user['user_id'])}/accept", token=friend["access_token"], json={})
    assert accepted.status_code == 200, accepted.text


def export(api: Api, token: str, query: str = "") -> zipfile.ZipFile:
    response = api.call("GET", EXPORT + query, token=token)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"].startswith("attachment")
    return zipfile.ZipFile(io.BytesIO(response.content))


def part(archive: zipfile.ZipFile, name: str) -> Any:
    return json.loads(archive.read(name))


def content_seen_by(api: Api, member: dict[str, Any], room: str, event_id: str) -> dict[str, Any]:
    """The content of `event_id` as `member` gets it from the Matrix room history."""
    response = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages?dir=b&limit=100", token=member["access_token"]
    )
    assert response.status_code == 200, response.text
    [event] = [e for e in response.json()["chunk"] if e["event_id"] == event_id]
    return event["content"]


def audit(api: Api, admin: dict[str, Any], query: str) -> list[dict[str, Any]]:
    response = api.call("GET", "/api/admin/audit" + query, token=admin["access_token"])
    assert response.status_code == 200, response.text
    return response.json()["results"]


def verify(api: Api, admin: dict[str, Any]) -> dict[str, Any]:
    return api.call("GET", "/api/admin/audit/verify", token=admin["access_token"]).json()


def test_every_module_table_is_known_to_export_and_erasure(server: SynapseServer) -> None:
    tables = medchat_tables(server)
    assert "medchat_profiles" in tables and "medchat_audit" in tables
    assert [t for t in tables if not planned(t)] == []


def test_export_holds_profile_verification_contacts_settings_and_sent_messages(api: Api, server: SynapseServer) -> None:
    user, friend, stranger = licence_verified(api, server), api.register(), api.register()
    befriend(api, user, friend)
    assert api.call("POST", C, token=stranger["access_token"], json={"user_id": user["user_id"]}).status_code == 202
    settings = api.call("PUT", f"{C}/permissions", token=user["access_token"], json={"default": "block_all"})
    assert settings.status_code == 200, settings.text
    room = shared_room(api, user, friend)
    send_text(api, user["access_token"], room, "Ward round notes for export")
    send_text(api, friend["access_token"], room, "Someone else's words")

    archive = export(api, user["access_token"])
    assert part(archive, "profile.json")["id"] == user["user_id"]
    tables = {
        name.removeprefix("medchat/").removesuffix(".json"): part(archive, name)
        for name in archive.namelist()
        if name.startswith("medchat/medchat_")
    }
    assert tables["medchat_profiles"][0]["institution"] == "St Elsewhere Hospital"
    assert [r["status"] for r in tables["medchat_verification_requests"]] == ["approved"]
    assert {(r["action"], r["level_after"]) for r in tables["medchat_verification_log"]} >= {
        ("approved", "license_verified")
    }
    assert {(r["owner_id"], r["contact_id"]) for r in tables["medchat_contacts"]} == {
        (user["user_id"], friend["user_id"]),
        (friend["user_id"], user["user_id"]),
    }
    assert [(r["requester_id"], r["status"]) for r in tables["medchat_contact_requests"]] == [
        (stranger["user_id"], "pending")
    ]
    assert part(archive, "medchat/contact_permissions.json")["permissions"]["default"] == "block_all"
    assert part(archive, "matrix/account_data/global.json")["org.medchat.contact_permissions"]["default"] == "block_all"
    messages = [json.loads(line) for line in archive.read("messages.jsonl").decode().splitlines()]
    bodies = [m["content"].get("body") for m in messages if m["type"] == "m.room.message"]
    assert bodies == ["Ward round notes for export"] and all(m["room_id"] for m in messages)

    admin = register_admin(server)
    [entry] = audit(api, admin, f"?action=gdpr.export&actor={quote(user['user_id'])}")
    assert (
        entry["target"] == user["user_id"]
        and entry["origin"] == "127.0.0.1"
        and entry["details"]["messages"] == len(messages)
    )


def test_export_of_someone_else_is_refused_except_for_admins(api: Api, server: SynapseServer) -> None:
    user, other = api.register(), api.register()
    expect_error(
        api.call("GET", f"{EXPORT}?user_id={quote(user['user_id'])}", token=other["access_token"]), 403, "M_FORBIDDEN"
    )
    expect_error(api.call("GET", EXPORT), 401, "M_MISSING_TOKEN")
    assert (
        part(export(api, user["access_token"], f"?user_id={quote(user['user_id'])}"), "profile.json")["id"]
        == user["user_id"]
    )

    admin = register_admin(server)
    assert (
        part(export(api, admin["access_token"], f"?user_id={quote(user['user_id'])}"), "profile.json")["id"]
        == user["user_id"]
    )
    expect_error(
        api.call("GET", f"{EXPORT}?user_id=%40nobody_here%3Amedchat.test", token=admin["access_token"]),
        404,
        "M_NOT_FOUND",
    )
    [entry] = audit(api, admin, f"?action=gdpr.export&actor={quote(admin['user_id'])}")
    assert entry["target"] == user["user_id"]


def test_erasure_needs_the_right_password_and_a_refusal_changes_nothing(api: Api, server: SynapseServer) -> None:
    user, friend = licence_verified(api, server), api.register()
    befriend(api, user, friend)
    before = mentions(server, user["user_id"])
    expect_error(
        api.call("DELETE", PROFILE, token=user["access_token"], json={"password": "not my password"}),
        403,
        "M_FORBIDDEN",
    )
    expect_error(api.call("DELETE", PROFILE, token=user["access_token"], json={}), 400, "M_MISSING_PARAM")
    expect_error(api.call("DELETE", PROFILE, token=user["access_token"]), 400, "M_NOT_JSON")
    expect_error(api.call("DELETE", PROFILE, json={"password": PASSWORD}), 401, "M_MISSING_TOKEN")
    assert sorted(map(repr, mentions(server, user["user_id"]))) == sorted(map(repr, before))
    assert api.call("GET", PROFILE, token=user["access_token"]).status_code == 200
    login = api.call(
        "POST", "/api/auth/login", json={"username": user["user_id"].split(":")[0][1:], "password": PASSWORD}
    )
    assert login.status_code == 200, login.text


def test_erasure_leaves_no_module_row_and_a_verifiable_pseudonymised_trail(api: Api, server: SynapseServer) -> None:
    admin = register_admin(server)
    user, friend, stranger = licence_verified(api, server), api.register(), api.register()
    uid = user["user_id"]
    befriend(api, user, friend)
    assert (
        api.call("POST", C, token=stranger["access_token"], json={"user_id": uid}).status_code == 202
    )  # a pending request to them
    room = shared_room(api, user, friend)
    said = send_text(api, user["access_token"], room, "Something I said before erasure")
    heard = send_text(api, friend["access_token"], room, "Reply from a friend")
    assert (
        api.call(
            "PUT", f"/api/chat/messages/{quote(heard)}/status", token=user["access_token"], json={"status": "delivered"}
        ).status_code
        == 200
    )
    fading = api.call(
        "POST",
        f"/api/chat/rooms/{quote(room)}/messages",
        token=user["access_token"],
        json={"content": "Gone in an hour", "expires_in": 3600},
    )
    assert fading.status_code == 201, fading.text
    case = api.call(
        "POST", "/api/chat/rooms", token=user["access_token"], json={"type": "case", "name": "Erasure case"}
    )
    assert case.status_code == 201, case.text
    export(api, user["access_token"])
    edited = api.call(
        "PUT", f"/api/chat/users/{quote(uid)}", token=admin["access_token"], json={"bio": "edited by an admin"}
    )
    assert edited.status_code == 200, edited.text
    assert {t for t, _ in mentions(server, uid)} >= {
        "medchat_profiles",
        "medchat_contacts",
        "medchat_contact_requests",
        "medchat_audit",
        "medchat_verification_requests",
        "medchat_notifications",
        "medchat_delivery",
        "medchat_expiring_messages",
    }
    assert verify(api, admin)["ok"]

    erased = api.call("DELETE", PROFILE, token=user["access_token"], json={"password": PASSWORD})
    assert erased.status_code == 200, erased.text

    expect_error(api.call("GET", PROFILE, token=user["access_token"]), 401, "M_UNKNOWN_TOKEN")
    expect_error(
        api.call("POST", "/api/auth/login", json={"username": uid.split(":")[0][1:], "password": PASSWORD}),
        403,
        "M_FORBIDDEN",
    )
    assert query_db(server, "SELECT user_id FROM erased_users WHERE user_id = ?", (uid,)) == [(uid,)]
    assert mentions(server, uid) == []
    # Their disappearing message did not outlive the account.
    gone = api.call(
        "GET", f"/api/chat/rooms/{quote(room)}/messages/{quote(fading.json()['id'])}", token=friend["access_token"]
    ).json()
    assert gone["is_deleted"], gone

    verdict = verify(api, admin)
    assert verdict["ok"] and verdict["first_broken_seq"] is None, verdict
    [erasure] = audit(api, admin, "?action=gdpr.erasure&limit=100")[:1]
    pseudonym = erasure["actor"]
    assert (
        pseudonym.startswith("pseudonym:")
        and erasure["origin"].startswith("pseudonym:")
        and erasure["origin"] != "127.0.0.1"
    )
    decisions = audit(api, admin, f"?action=verification.approved&target={quote(pseudonym)}")
    assert len(decisions) == 1 and decisions[0]["actor"] != pseudonym  # the admin who decided stays named
    exports = audit(api, admin, f"?action=gdpr.export&actor={quote(pseudonym)}")
    assert len(exports) == 1 and exports[0]["origin"].startswith("pseudonym:")
    assert audit(api, admin, f"?action=profile.admin_edit&target={quote(pseudonym)}")[0]["actor"] == admin["user_id"]

    # Synapse's own erasure path (the admin API, or Element's "erase my data") runs the module's
    # erasure too; again for an erased account it changes nothing and records no second entry.
    again = api.call(
        "POST", f"/_synapse/admin/v1/deactivate/{quote(uid)}", token=admin["access_token"], json={"erase": True}
    )
    assert again.status_code == 200, again.text
    assert len(audit(api, admin, f"?action=gdpr.erasure&actor={quote(pseudonym)}")) == 1
    assert mentions(server, uid) == [] and verify(api, admin)["ok"]

    # Matrix erasure semantics: who was there keeps the message, who joins later sees it emptied.
    assert content_seen_by(api, friend, room, said) == {"msgtype": "m.text", "body": "Something I said before erasure"}
    newcomer = api.register()
    assert (
        api.call(
            "POST",
            f"/_matrix/client/v3/rooms/{quote(room)}/invite",
            token=friend["access_token"],
            json={"user_id": newcomer["user_id"]},
        ).status_code
        == 200
    )
    assert (
        api.call("POST", f"/_matrix/client/v3/join/{quote(room)}", token=newcomer["access_token"], json={}).status_code
        == 200
    )
    assert content_seen_by(api, newcomer, room, said) == {}


def test_erasure_through_the_admin_api_removes_module_data(api: Api, server: SynapseServer) -> None:
    admin = register_admin(server)
    user, friend = api.register(), api.register()
    befriend(api, friend, user)
    response = api.call(
        "POST",
        f"/_synapse/admin/v1/deactivate/{quote(user['user_id'])}",
        token=admin["access_token"],
        json={"erase": True},
    )
    assert response.status_code == 200, response.text
    assert mentions(server, user["user_id"]) == []
    [entry] = audit(api, admin, "?action=gdpr.erasure&limit=1")
    assert entry["details"] == {"by_admin": True} and entry["origin"] is None
    assert api.call("GET", f"{C}/{quote(user['user_id'])}", token=friend["access_token"]).status_code == 404
    assert verify(api, admin)["ok"]


def test_migration_080_reseals_an_existing_trail(api: Api, tmp_path_factory: Any) -> None:
    """A database from before 080 (scheme-1 hashes over clear values) is re-hashed at start-up;
    a tampered scheme-1 trail stops start-up instead of being laundered."""
    with fresh_database() as database_url:
        hs = SynapseServer(
            tmp_path_factory.mktemp("gdpr-migration"), database_url=database_url, overrides=TEST_RATE_LIMITS
        )
        hs.start()
        try:
            api = Api(hs.base_url)
            admin = register_admin(hs)
            for _ in range(2):
                licence_verified(api, hs)
            rows = query_db(
                hs, "SELECT seq, ts, actor, action, target, details, origin FROM medchat_audit ORDER BY seq"
            )
            hs.stop()
            # Back to the state before 080: hashes over the clear values, no scheme column.
            prev = "0" * 64
            for seq, ts, actor, action, target, details, origin in rows:
                digest = legacy_hash(seq, ts, actor, action, target, json.loads(details), origin, prev)
                execute_db(hs, "UPDATE medchat_audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
                prev = digest
            execute_db(hs, "ALTER TABLE medchat_audit DROP COLUMN scheme")
            execute_db(hs, "DELETE FROM medchat_schema_versions WHERE version = 80")
            tampered = rows[0][2]
            execute_db(hs, "UPDATE medchat_audit SET actor = ? WHERE seq = 1", ("@intruder:medchat.test",))
            code, output = hs.run_until_exit()
            assert code != 0 and "broken at entry 1" in output, output[-2000:]

            execute_db(hs, "UPDATE medchat_audit SET actor = ? WHERE seq = 1", (tampered,))
            hs.start()
            verdict = verify(api, admin)
            assert verdict == {"ok": True, "entries_checked": len(rows), "first_broken_seq": None}
            assert query_db(hs, "SELECT DISTINCT scheme FROM medchat_audit") == [(2,)]
        finally:
            hs.stop()


# The room history other members saw: their copies of the person's past events stay (Synapse's
# erasure hides them from later joiners); everything else must forget the person.
ROOM_HISTORY = {"events", "event_json", "room_memberships", "state_events", "current_state_events", "event_search"}


@pytest.mark.parametrize("route", ["api", "synapse_admin"])
def test_erasure_leaves_no_email_name_or_bio_in_any_table(
    api: Api, server: SynapseServer, mail: Any, route: str
) -> None:
    tag = secrets.token_hex(4)
    user = api.register(f"erased_{tag}", full_name=f"Dr. Zelda Quux{tag}", bio=f"Loves rare case {tag}")
    friend = api.register()
    room = shared_room(api, user, friend)
    send_text(api, user["access_token"], room, "A message before erasure")
    # A pending password-reset session (its address sits in Synapse's validation tables).
    assert api.call("POST", "/api/auth/forgot-password", json={"email": user["email"]}).status_code == 202
    mail.wait_for(user["email"])
    if route == "api":
        erased = api.call("DELETE", PROFILE, token=user["access_token"], json={"password": PASSWORD})
    else:  # Synapse's own admin API, as an operator or Element's admin tools would erase
        admin = register_admin(server)
        erased = api.call(
            "POST",
            f"/_synapse/admin/v1/deactivate/{quote(user['user_id'])}",
            token=admin["access_token"],
            json={"erase": True},
        )
    assert erased.status_code == 200, erased.text
    needles = [user["email"], f"Zelda Quux{tag}", f"Loves rare case {tag}"]
    leftovers = found_in_tables(server, needles, [t for t in all_tables(server) if t not in ROOM_HISTORY])
    assert leftovers == [], leftovers
