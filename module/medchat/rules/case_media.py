"""Images in case rooms must be metadata-free, whichever way they were uploaded.

The API strips every image on upload, but a Matrix client can upload with
`/_matrix/media/v3/upload` (EXIF and GPS intact) and send the `mxc://` into a case room. So every
message or sticker a local user sends into a case room has the files it shows (its `url`, its
`info.thumbnail_url`, and those of an edit's new content) checked by their bytes: a file whose
bytes are an image must be one the stripper would leave unchanged (`media.strip.has_metadata`);
an image type that cannot be stripped (TIFF, HEIC, ...) cannot be vouched for and is refused too.
Non-image files pass.

The same holds for the pictures a case room shows besides messages: the room's avatar
(`m.room.avatar` `url` and thumbnail) and its members' avatars (`m.room.member` `avatar_url`, from
their profile, so a member whose profile picture carries metadata cannot join until it is replaced
by one uploaded through the app). These are state events, which the spam check does not see on
every route (createRoom, membership changes), so they are checked by the event rules.

Media that cannot be checked is refused: an `mxc://` of another server (its bytes are not here;
upload the file to this server) or a media id this server does not have. Events of remote users are
left to their own server (a MedChat peer runs this same rule on its users), as their files are there.

Local media never changes once uploaded, so each verdict is cached by media id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from medchat import errors
from medchat.federation.caserooms import CaseRoomGate
from medchat.media.body import ReadableFile
from medchat.media.sniff import sniff
from medchat.media.strip import ImageError, has_metadata
from medchat.metrics import RULE_REFUSALS
from medchat.roomtypes import is_case_room_create
from medchat.synapse import SynapseMedia

RULE = "case_room_media_metadata"
AVATAR, MEMBER = "m.room.avatar", "m.room.member"
CLEAN = ""  # the verdict of a file that may be shown in a case room
_CACHE_SIZE = 10_000


def media_urls(content: Mapping[str, Any]) -> list[str]:
    """Every file an event shows: its own (a member's avatar) and its thumbnail, and those of an
    edit's new content (event content is Synapse's immutabledict, hence Mapping)."""
    urls = []
    for part in (content, content.get("m.new_content")):
        if isinstance(part, Mapping):
            info = part.get("info")
            thumbnail = info.get("thumbnail_url") if isinstance(info, Mapping) else None
            urls += [u for u in (part.get("url"), part.get("avatar_url"), thumbnail) if isinstance(u, str)]
    return urls


def inspect(f: ReadableFile) -> str:
    """CLEAN, or why the file may not be shown in a case room (run in a thread)."""
    mime = sniff(f)
    if not mime.startswith("image/"):
        return CLEAN
    try:
        return "it carries metadata (EXIF, GPS, XMP or comments)" if has_metadata(mime, f) else CLEAN
    except ImageError as e:
        return f"it cannot be checked for metadata ({e})"


class CaseRoomMedia:
    def __init__(self, api: ModuleApi, synapse_media: SynapseMedia, case_rooms: CaseRoomGate) -> None:
        self._api = api
        self._synapse_media = synapse_media
        self._case_rooms = case_rooms
        self._verdicts: OrderedDict[str, str] = OrderedDict()

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)
        api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)

    async def check_event_for_spam(self, event: Any) -> Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]:
        if event.type not in ("m.room.message", "m.sticker") or not self._api.is_mine(event.sender):
            return NOT_SPAM
        urls = media_urls(event.content)
        if not urls or not await self._case_rooms.is_case_room(event.room_id):
            return NOT_SPAM
        problem = await self._problem(urls)
        if problem is None:
            return NOT_SPAM
        return Codes.FORBIDDEN, problem.error_dict(None)

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        """Room and member avatars of local users in case rooms (remote ones: their server's)."""
        if event.type not in (AVATAR, MEMBER) or not self._api.is_mine(event.sender):
            return True, None
        if not is_case_room_create(state_events.get(("m.room.create", ""))):
            return True, None
        problem = await self._problem(media_urls(event.content))
        if problem is not None:
            raise problem
        return True, None

    async def _problem(self, urls: list[str]) -> SynapseError | None:
        """The refusal of the first file that may not be shown in a case room, if any."""
        for url in urls:
            problem = await self._verdict(url)
            if problem:
                RULE_REFUSALS.labels(rule=RULE, server_name=self._api.server_name).inc()
                message = f"Case rooms accept only metadata-free images: {url} cannot be shown here, as {problem}. Upload it through the app, which strips metadata."
                return SynapseError(403, message, errors.MEDIA_METADATA, {"org.medchat.rule": RULE})
        return None

    async def _verdict(self, url: str) -> str:
        server, _, media_id = url.removeprefix("mxc://").partition("/")
        if not url.startswith("mxc://") or server != self._api.server_name:
            return "it is not a file of this server, so it cannot be checked"
        if media_id in self._verdicts:
            self._verdicts.move_to_end(media_id)
            return self._verdicts[media_id]
        verdict = await self._synapse_media.inspect_local_media(media_id, inspect)
        if verdict is None:
            return "this server has no such file"  # not cached: an async upload may still complete
        self._verdicts[media_id] = verdict
        if len(self._verdicts) > _CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return verdict
