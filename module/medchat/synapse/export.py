"""Synapse's GDPR data export (the admin `export-data` machinery) written into MedChat's export sink."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synapse.events import EventBase
from synapse.events.utils import FilteredEvent
from synapse.handlers.admin import ExfiltrationWriter
from synapse.types import JsonDict, JsonMapping, StateMap
from synapse.util.json import json_encoder

if TYPE_CHECKING:
    from medchat.handlers.gdpr import ExportSink


def _plain(value: Any) -> Any:
    """Synapse's immutable mappings as plain JSON values."""
    return json.loads(json_encoder.encode(value))


class SinkWriter(ExfiltrationWriter):
    """Adapts Synapse's ExfiltrationWriter to an ExportSink, keeping only what the user sent
    (the export visits every event they could see; others' messages are not their data)."""

    def __init__(self, user_id: str, sink: ExportSink):
        self._user_id = user_id
        self._sink = sink
        self._invites: list[JsonDict] = []
        self._media: dict[str, Any] = {}

    def write_events(self, room_id: str, events: list[FilteredEvent]) -> None:
        for filtered in events:
            event = filtered.event
            if event.sender != self._user_id:
                continue
            row: JsonDict = {
                "event_id": event.event_id,
                "room_id": room_id,
                "type": event.type,
                "origin_server_ts": event.origin_server_ts,
                "content": _plain(event.content),
            }
            if event.is_state():
                row["state_key"] = event.state_key
            if event.redacts:
                row["redacts"] = event.redacts
            self._sink.event(row)

    def write_state(self, room_id: str, event_id: str, state: StateMap[EventBase]) -> None:
        """Room state at gaps in the history: other people's events, not exported."""

    def write_invite(self, room_id: str, event: EventBase, state: StateMap[EventBase]) -> None:
        self._invites.append(
            {
                "room_id": room_id,
                "membership": "invite",
                "sender": event.sender,
                "origin_server_ts": event.origin_server_ts,
            }
        )

    def write_knock(self, room_id: str, event: EventBase, state: StateMap[EventBase]) -> None:
        self._invites.append(
            {
                "room_id": room_id,
                "membership": "knock",
                "sender": event.sender,
                "origin_server_ts": event.origin_server_ts,
            }
        )

    def write_profile(self, profile: JsonMapping) -> None:
        self._sink.part("matrix/profile", _plain(profile))

    def write_devices(self, devices: Sequence[JsonMapping]) -> None:
        self._sink.part("matrix/devices", _plain(list(devices)))

    def write_connections(self, connections: Sequence[JsonMapping]) -> None:
        self._sink.part("matrix/connections", _plain(list(connections)))

    def write_account_data(self, file_name: str, account_data: Any) -> None:
        self._sink.part(f"matrix/account_data/{file_name}", _plain(account_data))

    def write_media_id(self, media_id: str, media_metadata: JsonMapping) -> None:
        self._media[media_id] = _plain(media_metadata)

    def finished(self) -> None:
        self._sink.part("matrix/invites_and_knocks", self._invites)
        self._sink.part("matrix/media", self._media)
