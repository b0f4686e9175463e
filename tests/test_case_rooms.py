"""Case rooms: licence-verified members only, and the patient-identifier guard — from the API and
from a Matrix client alike. The detectors are also checked alone, on the corpora in tests/data."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from nio import RoomSendResponse

from harness import Api, expect_error, licence_verified, nio_login, run
from medchat.phi.detectors import KINDS, Guard, nhs_number_valid

DATA = Path(__file__).parent / "data"
GUARD = Guard.from_config(KINDS, [r"\bMRN[:\s#]*\d{6,10}\b", r"\bhospital\s+(?:no|number)[.:\s#]*[A-Z]?\d{6,10}\b"], "GB")


def _lines(name: str) -> list[str]:
    return [line for line in (DATA / name).read_text().splitlines() if line and not line.startswith("#")]


# --- detectors, no server ---------------------------------------------------------------------


@pytest.mark.parametrize("text", _lines("clinical_negative.txt"))
def test_ordinary_clinical_text_passes(text: str) -> None:
    assert GUARD.kinds_in([text]) == []


@pytest.mark.parametrize(("kind", "text"), [line.split("\t") for line in _lines("clinical_positive.txt")])
def test_identifiers_are_caught(kind: str, text: str) -> None:
    assert kind in GUARD.kinds_in([text])


def test_nhs_check_digit() -> None:
    assert nhs_number_valid("9434765919")
    assert not nhs_number_valid("9434765918")  # wrong check digit
    assert not nhs_number_valid("1111111111")


# --- through a real server --------------------------------------------------------------------


def create_case(api: Api, user: dict, **body: object) -> object:
    return api.call("POST", "/api/chat/rooms", token=user["access_token"], json={"type": "case", "name": "Chest pain, bay 4", **body})


def test_only_licence_verified_practitioners_create_join_or_are_invited(api: Api, server) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    student = api.register(role="MBBS Student")

    refused = expect_error(create_case(api, student), 403, "ORG_MEDCHAT_CASE_ROOM_REFUSED")
    assert "case_room_verified_only" in refused["error"]
    expect_error(create_case(api, doctor, participants=[student["user_id"]]), 403, "ORG_MEDCHAT_CASE_ROOM_REFUSED")

    created = create_case(api, doctor, participants=[colleague["user_id"]])
    assert created.status_code == 201, created.text
    room = created.json()
    assert room["type"] == "case"
    state = api.call("GET", f"/_matrix/client/v3/rooms/{quote(room['id'])}/state/m.room.history_visibility", token=doctor["access_token"]).json()
    assert state["history_visibility"] == "joined"

    invite = api.call("POST", f"/api/chat/rooms/{quote(room['id'])}/participants", token=doctor["access_token"], json={"user_id": student["user_id"]})
    expect_error(invite, 403, "ORG_MEDCHAT_CASE_ROOM_REFUSED")

    async def from_a_matrix_client() -> object:
        nio = await nio_login(server.base_url, doctor["user_id"], doctor["password"])
        try:
            return await nio.room_invite(room["id"], student["user_id"])
        finally:
            await nio.close()

    invited = run(from_a_matrix_client())
    assert getattr(invited, "status_code", None) == "ORG_MEDCHAT_CASE_ROOM_REFUSED", invited
    # A student cannot create one from a Matrix client either.
    raw = api.call("POST", "/_matrix/client/v3/createRoom", token=student["access_token"], json={"creation_content": {"type": "org.medchat.case"}})
    expect_error(raw, 403, "ORG_MEDCHAT_CASE_ROOM_REFUSED")


def test_patient_identifiers_are_refused_in_case_rooms_only(api: Api, server) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    room = create_case(api, doctor, participants=[colleague["user_id"]]).json()["id"]
    path = f"/api/chat/rooms/{quote(room)}/messages"

    ok = api.call("POST", path, token=doctor["access_token"], json={"content": "Troponin 0.04 at 14:30, repeat at 17:30."})
    assert ok.status_code == 201, ok.text
    refused = api.call("POST", path, token=doctor["access_token"], json={"content": "John Smith, DOB 12/03/1985, NHS 943 476 5919"})
    body = expect_error(refused, 403, "ORG_MEDCHAT_PHI_DETECTED")
    assert set(body["org.medchat.phi_kinds"]) == {"nhs_number", "date_of_birth"}
    assert "943" not in body["error"] and "1985" not in body["error"]  # kinds, never values
    edit = api.call("PUT", f"{path}/{quote(ok.json()['id'])}", token=doctor["access_token"], json={"content": "Ring 07911 123456"})
    expect_error(edit, 403, "ORG_MEDCHAT_PHI_DETECTED")

    async def from_a_matrix_client() -> object:
        nio = await nio_login(server.base_url, colleague["user_id"], colleague["password"])
        try:
            await nio.join(room)
            return await nio.room_send(room, "m.room.message", {"msgtype": "m.file", "body": "MRN 12345678 echo.pdf", "url": "mxc://medchat.test/abc"})
        finally:
            await nio.close()

    sent = run(from_a_matrix_client())
    assert not isinstance(sent, RoomSendResponse) and getattr(sent, "status_code", None) == "ORG_MEDCHAT_PHI_DETECTED", sent

    # The same text is fine in an ordinary group chat.
    group = api.call("POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "group", "name": "Coffee"}).json()["id"]
    plain = api.call("POST", f"/api/chat/rooms/{quote(group)}/messages", token=doctor["access_token"], json={"content": "Ring 07911 123456"})
    assert plain.status_code == 201, plain.text
