"""Bad input is a 400 naming what is wrong, never a 500 and never a half-done write (issue 16).

The sweeps run over every operation of the server's own OpenAPI document, so an endpoint added
later is covered without a line here: a lone UTF-16 surrogate or U+0000 in a body, a query
parameter or a path segment is 400 M_INVALID_PARAM naming the field, parameter or path; JSON
nested too deep is 400 M_NOT_JSON. The write tests then check that a refused update changed nothing.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from harness import TEST_RATE_LIMITS, Api, SynapseServer, expect_error, licence_verified

SURROGATE_JSON = "\\ud800"  # the JSON escape of a lone high surrogate
SURROGATE_URL = "%ED%A0%80"  # its bytes in CESU-8: no UTF-8 text
JSON_HEADERS = {"Content-Type": "application/json"}


def operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    document = api.call("GET", "/api/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete") and path != "/api/chat/ws"
    ]


# Well-formed values for the path parameters, so the body or query is what gets refused.
PLAIN_PARAMS = {
    "room_id": quote("!nope:medchat.test"),
    "user_id": quote("@nobody:medchat.test"),
    "id": quote("@nobody:medchat.test"),
    "event_id": quote("$nope"),
    "message_id": quote("$nope"),
    "target": "file",
}


def with_params(path: str, value: str | None = None) -> str:
    """The path with every `{name}` segment set to `value` (percent-encoded), or a plain one."""
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1 : end]
        path = path[:start] + (value if value is not None else PLAIN_PARAMS.get(name, "x")) + path[end + 1 :]
    return path


def json_operations(api: Api) -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path, operation in operations(api)
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


@pytest.fixture(scope="module")
def user(server: SynapseServer) -> dict[str, Any]:
    return Api(server.base_url).register()


def test_a_lone_surrogate_anywhere_in_any_body_is_refused_naming_its_path(api: Api, user: dict[str, Any]) -> None:
    bodies = {
        f'{{"probe": {{"inner": ["ok", "a{SURROGATE_JSON}"]}}}}': "probe.inner[1]",
        f'{{"full_name": "{SURROGATE_JSON}"}}': "full_name",
        f'{{"probe{SURROGATE_JSON}": 1}}': "field name",
        f'{{"participants": ["{SURROGATE_JSON}\\u0000"]}}': "participants[0]",
        '{"probe": "nul \\u0000 here"}': "probe",
    }
    for method, path in json_operations(api):
        for body, named in bodies.items():
            response = api.call(
                method, with_params(path), token=user["access_token"], data=body.encode(), headers=JSON_HEADERS
            )
            error = expect_error(response, 400, "M_INVALID_PARAM")["error"]
            assert named in error, (method, path, body, error)


def test_raw_cesu8_bytes_in_a_body_are_refused_like_the_escape(api: Api, user: dict[str, Any]) -> None:
    body = b'{"full_name": "Dr. \xed\xa0\x80"}'
    response = api.call("PUT", "/api/auth/profile", token=user["access_token"], data=body, headers=JSON_HEADERS)
    assert "full_name" in expect_error(response, 400, "M_INVALID_PARAM")["error"]


@pytest.mark.parametrize("depth", [65, 100, 10000])
def test_json_nested_too_deep_is_not_json(api: Api, user: dict[str, Any], depth: int) -> None:
    for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        for method, path in json_operations(api):
            response = api.call(
                method, with_params(path), token=user["access_token"], data=body.encode(), headers=JSON_HEADERS
            )
            assert "nested deeper than 64" in expect_error(response, 400, "M_NOT_JSON")["error"], (method, path)


def test_json_nested_64_deep_is_parsed(api: Api, user: dict[str, Any]) -> None:
    """At the limit the body is read, and refused only for what it says (an unknown field)."""
    body = '{"probe":' + "[" * 63 + "]" * 63 + "}"
    response = api.call(
        "PUT", "/api/auth/profile", token=user["access_token"], data=body.encode(), headers=JSON_HEADERS
    )
    assert "Unknown field: probe" in expect_error(response, 400, "M_INVALID_PARAM")["error"]


@pytest.mark.parametrize("body", ["NaN", '{"a": Infinity}', '{"a": -1e999}', '{"a": ' + "9" * 5000 + "}"])
def test_numbers_json_does_not_have_are_not_json(api: Api, user: dict[str, Any], body: str) -> None:
    response = api.call(
        "PUT", "/api/auth/profile", token=user["access_token"], data=body.encode(), headers=JSON_HEADERS
    )
    expect_error(response, 400, "M_NOT_JSON")


@pytest.mark.parametrize("value", [SURROGATE_URL, "%00", "%FF"])
def test_a_bad_query_parameter_is_refused_naming_it(api: Api, user: dict[str, Any], value: str) -> None:
    checked = 0
    for method, path, operation in operations(api):
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            query = f"?{parameter['name']}={value}"
            response = api.call(method, with_params(path) + query, token=user["access_token"])
            error = expect_error(response, 400, "M_INVALID_PARAM")["error"]
            assert f"parameter {parameter['name']}" in error, (method, path, error)
            checked += 1
    assert checked > 30


def test_an_unknown_query_parameter_is_refused_naming_it(api: Api, user: dict[str, Any]) -> None:
    """Every operation, with query parameters of its own or none: a parameter it does not take is
    a 400 naming it (issue 17), before anything else is looked at (so no 401 for the public ones)."""
    checked = 0
    for method, path, operation in operations(api):
        declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        response = api.call(method, with_params(path) + "?foo=1&zz%20top=2", token=user["access_token"])
        error = expect_error(response, 400, "M_INVALID_PARAM")["error"]
        assert error == "Unknown parameter: foo, zz top", (method, path, error)
        if declared:  # the declared ones beside it change nothing
            response = api.call(method, with_params(path) + f"?{declared[0]}=x&foo=1", token=user["access_token"])
            assert "Unknown parameter: foo" in expect_error(response, 400, "M_INVALID_PARAM")["error"]
        checked += 1
    assert checked > 60


def test_the_access_token_may_come_in_the_query(api: Api, user: dict[str, Any]) -> None:
    """Matrix clients may send the token as `?access_token=` (Synapse takes it): no route refuses it."""
    token = quote(user["access_token"])
    for path in ("/api/chat/rooms", "/api/chat/contacts?limit=5", "/api/chat/notifications/unread-count"):
        joiner = "&" if "?" in path else "?"
        response = api.call("GET", f"{path}{joiner}access_token={token}")
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize("value", [SURROGATE_URL, "%00", "ok%C3"])
def test_a_bad_path_segment_is_refused_naming_the_path(api: Api, user: dict[str, Any], value: str) -> None:
    templated = [(method, path) for method, path, _ in operations(api) if "{" in path]
    assert len(templated) > 20
    for method, path in templated:
        response = api.call(method, with_params(path, value), token=user["access_token"], json={})
        assert "path" in expect_error(response, 400, "M_INVALID_PARAM")["error"], (method, path)


def test_raw_bytes_in_the_request_line_are_a_bad_request(server: SynapseServer, user: dict[str, Any]) -> None:
    """What `requests` would percent-encode, sent as it is: Twisted answers 400 before routing."""
    request = (
        b"GET /api/chat/rooms/\xed\xa0\x80 HTTP/1.1\r\nHost: localhost\r\n"
        + f"Authorization: Bearer {user['access_token']}\r\nConnection: close\r\n\r\n".encode()
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"400", answer


def encoded(cursor: str) -> str:
    """A directory cursor as the server makes them (URL-safe base64 of JSON, unpadded)."""
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/api/chat/users/search?q=dr&cursor=", encoded('{"offset": 100000000000000000000000000000}')),
        ("/api/chat/users/search?q=dr&cursor=", encoded('{"offset": 9223372036854775808}')),
        ("/api/chat/users?cursor=", encoded(f'{{"after": ["{SURROGATE_JSON}", "x"]}}')),
        ("/api/chat/users?cursor=", encoded('{"after": ["a\\u0000", "x"]}')),
        ("/api/chat/users?cursor=", encoded("[" * 300 + "]" * 300)),
        ("/api/chat/rooms/{room}/messages?cursor=", "s99999999999999999999_1"),
    ],
)
def test_a_forged_cursor_is_refused_naming_it(api: Api, user: dict[str, Any], path: str, cursor: str) -> None:
    """Cursors are opaque, but a client can send anything: positions no database column holds and
    text that cannot be stored are a 400, not the database's error."""
    if "{room}" in path:
        body = {"type": "group", "name": "Cursors"}
        room = api.call("POST", "/api/chat/rooms", token=user["access_token"], json=body).json()["id"]
        path = path.replace("{room}", quote(room, safe=""))
    response = api.call("GET", path + cursor, token=user["access_token"])
    assert "cursor" in expect_error(response, 400, "M_INVALID_PARAM")["error"]


# --- nothing half-written ------------------------------------------------------------------------


def test_a_refused_profile_update_changes_nothing(api: Api) -> None:
    user = api.register()
    token = user["access_token"]
    before = api.call("GET", "/api/auth/profile", token=token).json()
    for body in (
        f'{{"full_name": "Dr. Renamed", "bio": "{SURROGATE_JSON}"}}',
        f'{{"full_name": "Dr. Renamed", "institution": "Elsewhere", "specialization": "x{SURROGATE_JSON}"}}',
    ):
        response = api.call("PUT", "/api/auth/profile", token=token, data=body.encode(), headers=JSON_HEADERS)
        expect_error(response, 400, "M_INVALID_PARAM")
        assert api.call("GET", "/api/auth/profile", token=token).json() == before
    matrix = api.call("GET", f"/_matrix/client/v3/profile/{quote(user['user_id'])}/displayname", token=token)
    assert matrix.json()["displayname"] == before["user"]["full_name"]


def test_a_refused_room_update_changes_nothing(api: Api) -> None:
    owner = api.register()
    token = owner["access_token"]
    created = api.call("POST", "/api/chat/rooms", token=token, json={"type": "group", "name": "Ward 7"})
    assert created.status_code == 201, created.text
    path = f"/api/chat/rooms/{quote(created.json()['id'], safe='')}"
    before = api.call("GET", path, token=token).json()
    body = f'{{"name": "Ward 8", "topic": "{SURROGATE_JSON}"}}'
    response = api.call("PUT", path, token=token, data=body.encode(), headers=JSON_HEADERS)
    assert "topic" in expect_error(response, 400, "M_INVALID_PARAM")["error"]
    after = api.call("GET", path, token=token).json()
    assert (after["name"], after["topic"]) == (before["name"], before["topic"]) == ("Ward 7", None)


def joined_group(api: Api, owner: dict[str, Any], *members: dict[str, Any]) -> str:
    """A group of `owner` that `members` have joined; its API path."""
    body = {"type": "group", "name": "Ward 7", "participants": [m["user_id"] for m in members]}
    created = api.call("POST", "/api/chat/rooms", token=owner["access_token"], json=body)
    assert created.status_code == 201, created.text
    path = f"/api/chat/rooms/{quote(created.json()['id'], safe='')}"
    for member in members:
        joined = api.call("POST", f"{path}/join", token=member["access_token"], json={})
        assert joined.status_code == 200, joined.text
    return path


def set_power_levels(api: Api, owner: dict[str, Any], room_path: str, users: dict[str, int], **events: int) -> None:
    room_id = api.call("GET", room_path, token=owner["access_token"]).json()["id"]
    state = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.power_levels/"
    content = api.call("GET", state, token=owner["access_token"]).json()
    content["users"] = {**content.get("users", {}), **users}
    content["events"] = {**content.get("events", {}), **{k.replace("_", "."): v for k, v in events.items()}}
    assert api.call("PUT", state, token=owner["access_token"], json=content).status_code == 200


def test_a_room_update_the_power_levels_refuse_in_part_changes_nothing(api: Api) -> None:
    """Bob may rename the room but not change its topic: asking for both does neither."""
    owner, bob = api.register(), api.register()
    path = joined_group(api, owner, bob)
    set_power_levels(api, owner, path, {bob["user_id"]: 50}, m_room_topic=100)
    refused = api.call("PUT", path, token=bob["access_token"], json={"name": "Ward 8", "topic": "Night shift"})
    assert "topic" in expect_error(refused, 403, "M_FORBIDDEN")["error"]
    room = api.call("GET", path, token=bob["access_token"]).json()
    assert (room["name"], room["topic"]) == ("Ward 7", None)
    renamed = api.call("PUT", path, token=bob["access_token"], json={"name": "Ward 8"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ward 8", renamed.text


def test_closing_a_group_with_another_admin_removes_no_one(api: Api) -> None:
    """Bob (an admin) cannot remove the creator, so he cannot close the group: no one is removed."""
    owner, bob, carol = api.register(), api.register(), api.register()
    path = joined_group(api, owner, bob, carol)
    made_admin = api.call(
        "POST", f"{path}/participants", token=owner["access_token"], json={"user_id": bob["user_id"], "role": "admin"}
    )
    assert made_admin.status_code == 200, made_admin.text
    refused = api.call("DELETE", f"{path}?close=true", token=bob["access_token"])
    expect_error(refused, 403, "M_FORBIDDEN")
    members = api.call("GET", f"{path}/participants", token=owner["access_token"]).json()["results"]
    assert {p["id"]: p["membership"] for p in members} == {
        owner["user_id"]: "join",
        bob["user_id"]: "join",
        carol["user_id"]: "join",
    }


@pytest.fixture(scope="module")
def avatar_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A server that takes only small PNG avatars (Synapse's `max_avatar_size`, `allowed_avatar_mimetypes`)."""
    limits = {"max_avatar_size": "100K", "allowed_avatar_mimetypes": ["image/png"]}
    hs = SynapseServer(tmp_path_factory.mktemp("avatars"), overrides={**TEST_RATE_LIMITS, **limits})
    hs.start()
    yield hs
    hs.stop()


def test_a_profile_update_whose_avatar_synapse_refuses_changes_nothing(avatar_limited: SynapseServer) -> None:
    """The avatar is refused after the checks of the other fields; the display name, the medical
    fields and the verification level stay as they were."""
    api = Api(avatar_limited.base_url)
    user = licence_verified(api, avatar_limited)
    token = user["access_token"]
    before = api.call("GET", "/api/auth/profile", token=token).json()
    assert before["verification_level"] == "license_verified"
    body = {"full_name": "Dr. Renamed", "institution": "Elsewhere", "profile_image": "mxc://medchat.test/missing"}
    expect_error(api.call("PUT", "/api/auth/profile", token=token, json=body), 403, "M_FORBIDDEN")
    after = api.call("GET", "/api/auth/profile", token=token).json()
    assert after == before
    renamed = api.call("PUT", "/api/auth/profile", token=token, json={"full_name": "Dr. Renamed"})
    assert renamed.status_code == 200 and renamed.json()["user"]["full_name"] == "Dr. Renamed", renamed.text
