"""The verification ladder: requests, verifiers, decisions, history, notifications and the mirror."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from harness import (
    INSTITUTION_VERIFIER,
    PASSWORD,
    VERIFIER_INSTITUTION,
    Api,
    SynapseServer,
    expect_error,
    nio_login,
    query_db,
    register_admin,
    run,
)

REQUESTS = "/api/chat/verification/requests"
LICENCE = {"registration_body": "General Medical Council", "license_number": "GMC-7654321"}


@pytest.fixture(scope="module")
def verifier(server: SynapseServer) -> dict[str, Any]:
    """The user `verifiers:` names for VERIFIER_INSTITUTION in the test config."""
    return Api(server.base_url).register(INSTITUTION_VERIFIER, institution=VERIFIER_INSTITUTION)


@pytest.fixture(scope="module")
def admin(server: SynapseServer) -> dict[str, Any]:
    return register_admin(server)


def submit(api: Api, user: dict[str, Any], **fields: Any) -> dict[str, Any]:
    response = api.call("POST", REQUESTS, token=user["access_token"], json={**LICENCE, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def decide(api: Api, who: dict[str, Any], request_id: str, verdict: str, reason: str | None = None) -> Any:
    return api.call(
        "POST",
        f"{REQUESTS}/{request_id}/{verdict}",
        token=who["access_token"],
        json={"reason": reason} if reason else {},
    )


def level(api: Api, user: dict[str, Any]) -> str:
    return api.call("GET", "/api/chat/verification/me", token=user["access_token"]).json()["verification_level"]


def test_the_whole_ladder(api: Api, server: SynapseServer, verifier: dict[str, Any], admin: dict[str, Any]) -> None:
    doctor = api.register(institution=VERIFIER_INSTITUTION, role="Consultant")
    bystander = api.register(institution=VERIFIER_INSTITUTION)

    first = submit(api, doctor, document="mxc://medchat.test/scanOfLicence")
    assert first["level"] == "identity_verified" and first["status"] == "pending"
    assert first["document"] == "mxc://medchat.test/scanOfLicence"

    # A non-verifier may neither list nor decide.
    expect_error(api.call("GET", REQUESTS, token=bystander["access_token"]), 403, "M_FORBIDDEN")
    expect_error(decide(api, bystander, first["id"], "approve"), 403, "M_FORBIDDEN")
    expect_error(decide(api, doctor, first["id"], "approve"), 403, "M_FORBIDDEN")

    pending = api.call("GET", f"{REQUESTS}?status=pending", token=verifier["access_token"]).json()["results"]
    assert first["id"] in [r["id"] for r in pending]
    approved = decide(api, verifier, first["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == verifier["user_id"]
    assert level(api, doctor) == "identity_verified"
    expect_error(decide(api, verifier, first["id"], "approve"), 409, "M_CONFLICT")
    expect_error(decide(api, admin, first["id"], "reject", "too late"), 409, "M_CONFLICT")

    second = submit(api, doctor)
    assert second["level"] == "license_verified"
    expect_error(decide(api, verifier, second["id"], "reject"), 400, "M_MISSING_PARAM")
    rejected = decide(api, verifier, second["id"], "reject", "licence number not on the register")
    assert rejected.json()["status"] == "rejected"
    assert level(api, doctor) == "identity_verified"

    third = submit(api, doctor, level="license_verified")
    assert decide(api, admin, third["id"], "approve", "checked on the register").status_code == 200
    assert level(api, doctor) == "license_verified"

    profile = api.call("GET", f"/api/chat/users/{quote(doctor['user_id'])}", token=bystander["access_token"]).json()
    assert profile["is_verified"] is True and profile["verification_level"] == "license_verified"
    verified = api.call(
        "GET",
        f"/api/chat/users?verified=true&institution={quote(VERIFIER_INSTITUTION)}",
        token=bystander["access_token"],
    )
    assert doctor["user_id"] in [u["id"] for u in verified.json()["results"]]

    me = api.call("GET", "/api/chat/verification/me", token=doctor["access_token"]).json()
    steps = [(e["action"], e["actor"], e["level_after"], e["reason"]) for e in me["history"]]
    assert steps == [
        ("submitted", doctor["user_id"], "unverified", None),
        ("approved", verifier["user_id"], "identity_verified", None),
        ("submitted", doctor["user_id"], "identity_verified", None),
        ("rejected", verifier["user_id"], "identity_verified", "licence number not on the register"),
        ("submitted", doctor["user_id"], "identity_verified", None),
        ("approved", admin["user_id"], "license_verified", "checked on the register"),
    ]
    assert all(e["at"] for e in me["history"])
    assert [r["status"] for r in me["requests"]] == ["approved", "rejected", "approved"]

    # The user is told: one `verification_decision` notification per decision.
    rows = query_db(
        server,
        "SELECT type, payload, is_read FROM medchat_notifications WHERE user_id = ? ORDER BY created_ts",
        (doctor["user_id"],),
    )
    assert [(kind, json.loads(payload)["status"], bool(read)) for kind, payload, read in rows] == [
        ("verification_decision", "approved", False),
        ("verification_decision", "rejected", False),
        ("verification_decision", "approved", False),
    ]

    async def matrix_view() -> Any:
        client = await nio_login(server.base_url, bystander["user_id"], PASSWORD)
        try:
            return (await client.get_profile(doctor["user_id"])).other_info["org.medchat.profile"]
        finally:
            await client.close()

    assert run(matrix_view())["verification_level"] == "license_verified"


def test_institution_verifiers_only_decide_their_institution(
    api: Api, verifier: dict[str, Any], admin: dict[str, Any]
) -> None:
    elsewhere = api.register(institution="Some Other Infirmary")
    request = submit(api, elsewhere)
    expect_error(decide(api, verifier, request["id"], "approve"), 403, "M_FORBIDDEN")
    listed = api.call("GET", REQUESTS, token=verifier["access_token"]).json()["results"]
    assert request["id"] not in [r["id"] for r in listed]
    assert request["id"] in [r["id"] for r in api.call("GET", REQUESTS, token=admin["access_token"]).json()["results"]]


def test_editing_verified_fields_resets_unless_a_verifier_does_it(
    api: Api, verifier: dict[str, Any], admin: dict[str, Any]
) -> None:
    doctor = api.register(institution=VERIFIER_INSTITUTION, specialization="Cardiology")
    path = f"/api/chat/users/{quote(doctor['user_id'])}"
    decide(api, verifier, submit(api, doctor, level="license_verified")["id"], "approve")
    assert level(api, doctor) == "license_verified"

    assert (
        api.call("PUT", path, token=admin["access_token"], json={"specialization": "Neurology"}).json()["is_verified"]
        is True
    )
    assert (
        api.call("PUT", path, token=doctor["access_token"], json={"bio": "Neurologist"}).json()["is_verified"] is True
    )
    assert (
        api.call("PUT", path, token=doctor["access_token"], json={"specialization": "Neurology"}).json()["is_verified"]
        is True
    )  # unchanged

    edited = api.call("PUT", "/api/auth/profile", token=doctor["access_token"], json={"role": "GP"})
    assert edited.json()["verification_level"] == "unverified" and edited.json()["is_verified"] is False
    last = api.call("GET", "/api/chat/verification/me", token=doctor["access_token"]).json()["history"][-1]
    assert (last["action"], last["actor"], last["level_after"], last["reason"]) == (
        "reset",
        doctor["user_id"],
        "unverified",
        "profile changed: role",
    )


def test_document_is_an_mxc_url_of_at_most_500_characters(api: Api) -> None:
    """One definition of an mxc:// URL (it was defined twice, once without a length limit)."""
    user = api.register(institution=VERIFIER_INSTITUTION)
    too_long = "mxc://medchat.test/" + "a" * (501 - len("mxc://medchat.test/"))
    body = expect_error(
        api.call("POST", REQUESTS, token=user["access_token"], json={**LICENCE, "document": too_long}),
        400,
        "M_INVALID_PARAM",
    )
    assert "document" in body["error"]
    longest = "mxc://medchat.test/" + "a" * (500 - len("mxc://medchat.test/"))
    assert submit(api, user, document=longest)["document"] == longest


def test_a_rejection_needs_its_reason(api: Api, verifier: dict[str, Any]) -> None:
    pending = submit(api, api.register(institution=VERIFIER_INSTITUTION))
    path = f"{REQUESTS}/{pending['id']}/reject"
    for body in ({}, {"reason": ""}):
        refused = api.call("POST", path, token=verifier["access_token"], json=body)
        assert "reason" in expect_error(refused, 400, "M_MISSING_PARAM" if not body else "M_INVALID_PARAM")["error"]


def test_bad_verification_input(api: Api, verifier: dict[str, Any]) -> None:
    user = api.register(institution=VERIFIER_INSTITUTION)
    t = user["access_token"]
    body = expect_error(
        api.call("POST", REQUESTS, token=t, json={**LICENCE, "level": "demigod"}), 400, "M_INVALID_PARAM"
    )
    assert "identity_verified" in body["error"] and "license_verified" in body["error"]
    expect_error(api.call("POST", REQUESTS, token=t, json={**LICENCE, "level": "unverified"}), 400, "M_INVALID_PARAM")
    expect_error(api.call("POST", REQUESTS, token=t, json={"license_number": "1"}), 400, "M_MISSING_PARAM")
    expect_error(
        api.call("POST", REQUESTS, token=t, json={**LICENCE, "document": "https://evil.example/x.pdf"}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(api.call("POST", REQUESTS, token=t, data=b"{not json"), 400, "M_NOT_JSON")
    submit(api, user)
    expect_error(api.call("POST", REQUESTS, token=t, json=LICENCE), 409, "M_CONFLICT")
    expect_error(decide(api, verifier, "vr_doesnotexist", "approve"), 404, "M_NOT_FOUND")
    body = expect_error(
        api.call("GET", f"{REQUESTS}?status=limbo", token=verifier["access_token"]), 400, "M_INVALID_PARAM"
    )
    assert "pending" in body["error"]
    expect_error(api.call("GET", "/api/chat/verification/me"), 401, "M_MISSING_TOKEN")


def test_attestation_check_names_what_is_wrong_with_the_body(api: Api) -> None:
    token = api.register()["access_token"]
    check = "/api/chat/verification/attestations/check"
    for body, errcode, field in (
        ({}, "M_MISSING_PARAM", "attestation"),
        ({"attestation": {"level": "license_verified"}}, "M_MISSING_PARAM", "attestation.user_id"),
        ({"attestation": {"user_id": "nobody"}}, "M_INVALID_PARAM", "attestation.user_id"),
        ({"attestation": "signed"}, "M_INVALID_PARAM", "attestation"),
    ):
        assert field in expect_error(api.call("POST", check, token=token, json=body), 400, errcode)["error"]
    # Anything else an attestation carries is for the signature check: a made-up one proves nothing.
    made_up = {"user_id": "@someone:medchat.test", "level": "license_verified", "signatures": {}}
    checked = api.call("POST", check, token=token, json={"attestation": made_up})
    assert checked.status_code == 200 and checked.json()["verification_level"] == "unverified", checked.text
