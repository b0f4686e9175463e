"""The user's journey the Postman collection follows (scripts/postman.py turns each step into a
request of the OpenAPI operation it names, with that operation's example body unless the step
gives one, and a test script that checks the status and the answer's model fields).

`as_` is the user whose token is sent (`a` or `b`, or None for a public operation); `path` fills
the path's `{names}`; `save` copies answer fields (dotted paths) into environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_PW = "correct horse battery staple"


@dataclass(frozen=True)
class Step:
    operation: str
    name: str
    as_: str | None = "a"
    path: dict[str, str] = field(default_factory=dict)
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    save: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # default: the operation's only success status
    upload: str | None = None  # a file scripts/postman writes beside the collection (SAMPLES)


def _register(who: str) -> Step:
    return Step(
        "auth_register",
        f"Register {who}",
        as_=None,
        body={
            "username": f"{{{{username_{who}}}}}",
            "password": _PW,
            "email": f"{{{{username_{who}}}}}@hospital.example",
            "full_name": f"Dr {who.upper()} Example",
            "role": "Consultant",
            "institution": "St Example Hospital",
        },
        save={f"token_{who}": "access_token", f"user_{who}": "user_id"},
    )


_ROOM = {"room_id": "{{room_id}}"}
_MSG = {"room_id": "{{room_id}}", "event_id": "{{message_id}}"}
_B = {"id": "{{user_b}}"}
_A = {"id": "{{user_a}}"}

JOURNEY: list[Step] = [
    Step("health_get", "Health", as_=None),
    _register("a"),
    _register("b"),
    Step(
        "auth_login",
        "Log in",
        as_=None,
        body={"username": "{{username_a}}", "password": _PW},
        save={"token_a": "access_token", "refresh_a": "refresh_token"},
    ),
    Step(
        "auth_refresh",
        "Refresh the token",
        as_=None,
        body={"refresh_token": "{{refresh_a}}"},
        save={"token_a": "access_token"},
    ),
    Step("auth_get_profile", "My profile"),
    Step("auth_put_profile", "Update my profile", body={"bio": "Cardiologist.", "specialization": "Cardiology"}),
    Step("auth_get_profile", "My profile again"),
    Step("user_get", "A user's profile", path={"user_id": "{{user_b}}"}),
    Step("user_list", "The directory"),
    Step("user_filter", "The directory, filtered", query={"institution": "St Example Hospital"}),
    Step("user_search", "Search the directory", query={"q": "{{username_b}}"}),
    Step("user_institutions", "Institutions"),
    Step("room_institution_rooms", "An institution's rooms", path={"name": "St Example Hospital"}),
    Step("contact_get_permissions", "My contact permissions"),
    Step("contact_put_permissions", "Set my contact permissions", body={"default": "allow_all"}),
    Step("contact_add", "Request a contact", body={"user_id": "{{user_b}}", "message": "Hello"}, status=202),
    Step("contact_list_requests", "My outgoing requests", query={"direction": "outgoing"}),
    Step("contact_list_requests", "B's incoming requests", as_="b", query={"direction": "incoming"}),
    Step("contact_accept", "B accepts", as_="b", path=_A, body={}),
    Step("contact_list", "My contacts"),
    Step("contact_get", "One contact", path=_B),
    Step("contact_put", "Nickname a contact", path=_B, body={"nickname": "Bee"}),
    Step("contact_favorite", "Favourite a contact", path=_B),
    Step("contact_list", "My favourites", query={"favorite": "true"}),
    Step("contact_unfavorite", "Unfavourite a contact", path=_B),
    Step("contact_block", "Block a contact", path=_B),
    Step("contact_unblock", "Unblock a contact", path=_B),
    Step("contact_get", "The contact again", path=_B),
    Step(
        "room_create",
        "Create a group",
        body={"type": "group", "name": "Cardiology team", "participants": ["{{user_b}}"]},
        save={"room_id": "id"},
        status=201,
    ),
    Step(
        "room_create",
        "Create a direct chat",
        body={"type": "direct", "participants": ["{{user_b}}"]},
        save={"dm_id": "id"},
        status=201,
    ),
    Step("room_list_rooms", "My rooms"),
    Step("room_get", "One room", path=_ROOM),
    Step("room_update", "Rename the room", path=_ROOM, body={"name": "Cardiology handover", "topic": "Mornings"}),
    Step("room_participants", "The participants", path=_ROOM),
    Step("room_join", "B joins", as_="b", path=_ROOM, body={}),
    Step("room_list_rooms", "B's rooms", as_="b"),
    Step(
        "message_send", "Send a message", path=_ROOM, body={"content": "The results are in."}, save={"message_id": "id"}
    ),
    Step("message_send", "Send another", path=_ROOM, body={"content": "Ward round at 9."}, save={"second_id": "id"}),
    Step("message_history", "History", path=_ROOM),
    Step("message_get", "One message", path=_MSG),
    Step("message_reply", "B replies", as_="b", path=_MSG, body={"content": "Thanks!"}, save={"reply_id": "id"}),
    Step("message_edit", "Edit the message", path=_MSG, body={"content": "The results are in: all clear."}),
    Step("message_get", "The edited message", path=_MSG),
    Step("message_react", "B reacts", as_="b", path=_MSG, body={"key": "👍"}, status=201),
    Step("message_get", "The reacted message", path=_MSG),
    Step("message_unreact", "B takes the reaction back", as_="b", path={**_MSG, "key": "👍"}),
    Step("message_search", "Search the room", path=_ROOM, query={"q": "clear"}),
    Step("message_thread", "The thread", path={"room_id": "{{room_id}}", "root_id": "{{message_id}}"}),
    Step("message_forward", "Forward to the direct chat", path=_MSG, body={"room_ids": ["{{dm_id}}"]}),
    Step("realtime_get_status", "Delivery status", path={"message_id": "{{message_id}}"}),
    Step(
        "realtime_put_status",
        "B marks it delivered",
        as_="b",
        path={"message_id": "{{message_id}}"},
        body={"status": "delivered"},
    ),
    Step("realtime_mark_read", "B reads it", as_="b", path={"message_id": "{{message_id}}"}),
    Step("realtime_get_status", "Delivery status again", path={"message_id": "{{message_id}}"}),
    Step(
        "poll_create",
        "Start a poll",
        path=_ROOM,
        body={"question": "Lunch?", "answers": ["Yes", "No"]},
        save={"poll_id": "id", "answer_id": "poll.answers.0.id"},
    ),
    Step(
        "poll_vote",
        "B votes",
        as_="b",
        path={"room_id": "{{room_id}}", "event_id": "{{poll_id}}"},
        body={"answers": ["{{answer_id}}"]},
    ),
    Step("poll_end", "End the poll", path={"room_id": "{{room_id}}", "event_id": "{{poll_id}}"}),
    Step("message_delete", "Delete the second message", path={"room_id": "{{room_id}}", "event_id": "{{second_id}}"}),
    Step("message_history", "History after the deletion", path=_ROOM),
    Step("realtime_mark_all_read", "B marks the room read", as_="b", path=_ROOM),
    Step(
        "realtime_put_presence",
        "Set my status",
        path={"user_id": "{{user_a}}"},
        body={"status": "online", "status_msg": "On call"},
    ),
    Step("realtime_get_presence", "B's view of my status", as_="b", path={"user_id": "{{user_a}}"}),
    Step("realtime_list_notifications", "B's notifications", as_="b", save={"notification_id": "results.0.id"}),
    Step("realtime_unread_count", "B's unread count", as_="b"),
    Step("realtime_read_one", "B reads a notification", as_="b", path={"notification_id": "{{notification_id}}"}),
    Step("realtime_read_all", "B reads them all", as_="b"),
    Step("realtime_dismiss", "B dismisses a notification", as_="b", path={"notification_id": "{{notification_id}}"}),
    Step(
        "upload_upload",
        "Upload a photo",
        path={"target": "image"},
        upload="sample.png",
        save={"file_id": "file_id", "media_url": "media_url"},
    ),
    Step(
        "message_send",
        "Send the photo",
        path=_ROOM,
        body={"message_type": "image", "media_url": "{{media_url}}", "content": "scan.png"},
    ),
    Step("upload_upload", "Upload a file", path={"target": "file"}, upload="notes.txt", save={"file_id_2": "file_id"}),
    Step("upload_delete", "Delete the file", path={"target": "{{file_id_2}}"}),
    Step(
        "verification_submit",
        "Ask to be verified",
        body={"registration_body": "GMC", "license_number": "1234567"},
        save={"request_id": "id"},
    ),
    Step("verification_me", "My verification"),
    Step("user_get", "My directory entry", path={"user_id": "{{user_a}}"}),
    Step("room_leave", "B leaves the group", as_="b", path=_ROOM),
    Step("room_participants", "The participants after B left", path=_ROOM),
    Step("contact_delete", "Remove the contact", path=_B),
    Step("contact_list", "My contacts at the end"),
    Step("gdpr_export", "Export my data"),
    Step("auth_logout", "Log B out", as_="b"),
    Step("auth_logout", "Log out"),
]
