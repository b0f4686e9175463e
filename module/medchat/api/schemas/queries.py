"""The query parameters each route reads, one pydantic model per route (or per family of routes
that read the same ones); read_query parses with it.

A model is the one definition of its parameters: it parses the strings of the query string into
typed values (a page size, a flag, an enum), refuses an unknown value or a missing required
parameter with a 400 naming it, and its fields are the `parameters` of the OpenAPI document.
Limits that depend on the server's configuration (the directory's page size) stay in the handlers.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from medchat import errors
from medchat.api.schemas.base import LenientQueryBool, Omittable, QueryBool, QueryParams
from medchat.api.schemas.requests import Level
from medchat.store.verification import STATUSES

MAX_PAGE = 100
CURSOR_MAX = 1000  # Matrix pagination tokens and our own cursors fit well within this

QueryText = Annotated[str, Field(min_length=1, max_length=200)]
Cursor = Annotated[str, Field(min_length=1, max_length=CURSOR_MAX)]
# A search term: 1 to 200 characters, not only blanks.
SearchTerm = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
_NEXT = "the `next_cursor` of the previous page"


class PageQuery(QueryParams):
    """The paging parameters every list takes, with the same names and meaning everywhere (a list
    may change the default page size): it answers the envelope of responses.page()."""

    limit: int = Field(20, ge=1, le=MAX_PAGE, description="page size")
    cursor: Omittable[Cursor] = Field(None, description=_NEXT)

    def offset(self) -> int:
        """Where the page starts, for a list paged by position (models.positional_page)."""
        if self.cursor is None:
            return 0
        if not self.cursor.isdigit():
            raise errors.invalid_param("Invalid field cursor.")
        return int(self.cursor)


# --- the practitioner directory (api/users.py, api/federation.py) --------------------------------

DIRECTORY_PAGE_DEFAULT = 20
_DIRECTORY_LIMIT = "page size (at most the server's `directory_page_size_max`, 100 by default)"


class DirectoryQuery(QueryParams):
    """GET /api/chat/users and /users/filter."""

    role: Omittable[QueryText] = Field(None, description="only this role")
    institution: Omittable[QueryText] = Field(None, description="only this institution")
    specialization: Omittable[QueryText] = Field(None, description="only this specialization")
    verified: Omittable[LenientQueryBool] = Field(None, description="only (un)verified practitioners")
    level: Omittable[Level] = Field(None, description="only this verification level")
    online: Omittable[LenientQueryBool] = Field(None, description="only users online (or offline) now")
    limit: int = Field(DIRECTORY_PAGE_DEFAULT, ge=1, description=_DIRECTORY_LIMIT)
    cursor: Omittable[Cursor] = Field(None, description=_NEXT)


class _SearchTerms(QueryParams):
    q: SearchTerm = Field(description="1 to 200 characters; every word matches a prefix of a name or field")
    scope: Literal["local", "federation"] = Field(
        "local", description="`federation` also asks the allow-listed servers"
    )


class DirectorySearchQuery(DirectoryQuery, _SearchTerms):
    """GET /api/chat/users/search: the words to find (first) and the listing's filters."""


class PeerSearchQuery(QueryParams):
    """What an allow-listed server may ask this one's directory (federation/directory.py PEER_PARAMS)."""

    q: SearchTerm = Field(description="the words to find")
    limit: int = Field(DIRECTORY_PAGE_DEFAULT, ge=1, description=_DIRECTORY_LIMIT)
    institution: Omittable[QueryText] = Field(None, description="only this institution")
    specialization: Omittable[QueryText] = Field(None, description="only this specialization")


# --- verification (api/verification.py) ----------------------------------------------------------

VerificationStatus = Literal["pending", "approved", "rejected"]
assert get_args(VerificationStatus) == STATUSES, "store.verification.STATUSES and VerificationStatus agree"


class VerificationListQuery(PageQuery):
    status: VerificationStatus = Field("pending", description="which requests")
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="page size")


# --- contacts (api/contacts.py) ---------------------------------------------------------------------


class _ContactFilters(QueryParams):
    favorite: Omittable[QueryBool] = Field(None, description="only favourites (or only the others)")
    blocked: Omittable[QueryBool] = Field(None, description="only blocked contacts (or only the others)")
    role: Omittable[QueryText] = Field(None, description="only this role")
    institution: Omittable[QueryText] = Field(None, description="only this institution")
    specialization: Omittable[QueryText] = Field(None, description="only this specialization")
    q: Omittable[QueryText] = Field(None, description="matches names, nicknames and usernames")


class _ContactPage(PageQuery):
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="page size")


class ContactListQuery(_ContactPage, _ContactFilters):
    """GET /api/chat/contacts: the filters, then the page."""


class _Direction(QueryParams):
    direction: Literal["incoming", "outgoing"] = Field("incoming", description="whose requests")


class ContactRequestsQuery(_ContactPage, _Direction):
    """GET /api/chat/contacts/requests."""


# --- rooms (api/rooms.py) ----------------------------------------------------------------------------


class RoomPageQuery(PageQuery):
    """A page of rooms: GET /api/chat/rooms and /api/chat/institutions/{name}/rooms."""


class ParticipantsQuery(QueryParams):
    """A page of a room's participants: GET /api/chat/rooms/{room_id}/participants."""

    limit: int = Field(50, ge=1, le=MAX_PAGE, description="page size")
    cursor: Omittable[Cursor] = Field(None, description=_NEXT)


class LeaveQuery(QueryParams):
    close: QueryBool = Field(False, description="group admins: remove every other member and invitee first")


# --- messages (api/messages.py) ----------------------------------------------------------------------


class MessageHistoryQuery(PageQuery):
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="page size")


class MessageSearchQuery(PageQuery):
    q: SearchTerm = Field(description="the words to find")


# --- uploads (api/upload.py) -------------------------------------------------------------------------


class UploadQuery(QueryParams):
    filename: Omittable[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        None, description="the file name (raw bodies)"
    )


# --- notifications (api/realtime.py) ---------------------------------------------------------------


class NotificationsQuery(PageQuery):
    unread: QueryBool = Field(False, description="only unread ones")


# --- the audit trail (api/admin.py) ------------------------------------------------------------------

# Milliseconds since the epoch (a database bigint: 400 beyond it, never an overflow).
Millis = Annotated[int, Field(ge=0, le=2**63 - 1)]
AuditText = Annotated[str, Field(min_length=1, max_length=255)]


class AuditQuery(QueryParams):
    actor: Omittable[AuditText] = Field(None, description="only entries by this user")
    action: Omittable[AuditText] = Field(None, description="only this action")
    target: Omittable[AuditText] = Field(None, description="only entries about this object")
    since: Omittable[Millis] = Field(None, description="from this time (ms since the epoch)")
    until: Omittable[Millis] = Field(None, description="up to this time (ms since the epoch)")
    cursor: Omittable[Millis] = Field(None, description=_NEXT)
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="page size")

    def filters(self) -> dict[str, str | int | None]:
        """What the audit store filters by."""
        return {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "since": self.since,
            "until": self.until,
        }


# --- GDPR (api/gdpr.py) ------------------------------------------------------------------------------


class ExportQuery(QueryParams):
    user_id: Omittable[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        None, description="whose data (server admins only; default: the caller)"
    )
