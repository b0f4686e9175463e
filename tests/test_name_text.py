"""Names others see refuse control characters and bidi overrides, through the API and through
Matrix clients alike (medchat.wellformed.name_problem; docs/api.md, Conventions)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import quote

import pytest

from harness import Api, expect_error
from medchat.wellformed import NAME_REFUSED, PROSE_REFUSED, name_problem

REFUSED_IN_NAMES = ["\n", "\t", "\x07", "\x7f", "\x85", "\u2028", "\u202e", "\u202d", "\u2066", "\u2069"]
ALLOWED_IN_NAMES = ["José Ñúñez", "د. أحمد\u200f", "👩\u200d⚕️ Dr. Lee", "Dr.\u00a0Ng", "株式会社"]


def test_the_rule_and_its_json_schema_pattern_agree_on_every_code_point() -> None:
    name, prose = re.compile(f"[^{NAME_REFUSED}]*"), re.compile(f"[^{PROSE_REFUSED}]*")
    for code in range(0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        refused = (
            unicodedata.category(char) in ("Cc", "Zl", "Zp") or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
        )
        assert (name_problem(char) is not None) == refused == (name.fullmatch(char) is None), hex(code)
        in_prose = refused and char not in "\t\n\r\u2028\u2029"
        assert (name_problem(char, prose=True) is not None) == in_prose == (prose.fullmatch(char) is None), hex(code)


@pytest.mark.parametrize("char", REFUSED_IN_NAMES)
def test_profile_names_and_institutions_refuse_control_and_bidi_characters(api: Api, char: str) -> None:
    user = api.register()
    token = user["access_token"]
    before = api.call("GET", "/api/auth/profile", token=token).json()
    for field in ("full_name", "institution", "specialization", "role"):
        response = api.call("PUT", "/api/auth/profile", token=token, json={field: f"Dr{char}Smith", "bio": "ok"})
        error = expect_error(response, 400, "M_INVALID_PARAM")["error"]
        assert f"Invalid field {field}: contains" in error and f"U+{ord(char):04X}" in error, error
    assert api.call("GET", "/api/auth/profile", token=token).json() == before
    username = f"ctl_{ord(char):x}_{user['username'][-6:]}"
    register = {"username": username, "password": "pw-12345678", "email": f"{username}@example.org", "role": "Resident"}
    response = api.call("POST", "/api/auth/register", json={**register, "full_name": f"Dr{char}X"})
    assert "full_name" in expect_error(response, 400, "M_INVALID_PARAM")["error"]


def test_names_of_every_script_and_emoji_are_kept(api: Api) -> None:
    user = api.register()
    for name in ALLOWED_IN_NAMES:
        response = api.call("PUT", "/api/auth/profile", token=user["access_token"], json={"full_name": name})
        assert response.status_code == 200 and response.json()["user"]["full_name"] == name, response.text


def test_a_bio_and_a_topic_may_have_lines_but_not_other_controls(api: Api) -> None:
    user = api.register()
    token = user["access_token"]
    ok = api.call("PUT", "/api/auth/profile", token=token, json={"bio": "Line one\n\tLine two\r\n"})
    assert ok.status_code == 200 and ok.json()["bio"] == "Line one\n\tLine two\r\n", ok.text
    for bad in ("bell \x07", "rlo \u202e"):
        expect_error(api.call("PUT", "/api/auth/profile", token=token, json={"bio": bad}), 400, "M_INVALID_PARAM")
    room = api.call("POST", "/api/chat/rooms", token=token, json={"type": "group", "name": "Ward", "topic": "a\nb"})
    assert room.status_code == 201, room.text
    path = f"/api/chat/rooms/{quote(room.json()['id'], safe='')}"
    refused = api.call("PUT", path, token=token, json={"name": "Ward 2", "topic": "x\x1b[31m"})
    assert "topic" in expect_error(refused, 400, "M_INVALID_PARAM")["error"]
    assert api.call("GET", path, token=token).json()["name"] == "Ward"


@pytest.mark.parametrize("body", [{"type": "group", "name": "Ward\u202e7"}, {"type": "case", "name": "Bed\n4"}])
def test_room_names_refuse_them_at_creation(api: Api, body: dict[str, Any]) -> None:
    user = api.register()
    response = api.call("POST", "/api/chat/rooms", token=user["access_token"], json=body)
    assert "Invalid field name" in expect_error(response, 400, "M_INVALID_PARAM")["error"]


def test_matrix_clients_are_held_to_the_same_rule_for_room_names_and_topics(api: Api) -> None:
    user = api.register()
    token = user["access_token"]
    rooms_before = api.call("GET", "/_matrix/client/v3/joined_rooms", token=token).json()["joined_rooms"]
    for create in (
        {"name": "Ward\u202e7"},
        {"topic": "bell\x07"},
        {"initial_state": [{"type": "m.room.name", "state_key": "", "content": {"name": "a\nb"}}]},
    ):
        response = api.call("POST", "/_matrix/client/v3/createRoom", token=token, json=create)
        expect_error(response, 400, "M_INVALID_PARAM")
    assert api.call("GET", "/_matrix/client/v3/joined_rooms", token=token).json()["joined_rooms"] == rooms_before
    room = api.call("POST", "/_matrix/client/v3/createRoom", token=token, json={"name": "Ward 7"}).json()["room_id"]
    state = f"/_matrix/client/v3/rooms/{quote(room)}/state"
    refused = api.call("PUT", f"{state}/m.room.name/", token=token, json={"name": "Ward\u20667"})
    assert "Invalid field name" in expect_error(refused, 400, "M_INVALID_PARAM")["error"]
    refused = api.call("PUT", f"{state}/m.room.topic/", token=token, json={"topic": "\x1b[2J"})
    assert "Invalid field topic" in expect_error(refused, 400, "M_INVALID_PARAM")["error"]
    assert api.call("PUT", f"{state}/m.room.topic/", token=token, json={"topic": "two\nlines"}).status_code == 200
    assert api.call("GET", f"{state}/m.room.name/", token=token).json() == {"name": "Ward 7"}
