"""The practitioner directory: listing, filters, ranked search, hiding, and the Matrix mirror."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from harness import (
    PASSWORD,
    TEST_RATE_LIMITS,
    Api,
    SynapseServer,
    expect_error,
    fresh_database,
    nio_login,
    nio_request,
    register_admin,
    run,
)

PROFILE_FIELD = "org.medchat.profile"


def token() -> str:
    """A word no other test uses, so each test sees only its own users in a shared server."""
    return "zq" + secrets.token_hex(3)


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [u["id"] for u in response.json()["results"]]


def users(path: str) -> str:
    return "/api/chat/users" + path


def matrix_directory(server: SynapseServer, user: dict[str, Any], term: str) -> list[str]:
    """User ids Element's "start chat" search shows `user` for `term` (via matrix-nio)."""

    async def search() -> list[str]:
        client = await nio_login(server.base_url, user["user_id"], PASSWORD)
        try:
            status, body = await nio_request(
                client, "POST", "/_matrix/client/v3/user_directory/search", {"search_term": term, "limit": 50}
            )
        finally:
            await client.close()
        assert status == 200, body
        return [r["user_id"] for r in body["results"]]

    return run(search())


def test_filters_and_cursor_pagination(api: Api) -> None:
    inst = f"Hospital {token()}"
    a = api.register(full_name="Aaron Able", institution=inst, role="GP", specialization="Dermatology")
    b = api.register(full_name="Beth Baker", institution=inst, role="Nurse", specialization="Cardiology")
    c = api.register(full_name="Cara Cole", institution=inst, role="GP", specialization="Cardiology")
    t = a["access_token"]

    everyone = ids(api.call("GET", users(f"?institution={quote(inst)}"), token=t))
    assert everyone == [a["user_id"], b["user_id"], c["user_id"]]  # name order
    assert ids(api.call("GET", users(f"?institution={quote(inst)}&role=GP"), token=t)) == [a["user_id"], c["user_id"]]
    assert ids(api.call("GET", users(f"?institution={quote(inst)}&specialization=Cardiology&role=Nurse"), token=t)) == [
        b["user_id"]
    ]
    assert ids(api.call("GET", users(f"/filter?role=GP&institution={quote(inst)}"), token=t)) == [
        a["user_id"],
        c["user_id"],
    ]
    assert ids(api.call("GET", users(f"?institution={quote(inst)}&verified=true"), token=t)) == []
    assert ids(api.call("GET", users(f"?institution={quote(inst)}&level=unverified"), token=t)) == everyone

    seen, cursor = [], None
    while True:
        page = api.call(
            "GET", users(f"?institution={quote(inst)}&limit=2" + (f"&cursor={cursor}" if cursor else "")), token=t
        ).json()
        assert len(page["results"]) <= 2
        seen += [u["id"] for u in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everyone

    institutions = api.call("GET", "/api/chat/institutions", token=t).json()["results"]
    assert {"name": inst, "member_count": 3} in institutions


def test_email_only_for_self_and_admins(api: Api, server: SynapseServer) -> None:
    a, b = api.register(), api.register()
    admin = register_admin(server)
    other = api.call("GET", users(f"/{quote(b['user_id'])}"), token=a["access_token"]).json()
    assert other["user"]["email"] is None and "hidden" not in other
    own = api.call("GET", users(f"/{quote(b['user_id'])}"), token=b["access_token"]).json()
    assert own["user"]["email"] == b["email"]
    by_admin = api.call("GET", users(f"/{quote(b['user_id'])}"), token=admin["access_token"]).json()
    assert by_admin["user"]["email"] == b["email"]
    listed = api.call("GET", users(f"/search?q={b['username']}"), token=a["access_token"]).json()["results"]
    assert [u["user"]["email"] for u in listed if u["id"] == b["user_id"]] == [None]


def test_search_is_prefix_case_insensitive_and_ranked(api: Api) -> None:
    tok = token()
    name = f"{tok.title()} Ward"
    exact = api.register(full_name=name, role="Consultant")
    name_prefix = api.register(full_name=f"{name}ell Jones", role="Intern")
    in_specialty = api.register(full_name="Someone Else", specialization=f"{tok}ology", role="Consultant")
    by_username = api.register(f"{tok}_user", full_name="Nobody Special")
    t = exact["access_token"]

    found = ids(api.call("GET", users(f"/search?q={quote(name.upper())}"), token=t))
    assert found[:2] == [exact["user_id"], name_prefix["user_id"]]

    found = ids(api.call("GET", users(f"/search?q={tok[:4].upper()}"), token=t))
    assert set(found) >= {exact["user_id"], name_prefix["user_id"], in_specialty["user_id"], by_username["user_id"]}
    # Name matches rank above username and specialization matches.
    assert (
        found.index(name_prefix["user_id"]) < found.index(by_username["user_id"]) < found.index(in_specialty["user_id"])
    )

    assert ids(api.call("GET", users(f"/search?q={tok}&role=Consultant"), token=t)) == [
        exact["user_id"],
        in_specialty["user_id"],
    ]
    initial = api.call("GET", users(f"/search?q={tok[0].upper()}&limit=100"), token=t).json()["results"]
    assert {exact["user_id"], name_prefix["user_id"]} <= {u["id"] for u in initial}
    assert all(u["user"]["full_name"].lower().startswith(tok[0]) for u in initial)  # one letter: names only
    assert ids(api.call("GET", users(f"/search?q={tok}%20ward%20jon"), token=t)) == [name_prefix["user_id"]]
    assert ids(api.call("GET", users(f"/search?q={tok}&limit=1"), token=t)) == [exact["user_id"]]
    page = api.call("GET", users(f"/search?q={tok}&limit=1"), token=t).json()
    second = api.call("GET", users(f"/search?q={tok}&limit=1&cursor={page['next_cursor']}"), token=t)
    assert ids(second) == [name_prefix["user_id"]]


def test_element_side_rename_is_searchable(api: Api, server: SynapseServer) -> None:
    user = api.register()
    new_name = f"{token().title()} Renamed"

    async def rename() -> None:
        client = await nio_login(server.base_url, user["user_id"], PASSWORD)
        try:
            await client.set_displayname(new_name)
        finally:
            await client.close()

    run(rename())
    found = api.call("GET", users(f"/search?q={quote(new_name)}"), token=user["access_token"])
    assert ids(found) == [user["user_id"]]
    assert found.json()["results"][0]["user"]["full_name"] == new_name


def test_hidden_users_leave_both_directories(api: Api, server: SynapseServer) -> None:
    tok = token()
    inst = f"Clinic {tok}"
    seeker = api.register(institution=inst)
    shy = api.register(full_name=f"{tok.title()} Shy", institution=inst)
    t, shy_path = seeker["access_token"], users(f"/{quote(shy['user_id'])}")
    assert shy["user_id"] in ids(api.call("GET", users(f"/search?q={tok}"), token=t))
    assert shy["user_id"] in matrix_directory(server, seeker, tok)

    hidden = api.call("PUT", shy_path, token=shy["access_token"], json={"hidden": True})
    assert hidden.status_code == 200 and hidden.json()["hidden"] is True
    assert shy["user_id"] not in ids(api.call("GET", users(f"/search?q={tok}"), token=t))
    assert shy["user_id"] not in ids(api.call("GET", users(f"?institution={quote(inst)}"), token=t))
    assert shy["user_id"] not in ids(api.call("GET", users(f"/filter?institution={quote(inst)}"), token=t))
    assert {"name": inst, "member_count": 1} in api.call("GET", "/api/chat/institutions", token=t).json()["results"]
    expect_error(api.call("GET", shy_path, token=t), 404, "M_NOT_FOUND")
    assert api.call("GET", shy_path, token=shy["access_token"]).status_code == 200  # still there for themselves
    assert shy["user_id"] not in matrix_directory(server, seeker, tok)

    api.call("PUT", shy_path, token=shy["access_token"], json={"hidden": False})
    assert shy["user_id"] in ids(api.call("GET", users(f"/search?q={tok}"), token=t))
    assert shy["user_id"] in matrix_directory(server, seeker, tok)


def test_profile_fields_visible_to_matrix_clients(api: Api, server: SynapseServer) -> None:
    user = api.register(role="Pharmacist", institution="Mirror General", specialization="Oncology")
    viewer = api.register()
    changed = api.call(
        "PUT", users(f"/{quote(user['user_id'])}"), token=user["access_token"], json={"specialization": "Haematology"}
    )
    assert changed.status_code == 200, changed.text

    async def read_and_tamper() -> tuple[Any, int, Any]:
        reader = await nio_login(server.base_url, viewer["user_id"], PASSWORD)
        owner = await nio_login(server.base_url, user["user_id"], PASSWORD)
        try:
            profile = await reader.get_profile(user["user_id"])
            forged = {"role": "Consultant", "verification_level": "license_verified", "is_verified": True}
            status, _ = await nio_request(
                owner,
                "PUT",
                f"/_matrix/client/v3/profile/{quote(user['user_id'])}/{PROFILE_FIELD}",
                {PROFILE_FIELD: forged},
            )
            after = await reader.get_profile(user["user_id"])
            return profile.other_info, status, after.other_info
        finally:
            await reader.close()
            await owner.close()

    before, tamper_status, after = run(read_and_tamper())
    assert before[PROFILE_FIELD] == {
        "role": "Pharmacist",
        "institution": "Mirror General",
        "specialization": "Haematology",
        "verification_level": "unverified",
        "is_verified": False,
    }
    # A Matrix client may not write the module's field (ORG_MEDCHAT_MODULE_FIELD); it is unchanged.
    assert tamper_status == 403
    assert after[PROFILE_FIELD] == before[PROFILE_FIELD]


def test_online_filter_follows_matrix_presence(api: Api) -> None:
    inst = f"Ward {token()}"
    online, offline = api.register(institution=inst), api.register(institution=inst)
    set_presence = api.call(
        "PUT",
        f"/_matrix/client/v3/presence/{quote(online['user_id'])}/status",
        token=online["access_token"],
        json={"presence": "online"},
    )
    assert set_presence.status_code == 200, set_presence.text
    t = offline["access_token"]
    assert ids(api.call("GET", users(f"?institution={quote(inst)}&online=true"), token=t)) == [online["user_id"]]
    assert ids(api.call("GET", users(f"?institution={quote(inst)}&online=false"), token=t)) == [offline["user_id"]]
    assert api.call("GET", users(f"/{quote(online['user_id'])}"), token=t).json()["is_online"] is True


def test_edit_permissions(api: Api, server: SynapseServer) -> None:
    a, b = api.register(), api.register()
    admin = register_admin(server)
    b_path = users(f"/{quote(b['user_id'])}")
    expect_error(api.call("PUT", b_path, token=a["access_token"], json={"bio": "mine now"}), 403, "M_FORBIDDEN")
    by_admin = api.call(
        "PUT", b_path, token=admin["access_token"], json={"bio": "fixed by admin", "full_name": "Dr. Renamed"}
    )
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["bio"] == "fixed by admin" and by_admin.json()["user"]["full_name"] == "Dr. Renamed"
    own = api.call("PUT", b_path, token=b["access_token"], json={"role": "Consultant"})
    assert own.status_code == 200 and own.json()["role"] == "Consultant"
    unknown = users(f"/{quote('@nobody_' + secrets.token_hex(3) + ':medchat.test')}")
    expect_error(api.call("GET", unknown, token=a["access_token"]), 404, "M_NOT_FOUND")
    expect_error(api.call("PUT", unknown, token=admin["access_token"], json={"bio": "x"}), 404, "M_NOT_FOUND")
    expect_error(api.call("PUT", b_path, token=b["access_token"], json={"role": "Wizard"}), 400, "M_INVALID_PARAM")
    expect_error(api.call("PUT", b_path, token=b["access_token"], json={"hidden": "yes"}), 400, "M_INVALID_PARAM")
    expect_error(api.call("GET", users(""), token=None), 401, "M_MISSING_TOKEN")


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("?role=Wizard", "MBBS Student"),
        ("?level=godlike", "license_verified"),
        ("/filter?role=Wizard", "Pharmacist"),
        ("?limit=101", "100"),
        ("?limit=0", "limit"),
        ("?limit=ten", "limit"),
        ("?verified=maybe", "verified"),
        ("?online=perhaps", "online"),
        ("?cursor=not-a-cursor", "cursor"),
        ("/search?q=", "q"),
        ("/search?q=%20%20", "q"),
        ("/search?q=" + "a" * 201, "q"),
        ("/search?q=-%2F-", "q"),
        ("/search?q=ab&limit=500", "limit"),
        ("/search?q=ab&role=Wizard", "Intern"),
    ],
)
def test_bad_directory_queries(api: Api, query: str, mentions: str, caller: dict[str, Any]) -> None:
    body = expect_error(api.call("GET", users(query), token=caller["access_token"]), 400, "M_INVALID_PARAM")
    assert mentions in body["error"]


def test_directory_search_requires_q(api: Api, caller: dict[str, Any]) -> None:
    """`q` is a required parameter of the search, and that is enforced, not only documented."""
    for query in ("/search", "/search?role=Nurse", "/search?scope=federation"):
        body = expect_error(api.call("GET", users(query), token=caller["access_token"]), 400, "M_MISSING_PARAM")
        assert "q" in body["error"]
    body = expect_error(
        api.call("GET", users("/search?q=ab&scope=galaxy"), token=caller["access_token"]), 400, "M_INVALID_PARAM"
    )
    assert "scope" in body["error"]


@pytest.fixture(scope="module")
def caller(server: SynapseServer) -> dict[str, Any]:
    return Api(server.base_url).register()


# --- a server that keeps unverified users out of the directory --------------------------------


@pytest.fixture(scope="module")
def gated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    workdir: Path = tmp_path_factory.mktemp("gated")
    gate = {"directory_listing_level": "identity_verified", "directory_search_level": "identity_verified"}
    with fresh_database() as database_url:
        hs = SynapseServer(workdir, database_url=database_url, overrides=TEST_RATE_LIMITS, module_overrides=gate)
        hs.start()
        yield hs
        hs.stop()


def test_config_can_require_a_level_for_the_directory(gated_server: SynapseServer) -> None:
    api = Api(gated_server.base_url)
    tok = token()
    admin = register_admin(gated_server)
    newcomer = api.register(full_name=f"{tok.title()} New")
    checked = api.register(full_name=f"{tok.title()} Checked")
    request = api.call(
        "POST",
        "/api/chat/verification/requests",
        token=checked["access_token"],
        json={"registration_body": "GMC", "license_number": "123"},
    )
    approve = api.call(
        "POST", f"/api/chat/verification/requests/{request.json()['id']}/approve", token=admin["access_token"], json={}
    )
    assert approve.status_code == 200, approve.text

    body = expect_error(api.call("GET", users(f"/search?q={tok}"), token=newcomer["access_token"]), 403, "M_FORBIDDEN")
    assert "identity_verified" in body["error"]
    expect_error(api.call("GET", users(""), token=newcomer["access_token"]), 403, "M_FORBIDDEN")
    assert matrix_directory(gated_server, newcomer, tok) == []

    assert ids(api.call("GET", users(f"/search?q={tok}"), token=checked["access_token"])) == [checked["user_id"]]
    # Synapse leaves the searcher out of their own results: an admin (exempt from the gate) looks.
    assert matrix_directory(gated_server, admin, tok) == [checked["user_id"]]
    expect_error(
        api.call("GET", users(f"/{quote(newcomer['user_id'])}"), token=checked["access_token"]), 404, "M_NOT_FOUND"
    )
