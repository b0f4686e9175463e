"""The patient-identifier guard reads every text an event carries in a case room, however it is
written: through the API and through the raw Matrix client-server API, timeline events (text,
HTML, files, edits, reactions, stickers, polls, extensible events, locations, custom types) and
state events (names, topics, custom state, display names), and the upload names of files. Images
shown as room or member avatars must be metadata-free like those in messages. One case room (and
one server) serves the whole module; the pure pieces are checked without a server first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from requests import Response

from harness import Api, SynapseServer, expect_error, licence_verified, send_text
from medchat.phi.carriers import event_texts
from medchat.phi.text import html_text, normalise, views
from media_samples import jpeg_with_gps, pdf, upload
from test_case_rooms import corpus, create_case, joined_case_room, native_event, native_send, native_upload

PHI, METADATA = "ORG_MEDCHAT_PHI_DETECTED", "ORG_MEDCHAT_MEDIA_METADATA"
NHS = "9434765919"  # valid check digit
ZWSP, SHY, NBSP = "\u200b", "\u00ad", "\u00a0"

# --- the pure pieces, no server -----------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "943.476.5919",
        "943/476/5919",
        "9 4 3 4 7 6 5 9 1 9",
        f"943{ZWSP}476{ZWSP}5919",
        f"943{SHY}476{SHY}5919",
        f"943{NBSP}476{NBSP}5919",
        "943\u2009476\u30005919",
        "943\u2013476\u20145919",
        "９４３ ４７６ ５９１９",
    ],
)
def test_every_separator_reads_as_one_space(written: str) -> None:
    assert "943 476 5919" in views(written) or NHS in views(written)


def test_normalisation_undoes_unicode_tricks() -> None:
    assert normalise("jo＠example.org") == "jo@example.org"
    assert normalise(f"D{ZWSP}O{ZWSP}B 12/03/1985") == "DOB 12 03 1985"
    assert normalise(f"MRN:{ZWSP}12345678") == "MRN:12345678"
    assert normalise("\u041cRN \u0661\u0662") == "MRN 12"  # a Cyrillic M, Arabic-Indic digits
    assert views("nhs_9434765919.pdf").tokens == "nhs 9434765919 pdf"
    assert views("MRN 1234 5678").joined == "MRN 12345678"
    assert html_text("<b>943</b>476<br>5919 &amp; co<!-- note -->") == "943476 5919 & co"


def test_carriers_are_every_shown_string_and_no_machine_field() -> None:
    content = {
        "msgtype": "m.file",
        "body": "caption",
        "filename": "scan.pdf",
        "url": "mxc://medchat.test/abcdefghijklmnopqrstuvwx",
        "info": {"mimetype": "application/pdf", "size": 12, "xyz.amorgan.blurhash": "L9434765919abc"},
        "m.relates_to": {"rel_type": "m.annotation", "event_id": "$" + "a" * 43, "key": "key text"},
        "m.mentions": {"user_ids": ["@jo:medchat.test"]},
        "custom": [{"deep": {"deeper": "nested text"}}],
        "org.medchat.phi_warning": {"kinds": ["nhs_number"]},
        "geo_uri": "geo:51.50080123,-0.12470000",
    }
    texts = event_texts("@jo:medchat.test", content)
    assert {"caption", "scan.pdf", "key text", "nested text", "custom"} <= set(texts)
    assert not {
        "m.file",
        "application/pdf",
        "mxc://medchat.test/abcdefghijklmnopqrstuvwx",
        "@jo:medchat.test",
        "nhs_number",
        "L9434765919abc",
        "geo:51.50080123,-0.12470000",
    } & set(texts)
    assert "Bay 4" in event_texts("Bay 4", {})  # a state key that is not a user id is read
    assert "$9434765919" in event_texts(None, {"body": "$9434765919"})  # not an event id's shape


# --- through a real server ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    api: Api
    doctor: dict[str, Any]
    colleague: dict[str, Any]
    room: str
    pdf_url: str
    anchor: str  # a clean message to react to and edit

    def filled(self, content: dict[str, Any]) -> dict[str, Any]:
        """The content with ANCHOR and PDF made this room's clean message and file."""
        return json.loads(
            json.dumps(content).replace('"ANCHOR"', json.dumps(self.anchor)).replace('"PDF"', json.dumps(self.pdf_url))
        )

    def send(self, event_type: str, content: dict[str, Any]) -> Response:
        return native_send(self.api, self.doctor, self.room, content, event_type)

    def put_state(self, event_type: str, state_key: str, content: dict[str, Any], user: dict | None = None) -> Response:
        path = f"/_matrix/client/v3/rooms/{quote(self.room)}/state/{quote(event_type)}/{quote(state_key, safe='')}"
        return self.api.call("PUT", path, token=(user or self.doctor)["access_token"], json=content)

    def rest(self, method: str, path: str, body: dict[str, Any]) -> Response:
        return self.api.call(
            method, f"/api/chat/rooms/{quote(self.room)}{path}", token=self.doctor["access_token"], json=body
        )


@pytest.fixture(scope="module")
def case(server: SynapseServer) -> Case:
    api = Api(server.base_url)
    doctor, colleague = licence_verified(api, server), licence_verified(api, server)
    room = joined_case_room(api, server, doctor, colleague)
    uploaded = upload(api, doctor, "file", pdf(), "application/pdf", filename="echo.pdf")
    assert uploaded.status_code == 201, uploaded.text
    anchor = send_text(api, doctor["access_token"], room, "Troponin repeat at 17:30.")
    return Case(api, doctor, colleague, room, uploaded.json()["media_url"], anchor)


TEXTS_WITH_IDENTIFIERS = [
    f"NHS 943{ZWSP}476{ZWSP}5919",
    f"NHS 943{SHY}476{SHY}5919",
    f"NHS 943{NBSP}476{NBSP}5919",
    "NHS 943.476.5919",
    "NHS 943/476/5919",
    "NHS 9 4 3 4 7 6 5 9 1 9",
    "Letter to jo＠example.org",
    f"D{ZWSP}O{ZWSP}B 12/03/1985",
    f"MRN:{ZWSP}12345678",
]


@pytest.mark.parametrize("text", TEXTS_WITH_IDENTIFIERS)
def test_written_any_way_an_identifier_is_refused_by_the_api_and_matrix(case: Case, text: str) -> None:
    expect_error(case.rest("POST", "/messages", {"content": text}), 403, PHI)
    expect_error(case.send("m.room.message", {"msgtype": "m.text", "body": text}), 403, PHI)


# Every timeline carrier, each holding an identifier somewhere a client shows (ANCHOR: the event
# id of a clean message, PDF: a clean uploaded file).
TIMELINE_WITH_IDENTIFIERS = [
    ("m.room.message", {"msgtype": "m.text", "body": "see bold", "formatted_body": "<b>943</b>476<i>5919</i>"}),
    ("m.room.message", {"msgtype": "m.file", "body": "nhs_9434765919.pdf", "url": "PDF"}),
    ("m.room.message", {"msgtype": "m.file", "body": "Echo", "filename": "NHS 943 476 5919.pdf", "url": "PDF"}),
    ("m.room.message", {"msgtype": "m.file", "body": "9434765919.pdf", "url": "PDF"}),
    (
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* fixed",
            "m.new_content": {"msgtype": "m.text", "body": "MRN 1234 5678"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "ANCHOR"},
        },
    ),
    ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": "ANCHOR", "key": "07911 123456"}}),
    ("m.sticker", {"body": f"NHS {NHS}", "url": "PDF", "info": {}}),
    (
        "m.poll.start",
        {
            "m.text": [{"body": "Poll"}],
            "m.poll": {
                "question": {"m.text": [{"body": "Is NHS 943 476 5919 right?"}]},
                "answers": [{"m.id": "a", "m.text": [{"body": "yes"}]}],
            },
        },
    ),
    (
        "org.matrix.msc3381.poll.start",
        {
            "org.matrix.msc1767.text": "Which address?",
            "org.matrix.msc3381.poll.start": {
                "question": {"org.matrix.msc1767.text": "Which address?"},
                "kind": "org.matrix.msc3381.poll.disclosed",
                "answers": [{"id": "1", "org.matrix.msc1767.text": "jane.doe@example.com"}],
            },
        },
    ),
    ("m.message", {"m.text": [{"mimetype": "text/html", "body": "<p>DOB 12/03/1985</p>"}, {"body": "DOB"}]}),
    ("org.matrix.msc1767.message", {"org.matrix.msc1767.text": "MRN 12345678"}),
    (
        "m.room.message",
        {"msgtype": "m.location", "body": "Flat 2, tel 07911 123456", "geo_uri": "geo:51.5008,0.1247"},
    ),
    (
        "m.room.message",
        {
            "msgtype": "m.location",
            "body": "Here",
            "geo_uri": "geo:51.5008,0.1247",
            "org.matrix.msc3488.location": {"uri": "geo:51.5008,0.1247", "description": "Home, NHS 9434765919"},
        },
    ),
    ("com.example.handover", {"note": {"lines": ["stable", "NHS 943 476 5919"]}}),
    ("com.example.handover", {"9434765919": True}),
]


@pytest.mark.parametrize(("event_type", "content"), TIMELINE_WITH_IDENTIFIERS)
def test_every_timeline_carrier_is_read(case: Case, event_type: str, content: dict[str, Any]) -> None:
    expect_error(case.send(event_type, case.filled(content)), 403, PHI)


def test_rest_file_names_reactions_and_upload_names(case: Case) -> None:
    media = {"message_type": "file", "media_url": case.pdf_url}
    expect_error(case.rest("POST", "/messages", {**media, "file_name": "nhs_9434765919.pdf"}), 403, PHI)
    expect_error(
        case.rest("POST", "/messages", {**media, "content": "Echo", "file_name": "MRN-12345678.pdf"}), 403, PHI
    )
    expect_error(case.rest("POST", f"/messages/{quote(case.anchor)}/reactions", {"key": "07911 123456"}), 403, PHI)
    # The name a file was uploaded with is what every download shows: it is read too.
    named = upload(case.api, case.doctor, "file", pdf(), "application/pdf", filename="NHS 943 476 5919.pdf")
    assert named.status_code == 201, named.text
    expect_error(
        case.rest("POST", "/messages", {"message_type": "file", "media_url": named.json()["media_url"]}), 403, PHI
    )
    raw = native_upload(case.api, case.doctor, pdf(), "application/pdf", filename="MRN 12345678.pdf")
    expect_error(case.send("m.room.message", {"msgtype": "m.file", "body": "echo.pdf", "url": raw}), 403, PHI)
    clean = native_upload(case.api, case.doctor, pdf(), "application/pdf", filename="echo.pdf")
    assert case.send("m.room.message", {"msgtype": "m.file", "body": "echo.pdf", "url": clean}).status_code == 200


STATE_WITH_IDENTIFIERS = [
    ("m.room.name", "", {"name": "Bay 4, NHS 943.476.5919"}),
    ("m.room.topic", "", {"topic": f"MRN:{ZWSP}12345678"}),
    ("com.example.case_notes", "", {"notes": [{"text": "DOB 12/03/1985"}]}),
    ("com.example.case_notes", "07911 123456", {}),
    ("m.room.topic", "", {"topic": "ok", "m.topic": [{"mimetype": "text/html", "body": "<b>jo＠example.org</b>"}]}),
]


@pytest.mark.parametrize(("event_type", "state_key", "content"), STATE_WITH_IDENTIFIERS)
def test_state_events_are_read(case: Case, event_type: str, state_key: str, content: dict[str, Any]) -> None:
    expect_error(case.put_state(event_type, state_key, content), 403, PHI)


def test_room_names_topics_and_initial_state(case: Case) -> None:
    expect_error(case.rest("PUT", "", {"name": "Bay 4 NHS 9434765919"}), 403, PHI)
    expect_error(case.rest("PUT", "", {"topic": "Ring 07911.123.456"}), 403, PHI)
    joined = case.api.call("GET", "/_matrix/client/v3/joined_rooms", token=case.doctor["access_token"]).json()
    expect_error(create_case(case.api, case.doctor, name=f"NHS 943{SHY}476{SHY}5919"), 403, PHI)
    expect_error(create_case(case.api, case.doctor, topic="DOB 12.03.1985"), 403, PHI)
    raw = case.api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=case.doctor["access_token"],
        json={
            "creation_content": {"type": "org.medchat.case"},
            "initial_state": [{"type": "com.example.case_notes", "state_key": "", "content": {"note": "MRN 12345678"}}],
        },
    )
    expect_error(raw, 403, PHI)
    # Refused before anything of the room was made.
    assert case.api.call("GET", "/_matrix/client/v3/joined_rooms", token=case.doctor["access_token"]).json() == joined


def test_member_display_names_in_case_rooms(case: Case) -> None:
    me = case.colleague["user_id"]
    member = {"membership": "join", "displayname": f"Dr Jo 079{ZWSP}11 123 456"}
    expect_error(case.put_state("m.room.member", me, member, case.colleague), 403, PHI)
    # A profile change is not copied into the case room (Synapse logs the refusal per room).
    profile = f"/_matrix/client/v3/profile/{quote(me)}/displayname"
    changed = case.api.call(
        "PUT", profile, token=case.colleague["access_token"], json={"displayname": "Jo 07911 123456"}
    )
    assert changed.status_code == 200, changed.text
    state = f"/_matrix/client/v3/rooms/{quote(case.room)}/state/m.room.member/{quote(me)}"
    shown = case.api.call("GET", state, token=case.doctor["access_token"]).json()
    assert "07911" not in shown.get("displayname", "")
    renamed = case.put_state("m.room.member", me, {"membership": "join", "displayname": "Dr Jo"}, case.colleague)
    assert renamed.status_code == 200, renamed.text


def test_metadata_images_are_refused_as_room_and_member_avatars(case: Case) -> None:
    gps = native_upload(case.api, case.doctor, jpeg_with_gps(), "image/jpeg")
    expect_error(case.put_state("m.room.avatar", "", {"url": gps}), 403, METADATA)
    expect_error(case.rest("PUT", "", {"avatar_url": gps}), 403, METADATA)
    member = {"membership": "join", "displayname": "Dr Who", "avatar_url": gps}
    expect_error(case.put_state("m.room.member", case.doctor["user_id"], member), 403, METADATA)
    expect_error(case.put_state("m.room.avatar", "", {"url": "mxc://elsewhere.test/abcdefghijklmnop"}), 403, METADATA)
    stripped = upload(case.api, case.doctor, "image", jpeg_with_gps())
    assert stripped.status_code == 201, stripped.text
    assert case.rest("PUT", "", {"avatar_url": stripped.json()["media_url"]}).status_code == 200


CLEAN_EVENTS = [
    ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": "ANCHOR", "key": "👍"}}),
    ("m.room.message", {"msgtype": "m.text", "body": "BP 120/80, 135/85 mmHg; QTc 440 ms; review on 12/03/2025"}),
    ("m.room.message", {"msgtype": "m.location", "body": "Ward 7B", "geo_uri": "geo:51.50080123,-0.12470000"}),
    ("m.poll.start", {"m.poll": {"question": {"m.text": [{"body": "K 4.1 or Na 138?"}]}, "answers": []}}),
    ("com.example.handover", {"note": {"lines": ["Bed 12, Ward 7B", "Hb 12.5 g/dL, 500 mg 1-0-1"]}}),
]


@pytest.mark.parametrize(("event_type", "content"), CLEAN_EVENTS)
def test_ordinary_events_pass(case: Case, event_type: str, content: dict[str, Any]) -> None:
    sent = case.send(event_type, case.filled(content))
    assert sent.status_code == 200, sent.text


def test_ordinary_state_passes(case: Case) -> None:
    for event_type, content in (
        ("m.room.name", {"name": "Chest pain, bay 4"}),
        ("m.room.topic", {"topic": "Review at 08:30, bed 12, ward 7B, Na 138 mmol/L"}),
        ("com.example.case_notes", {"notes": [{"text": "ECG PR 0.16 s, QRS 0.10 s"}]}),
    ):
        put = case.put_state(event_type, "", content)
        assert put.status_code == 200, put.text


def test_warn_mode_marks_timeline_events_but_still_refuses_state(server: SynapseServer, case: Case) -> None:
    room = create_case(case.api, case.doctor).json()["id"]
    warn = case.api.call(
        "PUT", f"/api/chat/rooms/{quote(room)}", token=case.doctor["access_token"], json={"phi_guard": "warn"}
    )
    assert warn.status_code == 200, warn.text
    anchor = send_text(case.api, case.doctor["access_token"], room, "Echo booked.")
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": anchor, "key": "07911 123456"}}
    sent = native_send(case.api, case.doctor, room, reaction, "m.reaction")
    assert sent.status_code == 200, sent.text
    event = native_event(case.api, case.doctor, room, sent.json()["event_id"])
    assert event["content"]["org.medchat.phi_warning"] == {"kinds": ["phone_number"]}
    name = f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.name/"
    expect_error(
        case.api.call("PUT", name, token=case.doctor["access_token"], json={"name": "NHS 9434765919"}), 403, PHI
    )


# The corpora through the server: each identifier line refused, each ordinary line accepted.


@pytest.mark.parametrize("line", corpus("clinical_positive.txt"))
def test_corpus_identifiers_are_refused_by_the_server(case: Case, line: str) -> None:
    expect_error(case.send("m.room.message", {"msgtype": "m.text", "body": line.split("\t", 1)[1]}), 403, PHI)


@pytest.mark.parametrize("text", corpus("clinical_negative.txt"))
def test_corpus_ordinary_text_is_accepted_by_the_server(case: Case, text: str) -> None:
    sent = case.send("m.room.message", {"msgtype": "m.text", "body": text})
    assert sent.status_code == 200, sent.text
