"""The audit trail: recorded actions, admin-only reading, and a chain that catches a direct edit."""

from __future__ import annotations

from urllib.parse import quote

from harness import Api, SynapseServer, execute_db, expect_error, licence_verified, register_admin
from test_metrics import metrics, sample


def audit(api: Api, admin: dict, query: str = "") -> dict:
    response = api.call("GET", "/api/admin/audit" + query, token=admin["access_token"])
    assert response.status_code == 200, response.text
    return response.json()


def test_actions_are_recorded_and_only_admins_read_them(api: Api, server: SynapseServer) -> None:
    admin = register_admin(server)
    doctor = licence_verified(api, server)  # an admin's approval: a verification decision
    user = api.register()
    edited = api.call(
        "PUT", f"/api/chat/users/{quote(user['user_id'])}", token=admin["access_token"], json={"bio": "fixed by admin"}
    )
    assert edited.status_code == 200, edited.text

    decisions = audit(api, admin, f"?action=verification.approved&target={quote(doctor['user_id'])}")["results"]
    assert len(decisions) == 1 and decisions[0]["details"]["level_after"] == "license_verified"
    edits = audit(api, admin, f"?action=profile.admin_edit&target={quote(user['user_id'])}")["results"]
    assert [(e["actor"], e["details"]["fields"]) for e in edits] == [(admin["user_id"], ["bio"])]

    # Case-room membership is recorded whichever client made it.
    room = api.call(
        "POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "case", "name": "Audit case"}
    ).json()["id"]
    joins = audit(api, admin, f"?action=case_room.membership&actor={quote(doctor['user_id'])}")["results"]
    assert any(e["details"]["room_id"] == room for e in joins)

    expect_error(api.call("GET", "/api/admin/audit", token=user["access_token"]), 403, "M_FORBIDDEN")
    expect_error(api.call("GET", "/api/admin/audit/verify", token=user["access_token"]), 403, "M_FORBIDDEN")
    expect_error(
        api.call("GET", "/api/admin/audit?since=yesterday", token=admin["access_token"]), 400, "M_INVALID_PARAM"
    )


def test_audit_query_values_are_typed(api: Api, server: SynapseServer) -> None:
    """Times and the cursor are whole milliseconds within a database integer: a larger one is a
    400 naming the parameter (it used to reach the database), and so is a negative one."""
    admin = register_admin(server)
    for name in ("since", "until", "cursor"):
        for value in ("99999999999999999999", "-1", "1.5"):
            response = api.call("GET", f"/api/admin/audit?{name}={value}", token=admin["access_token"])
            assert name in expect_error(response, 400, "M_INVALID_PARAM")["error"]
    assert audit(api, admin, f"?since=0&until={2**63 - 1}&limit=1")["next_cursor"] is not None


def test_verify_catches_a_direct_database_edit(api: Api, server: SynapseServer) -> None:
    admin = register_admin(server)
    licence_verified(api, server)
    verdict = api.call("GET", "/api/admin/audit/verify", token=admin["access_token"]).json()
    assert verdict["ok"] and verdict["first_broken_seq"] is None and verdict["entries_checked"] >= 1

    newest = audit(api, admin, "?limit=1")["results"][0]
    failures_before = sample(metrics(server), "medchat_audit_verify_failures_total")
    execute_db(
        server, "UPDATE medchat_audit SET actor = ? WHERE seq = ?", ("@someone_else:medchat.test", newest["seq"])
    )
    verdict = api.call("GET", "/api/admin/audit/verify", token=admin["access_token"]).json()
    assert (verdict["ok"], verdict["first_broken_seq"]) == (False, newest["seq"])
    assert sample(metrics(server), "medchat_audit_verify_failures_total") == failures_before + 1  # alerted on
    # Put it back: the suite shares one server, and later tests verify the chain too.
    execute_db(server, "UPDATE medchat_audit SET actor = ? WHERE seq = ?", (newest["actor"], newest["seq"]))
    assert api.call("GET", "/api/admin/audit/verify", token=admin["access_token"]).json()["ok"]
    assert sample(metrics(server), "medchat_audit_verify_failures_total") == failures_before + 1


def test_concurrent_entries_all_land_in_one_chain(api: Api, server: SynapseServer) -> None:
    """Audited actions at the same moment (here admin profile edits) each get their own link."""
    from concurrent.futures import ThreadPoolExecutor

    admin = register_admin(server)
    users = [api.register() for _ in range(8)]

    def edit(user: dict) -> int:
        return (
            Api(api.base_url)
            .call(
                "PUT",
                f"/api/chat/users/{quote(user['user_id'])}",
                token=admin["access_token"],
                json={"bio": "concurrent"},
            )
            .status_code
        )

    with ThreadPoolExecutor(len(users)) as pool:
        assert list(pool.map(edit, users)) == [200] * len(users)
    assert len(audit(api, admin, f"?action=profile.admin_edit&actor={quote(admin['user_id'])}")["results"]) == len(
        users
    )
    assert api.call("GET", "/api/admin/audit/verify", token=admin["access_token"]).json()["ok"]
