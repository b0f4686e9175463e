"""Case rooms: licence-verified members only, and the patient-identifier guard — from the API and
from a Matrix client alike. The detectors are also checked alone, on the corpora in tests/data."""

from __future__ import annotations

import io
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from nio import RoomSendResponse
from requests import Response

from harness import SERVER_NAME, Api, SynapseServer, expect_error, licence_verified, nio_login, run
from medchat.config import load_schema
from medchat.phi.detectors import KINDS, Guard, nhs_number_valid
from media_samples import jpeg_with_gps, pdf, png_with_metadata, upload

DATA = Path(__file__).parent / "data"
# The guard as the module's defaults configure it.
GUARD = Guard.from_config(
    KINDS, load_schema()["properties"]["case_rooms"]["properties"]["mrn_patterns"]["default"], "GB"
)


def corpus(name: str) -> list[str]:
    """A corpus's lines, with their `\\uXXXX` escapes made the characters they stand for."""
    return [
        line.encode("ascii", "backslashreplace").decode("unicode_escape")
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]


# --- detectors, no server ---------------------------------------------------------------------


@pytest.mark.parametrize("text", corpus("clinical_negative.txt"))
def test_ordinary_clinical_text_passes(text: str) -> None:
    assert GUARD.kinds_in([text]) == []


@pytest.mark.parametrize(("kind", "text"), [line.split("\t", 1) for line in corpus("clinical_positive.txt")])
def test_identifiers_are_caught(kind: str, text: str) -> None:
    assert kind in GUARD.kinds_in([text])


def test_nhs_check_digit() -> None:
    assert nhs_number_valid("9434765919")
    assert not nhs_number_valid("9434765918")  # wrong check digit
    assert not nhs_number_valid("1111111111")


# --- through a real server --------------------------------------------------------------------


def create_case(api: Api, user: dict, **body: object) -> requests.Response:
    return api.call(
        "POST",
        "/api/chat/rooms",
        token=user["access_token"],
        json={"type": "case", "name": "Chest pain, bay 4", **body},
    )


def test_only_licence_verified_practitioners_create_join_or_are_invited(api: Api, server: SynapseServer) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    student = api.register(role="MBBS Student")

    refused = expect_error(create_case(api, student), 403, "ORG_MEDCHAT_CASE_ROOM_REFUSED")
    assert "case_room_verified_only" in refused["error"]
    expect_error(create_case(api, doctor, participants=[student["user_id"]]), 403, "ORG_MEDCHAT_CASE_ROOM_REFUSED")

    created = create_case(api, doctor, participants=[colleague["user_id"]])
    assert created.status_code == 201, created.text
    room = created.json()
    assert room["type"] == "case"
    state = api.call(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room['id'])}/state/m.room.history_visibility",
        token=doctor["access_token"],
    ).json()
    assert state["history_visibility"] == "joined"

    invite = api.call(
        "POST",
        f"/api/chat/rooms/{quote(room['id'])}/participants",
        token=doctor["access_token"],
        json={"user_id": student["user_id"]},
    )
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
    raw = api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=student["access_token"],
        json={"creation_content": {"type": "org.medchat.case"}},
    )
    expect_error(raw, 403, "ORG_MEDCHAT_CASE_ROOM_REFUSED")


def test_patient_identifiers_are_refused_in_case_rooms_only(api: Api, server: SynapseServer) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    room = create_case(api, doctor, participants=[colleague["user_id"]]).json()["id"]
    path = f"/api/chat/rooms/{quote(room)}/messages"

    ok = api.call(
        "POST", path, token=doctor["access_token"], json={"content": "Troponin 0.04 at 14:30, repeat at 17:30."}
    )
    assert ok.status_code == 201, ok.text
    refused = api.call(
        "POST", path, token=doctor["access_token"], json={"content": "John Smith, DOB 12/03/1985, NHS 943 476 5919"}
    )
    body = expect_error(refused, 403, "ORG_MEDCHAT_PHI_DETECTED")
    assert set(body["org.medchat.phi_kinds"]) == {"nhs_number", "date_of_birth"}
    assert "943" not in body["error"] and "1985" not in body["error"]  # kinds, never values
    edit = api.call(
        "PUT", f"{path}/{quote(ok.json()['id'])}", token=doctor["access_token"], json={"content": "Ring 07911 123456"}
    )
    expect_error(edit, 403, "ORG_MEDCHAT_PHI_DETECTED")

    async def from_a_matrix_client() -> object:
        nio = await nio_login(server.base_url, colleague["user_id"], colleague["password"])
        try:
            await nio.join(room)
            return await nio.room_send(
                room,
                "m.room.message",
                {"msgtype": "m.file", "body": "MRN 12345678 echo.pdf", "url": "mxc://medchat.test/abc"},
            )
        finally:
            await nio.close()

    sent = run(from_a_matrix_client())
    assert (
        not isinstance(sent, RoomSendResponse) and getattr(sent, "status_code", None) == "ORG_MEDCHAT_PHI_DETECTED"
    ), sent

    # The same text is fine in an ordinary group chat.
    group = api.call(
        "POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "group", "name": "Coffee"}
    ).json()["id"]
    plain = api.call(
        "POST",
        f"/api/chat/rooms/{quote(group)}/messages",
        token=doctor["access_token"],
        json={"content": "Ring 07911 123456"},
    )
    assert plain.status_code == 201, plain.text


# --- warn mode ----------------------------------------------------------------------------------


def joined_case_room(api: Api, server: SynapseServer, doctor: dict, colleague: dict) -> str:
    """A case room made through the API, the colleague invited and joined (a Matrix join)."""
    room = create_case(api, doctor, participants=[colleague["user_id"]]).json()["id"]
    joined = api.call("POST", f"/_matrix/client/v3/join/{quote(room)}", token=colleague["access_token"], json={})
    assert joined.status_code == 200, joined.text
    return room


def native_event(api: Api, user: dict, room: str, event_id: str) -> dict:
    response = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(room)}/event/{quote(event_id)}", token=user["access_token"]
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_warn_mode_marks_messages_instead_of_refusing_them(api: Api, server: SynapseServer) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    room = joined_case_room(api, server, doctor, colleague)
    path = f"/api/chat/rooms/{quote(room)}"
    assert api.call("GET", path, token=doctor["access_token"]).json()["phi_guard"] == "refuse"

    # Only a room admin may switch it; only case rooms have it.
    expect_error(
        api.call("PUT", path, token=colleague["access_token"], json={"phi_guard": "warn"}),
        403,
        "ORG_MEDCHAT_PHI_GUARD_MODE_REFUSED",
    )
    group = api.call(
        "POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "group", "name": "Coffee"}
    ).json()["id"]
    expect_error(
        api.call("PUT", f"/api/chat/rooms/{quote(group)}", token=doctor["access_token"], json={"phi_guard": "warn"}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(api.call("PUT", path, token=doctor["access_token"], json={"phi_guard": "off"}), 400, "M_INVALID_PARAM")

    switched = api.call("PUT", path, token=doctor["access_token"], json={"phi_guard": "warn"})
    assert switched.status_code == 200, switched.text
    assert switched.json()["phi_guard"] == "warn"
    state = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(room)}/state/org.medchat.phi_guard", token=colleague["access_token"]
    ).json()
    assert state == {"mode": "warn"}

    sent = api.call(
        "POST", f"{path}/messages", token=doctor["access_token"], json={"content": "Ring 07911 123456 re bay 4"}
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["phi_warning"] == {"kinds": ["phone_number"]}
    clean = api.call(
        "POST", f"{path}/messages", token=doctor["access_token"], json={"content": "Troponin repeat at 17:30."}
    )
    assert clean.status_code == 201 and clean.json()["phi_warning"] is None
    edited = api.call(
        "PUT",
        f"{path}/messages/{quote(clean.json()['id'])}",
        token=doctor["access_token"],
        json={"content": "Troponin repeat, DOB 12/03/1985"},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["phi_warning"] == {"kinds": ["date_of_birth"]}

    async def from_a_matrix_client() -> tuple[object, object, object, object]:
        nio = await nio_login(server.base_url, colleague["user_id"], colleague["password"])
        try:
            marked = await nio.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "NHS 943 476 5919, e-mail jo@example.org"}
            )
            not_admin = await nio.room_put_state(room, "org.medchat.phi_guard", {"mode": "refuse"})
            # A client cannot stamp its own "warning" on a clean message either.
            forged = await nio.room_send(
                room,
                "m.room.message",
                {"msgtype": "m.text", "body": "Echo booked.", "org.medchat.phi_warning": {"kinds": []}},
            )
            return marked, not_admin, forged, None
        finally:
            await nio.close()

    marked, not_admin, forged, _ = run(from_a_matrix_client())
    assert isinstance(marked, RoomSendResponse), marked
    assert native_event(api, doctor, room, marked.event_id)["content"]["org.medchat.phi_warning"] == {
        "kinds": ["nhs_number", "email_address"]
    }
    model = api.call("GET", f"{path}/messages/{quote(marked.event_id)}", token=doctor["access_token"]).json()
    assert model["phi_warning"] == {"kinds": ["nhs_number", "email_address"]}
    assert getattr(not_admin, "status_code", None) == "ORG_MEDCHAT_PHI_GUARD_MODE_REFUSED", not_admin
    assert isinstance(forged, RoomSendResponse), forged
    assert "org.medchat.phi_warning" not in native_event(api, doctor, room, forged.event_id)["content"]

    # Back to refuse, from a Matrix client: a forged marker does not get an identifier through.
    async def admin_from_a_matrix_client() -> tuple[object, object]:
        nio = await nio_login(server.base_url, doctor["user_id"], doctor["password"])
        try:
            await nio.room_put_state(room, "org.medchat.phi_guard", {"mode": "refuse"})
            sneaky = await nio.room_send(
                room,
                "m.room.message",
                {
                    "msgtype": "m.text",
                    "body": "Ring 07911 123456",
                    "org.medchat.phi_warning": {"kinds": ["phone_number"]},
                },
            )
            bad = await nio.room_put_state(room, "org.medchat.phi_guard", {"mode": "off"})
            return sneaky, bad
        finally:
            await nio.close()

    sneaky, bad = run(admin_from_a_matrix_client())
    assert getattr(sneaky, "status_code", None) == "ORG_MEDCHAT_PHI_DETECTED", sneaky
    assert getattr(bad, "status_code", None) == "M_INVALID_PARAM", bad
    assert api.call("GET", path, token=doctor["access_token"]).json()["phi_guard"] == "refuse"


# --- images must be metadata-free -------------------------------------------------------------


def native_upload(api: Api, user: dict, data: bytes, content_type: str, filename: str = "photo") -> str:
    """An upload through Synapse's own endpoint, as Element does it: nothing is stripped."""
    response = api.call(
        "POST",
        f"/_matrix/media/v3/upload?filename={quote(filename)}",
        token=user["access_token"],
        data=data,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    return response.json()["content_uri"]


def native_send(api: Api, user: dict, room: str, content: dict, event_type: str = "m.room.message") -> Response:
    """An event sent with the native Matrix API (`PUT /send/{type}/{txn}`)."""
    txn = f"m{time.monotonic_ns()}"
    return api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/send/{quote(event_type)}/{txn}",
        token=user["access_token"],
        json=content,
    )


def test_images_in_case_rooms_must_be_metadata_free(api: Api, server: SynapseServer) -> None:
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    room = joined_case_room(api, server, doctor, colleague)
    gps_photo = jpeg_with_gps()
    raw = native_upload(api, doctor, gps_photo, "image/jpeg")

    refused = expect_error(
        native_send(
            api,
            doctor,
            room,
            {"msgtype": "m.image", "body": "wound.jpg", "url": raw, "info": {"mimetype": "image/jpeg"}},
        ),
        403,
        "ORG_MEDCHAT_MEDIA_METADATA",
    )
    assert "metadata" in refused["error"]
    # As a file, as a thumbnail, or through the API's send: the same file is refused.
    expect_error(
        native_send(
            api,
            doctor,
            room,
            {"msgtype": "m.file", "body": "wound.jpg", "url": raw, "info": {"mimetype": "image/jpeg"}},
        ),
        403,
        "ORG_MEDCHAT_MEDIA_METADATA",
    )
    expect_error(
        api.call(
            "POST",
            f"/api/chat/rooms/{quote(room)}/messages",
            token=doctor["access_token"],
            json={"message_type": "image", "media_url": raw},
        ),
        403,
        "ORG_MEDCHAT_MEDIA_METADATA",
    )
    # Media this server cannot look at is refused in case rooms.
    expect_error(
        native_send(api, doctor, room, {"msgtype": "m.image", "body": "x.jpg", "url": "mxc://elsewhere.test/abcdef"}),
        403,
        "ORG_MEDCHAT_MEDIA_METADATA",
    )
    expect_error(
        native_send(
            api, doctor, room, {"msgtype": "m.image", "body": "x.jpg", "url": f"mxc://{SERVER_NAME}/nosuchmedia"}
        ),
        403,
        "ORG_MEDCHAT_MEDIA_METADATA",
    )

    # The API strips on upload (a rotated phone photo too): those images are welcome.
    for data in (gps_photo, jpeg_with_gps(orientation=6), png_with_metadata()):
        uploaded = upload(api, doctor, "image", data)
        assert uploaded.status_code == 201, uploaded.text
        stripped = uploaded.json()["media_url"]
        sent = api.call(
            "POST",
            f"/api/chat/rooms/{quote(room)}/messages",
            token=doctor["access_token"],
            json={"message_type": "image", "media_url": stripped},
        )
        assert sent.status_code == 201, sent.text
        thumb = {"msgtype": "m.image", "body": "ok.jpg", "url": stripped, "info": {"thumbnail_url": raw}}
        expect_error(native_send(api, doctor, room, thumb), 403, "ORG_MEDCHAT_MEDIA_METADATA")

    async def from_a_matrix_client() -> tuple[object, object]:
        nio = await nio_login(server.base_url, colleague["user_id"], colleague["password"])
        try:
            uploaded, _ = await nio.upload(
                io.BytesIO(gps_photo), content_type="image/jpeg", filename="wound.jpg", filesize=len(gps_photo)
            )
            image = await nio.room_send(
                room, "m.room.message", {"msgtype": "m.image", "body": "wound.jpg", "url": uploaded.content_uri}
            )
            document, _ = await nio.upload(
                io.BytesIO(pdf()), content_type="application/pdf", filename="echo.pdf", filesize=len(pdf())
            )
            report = await nio.room_send(
                room, "m.room.message", {"msgtype": "m.file", "body": "echo.pdf", "url": document.content_uri}
            )
            return image, report
        finally:
            await nio.close()

    image, report = run(from_a_matrix_client())
    assert getattr(image, "status_code", None) == "ORG_MEDCHAT_MEDIA_METADATA", image
    assert isinstance(report, RoomSendResponse), report  # other files are not images: not this rule's business

    # Outside case rooms the photo is the sender's business.
    group = api.call(
        "POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "group", "name": "Coffee"}
    ).json()["id"]
    assert native_send(api, doctor, group, {"msgtype": "m.image", "body": "cat.jpg", "url": raw}).status_code == 200


def test_case_rooms_stay_readable_by_the_guard(api: Api, server: SynapseServer) -> None:
    """No end-to-end encryption in case rooms: the guard could not read a thing."""
    doctor = licence_verified(api, server)
    room = create_case(api, doctor).json()["id"]
    encryption = {"algorithm": "m.megolm.v1.aes-sha2"}
    turn_on = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.encryption/",
        token=doctor["access_token"],
        json=encryption,
    )
    expect_error(turn_on, 403, "ORG_MEDCHAT_CASE_ROOM_ENCRYPTION_REFUSED")
    ciphertext = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgAEn...",
        "device_id": "X",
        "sender_key": "k",
        "session_id": "s",
    }
    sent = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.encrypted/e{time.monotonic_ns()}",
        token=doctor["access_token"],
        json=ciphertext,
    )
    expect_error(sent, 403, "ORG_MEDCHAT_CASE_ROOM_ENCRYPTION_REFUSED")

    async def from_a_matrix_client() -> object:
        nio = await nio_login(server.base_url, doctor["user_id"], doctor["password"])
        try:
            return await nio.room_create(
                name="Bay 9",
                room_type="org.medchat.case",
                initial_state=[{"type": "m.room.encryption", "state_key": "", "content": encryption}],
            )
        finally:
            await nio.close()

    created = run(from_a_matrix_client())
    assert getattr(created, "status_code", None) == "ORG_MEDCHAT_CASE_ROOM_ENCRYPTION_REFUSED", created
