"""/api/auth/*: registration, login, sessions, refresh, own profile, and their bad input."""

from __future__ import annotations

import secrets

import pytest

from harness import PASSWORD, SERVER_NAME, Api, SynapseServer, expect_error, nio_login, run


def whoami(api: Api, token: str) -> int:
    return api.call("GET", "/_matrix/client/v3/account/whoami", token=token).status_code


# --- registration ----------------------------------------------------------------------------


def test_register_creates_matrix_user_with_profile(api: Api) -> None:
    reg = api.register("dr_aisha", full_name="Dr. Aisha Rehman", role="MBBS Student", bio="Cardiology fan")
    assert reg["user_id"] == f"@dr_aisha:{SERVER_NAME}"
    user = reg["user"]
    assert user["id"] == reg["user_id"]
    assert user["user"] == {
        "id": reg["user_id"],
        "username": "dr_aisha",
        "email": "dr_aisha@example.org",
        "full_name": "Dr. Aisha Rehman",
    }
    assert (user["role"], user["institution"], user["specialization"], user["bio"]) == (
        "MBBS Student",
        "St Elsewhere Hospital",
        "Cardiology",
        "Cardiology fan",
    )
    assert user["is_verified"] is False
    assert user["created_at"].endswith("Z")
    # The token is Synapse's own, and the display name is the Matrix profile's.
    assert (
        api.call("GET", "/_matrix/client/v3/account/whoami", token=reg["access_token"]).json()["user_id"]
        == reg["user_id"]
    )
    profile = api.call("GET", f"/_matrix/client/v3/profile/{reg['user_id']}", token=reg["access_token"]).json()
    assert profile["displayname"] == "Dr. Aisha Rehman"
    assert reg["refresh_token"] and reg["expires_in_ms"] > 0


def test_registered_user_logs_in_with_matrix_nio(api: Api, server: SynapseServer) -> None:
    reg = api.register()

    async def scenario() -> str:
        client = await nio_login(server.base_url, reg["user_id"], reg["password"])
        try:
            return client.user_id
        finally:
            await client.close()

    assert run(scenario()) == reg["user_id"]


def test_taken_username_is_409(api: Api) -> None:
    reg = api.register()
    response = api.call(
        "POST",
        "/api/auth/register",
        json={
            "username": reg["username"],
            "password": PASSWORD,
            "email": "other@example.org",
            "full_name": "X",
            "role": "GP",
        },
    )
    expect_error(response, 409, "M_USER_IN_USE")


def test_taken_email_is_409_and_username_stays_free(api: Api) -> None:
    reg = api.register()
    username = f"u_{secrets.token_hex(4)}"
    response = api.call(
        "POST",
        "/api/auth/register",
        json={
            "username": username,
            "password": PASSWORD,
            "email": reg["email"].upper(),
            "full_name": "X",
            "role": "GP",
        },
    )
    expect_error(response, 409, "M_THREEPID_IN_USE")
    api.register(username)  # nothing half-made blocks the name


@pytest.mark.parametrize(
    "change, errcode, mentions",
    [
        ({"role": "Wizard"}, "M_INVALID_PARAM", "MBBS Student"),
        ({"password": "short"}, "M_PASSWORD_TOO_SHORT", "8"),
        ({"email": "not-an-email"}, "M_INVALID_PARAM", "email"),
        ({"username": "Has Spaces"}, "M_INVALID_USERNAME", ""),
        ({"full_name": ""}, "M_INVALID_PARAM", "full_name"),
        ({"bio": 42}, "M_INVALID_PARAM", "bio"),
        ({"favourite_colour": "blue"}, "M_INVALID_PARAM", "favourite_colour"),
    ],
)
def test_bad_registration_is_400_and_leaves_nothing(api: Api, change: dict, errcode: str, mentions: str) -> None:
    username = f"u_{secrets.token_hex(4)}"
    body = {
        "username": username,
        "password": PASSWORD,
        "email": f"{username}@example.org",
        "full_name": "Dr X",
        "role": "GP",
        **change,
    }
    error = expect_error(api.call("POST", "/api/auth/register", json=body), 400, errcode)
    assert mentions in error["error"]
    if "username" not in change:
        api.register(username)  # the username and e-mail were not taken by the failed attempt


@pytest.mark.parametrize("missing", ["username", "password", "email", "full_name", "role"])
def test_missing_registration_field_is_named(api: Api, missing: str) -> None:
    body = {"username": "x1", "password": PASSWORD, "email": "x1@example.org", "full_name": "X", "role": "GP"}
    del body[missing]
    error = expect_error(api.call("POST", "/api/auth/register", json=body), 400, "M_MISSING_PARAM")
    assert missing in error["error"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_malformed_body_is_400_not_json(api: Api, raw: bytes) -> None:
    expect_error(api.call("POST", "/api/auth/register", data=raw), 400, "M_NOT_JSON")


# --- login, logout, refresh -------------------------------------------------------------------


def test_login_by_username_and_by_email(api: Api) -> None:
    reg = api.register()
    by_name = api.call("POST", "/api/auth/login", json={"username": reg["username"], "password": PASSWORD})
    by_mxid = api.call("POST", "/api/auth/login", json={"username": reg["user_id"], "password": PASSWORD})
    by_email = api.call("POST", "/api/auth/login", json={"email": reg["email"].upper(), "password": PASSWORD})
    for response in (by_name, by_mxid, by_email):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user_id"] == reg["user_id"]
        assert body["user"]["user"]["email"] == reg["email"]
        assert body["refresh_token"] and body["expires_in_ms"] > 0
        assert whoami(api, body["access_token"]) == 200


def test_bad_credentials_are_403(api: Api) -> None:
    reg = api.register()
    expect_error(
        api.call("POST", "/api/auth/login", json={"username": reg["username"], "password": "wrong password"}),
        403,
        "M_FORBIDDEN",
    )
    expect_error(
        api.call("POST", "/api/auth/login", json={"username": "nobody_here", "password": PASSWORD}), 403, "M_FORBIDDEN"
    )
    expect_error(
        api.call("POST", "/api/auth/login", json={"email": "nobody@example.org", "password": PASSWORD}),
        403,
        "M_FORBIDDEN",
    )


def test_login_needs_exactly_one_identifier(api: Api) -> None:
    expect_error(api.call("POST", "/api/auth/login", json={"password": PASSWORD}), 400, "M_MISSING_PARAM")
    both = {"username": "a", "email": "a@example.org", "password": PASSWORD}
    expect_error(api.call("POST", "/api/auth/login", json=both), 400, "M_MISSING_PARAM")


def test_repeated_failed_logins_are_rate_limited(api: Api) -> None:
    reg = api.register()
    statuses = [
        api.call("POST", "/api/auth/login", json={"username": reg["username"], "password": "wrong"}).status_code
        for _ in range(6)
    ]
    assert statuses[0] == 403
    assert 429 in statuses, statuses
    limited = api.call("POST", "/api/auth/login", json={"username": reg["username"], "password": "wrong"})
    body = expect_error(limited, 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0


def test_logout_invalidates_only_that_session(api: Api) -> None:
    reg = api.register()
    other = api.call("POST", "/api/auth/login", json={"username": reg["username"], "password": PASSWORD}).json()
    assert api.call("POST", "/api/auth/logout", token=reg["access_token"]).status_code == 200
    assert whoami(api, reg["access_token"]) == 401
    assert whoami(api, other["access_token"]) == 200
    expect_error(api.call("POST", "/api/auth/logout", token=reg["access_token"]), 401, "M_UNKNOWN_TOKEN")


def test_refresh_rotates_tokens(api: Api) -> None:
    reg = api.register()
    rotated = api.call("POST", "/api/auth/refresh", json={"refresh_token": reg["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["access_token"] != reg["access_token"] and new["refresh_token"] != reg["refresh_token"]
    assert new["expires_in_ms"] > 0
    assert whoami(api, new["access_token"]) == 200
    # Once the new pair is used, the old refresh token is spent (Synapse answers 403 for that).
    expect_error(
        api.call("POST", "/api/auth/refresh", json={"refresh_token": reg["refresh_token"]}), 403, "M_FORBIDDEN"
    )
    assert api.call("POST", "/api/auth/refresh", json={"refresh_token": new["refresh_token"]}).status_code == 200


def test_refresh_with_garbage_is_401(api: Api) -> None:
    expect_error(api.call("POST", "/api/auth/refresh", json={"refresh_token": "syr_nonsense"}), 401, "M_UNKNOWN_TOKEN")
    expect_error(api.call("POST", "/api/auth/refresh", json={}), 400, "M_MISSING_PARAM")


# --- own profile -------------------------------------------------------------------------------


def test_profile_needs_a_valid_token(api: Api) -> None:
    expect_error(api.call("GET", "/api/auth/profile"), 401, "M_MISSING_TOKEN")
    expect_error(api.call("GET", "/api/auth/profile", token="syt_not_a_token"), 401, "M_UNKNOWN_TOKEN")


def test_profile_update_reaches_matrix(api: Api) -> None:
    reg = api.register()
    token = reg["access_token"]
    response = api.call(
        "PUT",
        "/api/auth/profile",
        token=token,
        json={
            "full_name": "Dr. Renamed",
            "bio": "Now in paediatrics",
            "specialization": "Paediatrics",
            "role": "Consultant",
            "profile_image": "mxc://medchat.test/abcDEF123",
        },
    )
    assert response.status_code == 200, response.text
    user = response.json()
    assert (user["user"]["full_name"], user["bio"], user["specialization"], user["role"]) == (
        "Dr. Renamed",
        "Now in paediatrics",
        "Paediatrics",
        "Consultant",
    )
    assert user["profile_image"] == "mxc://medchat.test/abcDEF123"
    assert user["updated_at"] >= user["created_at"]
    matrix = api.call("GET", f"/_matrix/client/v3/profile/{reg['user_id']}", token=token).json()
    assert (matrix["displayname"], matrix["avatar_url"]) == ("Dr. Renamed", "mxc://medchat.test/abcDEF123")
    assert matrix["org.medchat.profile"]["specialization"] == "Paediatrics"
    assert api.call("GET", "/api/auth/profile", token=token).json() == user


def test_profile_update_bad_input_changes_nothing(api: Api) -> None:
    reg = api.register()
    token = reg["access_token"]
    before = api.call("GET", "/api/auth/profile", token=token).json()
    expect_error(
        api.call("PUT", "/api/auth/profile", token=token, json={"role": "Wizard", "bio": "x"}), 400, "M_INVALID_PARAM"
    )
    expect_error(
        api.call("PUT", "/api/auth/profile", token=token, json={"email": "new@example.org"}), 400, "M_INVALID_PARAM"
    )
    expect_error(
        api.call("PUT", "/api/auth/profile", token=token, json={"profile_image": "https://evil.example/x.png"}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(api.call("PUT", "/api/auth/profile", token=token, json={}), 400, "M_INVALID_PARAM")
    assert api.call("GET", "/api/auth/profile", token=token).json() == before


def test_unknown_api_path_is_json_404(api: Api) -> None:
    expect_error(api.call("GET", "/api/auth/nothing-here"), 404, "M_UNRECOGNIZED")
    expect_error(api.call("DELETE", "/api/auth/login"), 405, "M_UNRECOGNIZED")


def test_matrix_only_account_logs_in_and_gets_a_profile(api: Api, server: SynapseServer) -> None:
    """An account made outside the app (Synapse's admin API) works on the app's API too."""
    username = f"m_{secrets.token_hex(4)}"
    user_id = server.register_matrix_user(username)["user_id"]
    login = api.call("POST", "/api/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["user"]["role"] is None
    token = login.json()["access_token"]
    expect_error(api.call("PUT", "/api/auth/profile", token=token, json={"bio": "hi"}), 400, "M_MISSING_PARAM")
    updated = api.call("PUT", "/api/auth/profile", token=token, json={"role": "Nurse", "bio": "hi"})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["id"], updated.json()["role"], updated.json()["bio"]) == (user_id, "Nurse", "hi")
