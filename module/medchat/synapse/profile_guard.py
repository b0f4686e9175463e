"""The module's own profile fields: refused on the Matrix client profile API.

MedChat publishes extended profile fields (MSC4133) under `org.medchat.` — the mirrored medical
profile and the signed attestation — and other servers read them. Synapse lets a user write any
custom field of their own profile (`PUT` / `DELETE /_matrix/client/v3/profile/{user}/{field}`,
and the unstable MSC4133 path), and it has no module callback that could refuse one before it is
stored (`on_profile_update` only reports it afterwards). So the two handlers of Synapse's
profile-field servlet are wrapped: a field under the module's prefix is refused before Synapse
reads the body or writes anything. The module writes its fields through the profile handler
(medchat.synapse.profiles.set_profile_field), never through this servlet.

Like the upload guard, this is written for the Synapse minor release in `WRITTEN_FOR` and refuses
to patch another. It must run before Synapse registers its servlets (module load does).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import synapse
from synapse.api.errors import SynapseError
from synapse.http.site import SynapseRequest
from synapse.rest.client.profile import ProfileFieldRestServlet
from synapse.types import JsonDict

from medchat.synapse.upload_guard import WRITTEN_FOR

Handler = Callable[[ProfileFieldRestServlet, SynapseRequest, str, str], Coroutine[Any, Any, tuple[int, JsonDict]]]


def guard_profile_fields(prefix: str, refusal: Callable[[str], SynapseError]) -> None:
    """Refuses client writes and deletes of every profile field starting with `prefix` (compared
    case-insensitively) with `refusal(field_name)`."""
    if not synapse.__version__.startswith(WRITTEN_FOR):
        raise RuntimeError(
            f"MedChat's profile-field guard was written for Synapse {', '.join(m + 'x' for m in WRITTEN_FOR)}, not {synapse.__version__}:"
            " review module/medchat/synapse/profile_guard.py, then widen the pin in pyproject.toml"
        )
    if getattr(ProfileFieldRestServlet, "_medchat_guarded", False):
        return
    folded = prefix.casefold()
    # Patching methods of a class is what mypy refuses by design (method-assign); it reads the
    # replacement as taking `self` twice (assignment).
    ProfileFieldRestServlet.on_PUT = _guarded(ProfileFieldRestServlet.on_PUT, folded, refusal)  # type: ignore[method-assign,assignment]
    ProfileFieldRestServlet.on_DELETE = _guarded(ProfileFieldRestServlet.on_DELETE, folded, refusal)  # type: ignore[method-assign,assignment]
    ProfileFieldRestServlet._medchat_guarded = True  # type: ignore[attr-defined]  # the patched-once mark


def _guarded(original: Handler, folded_prefix: str, refusal: Callable[[str], SynapseError]) -> Handler:
    async def handler(
        self: ProfileFieldRestServlet, request: SynapseRequest, user_id: str, field_name: str
    ) -> tuple[int, JsonDict]:
        if field_name.casefold().startswith(folded_prefix):
            raise refusal(field_name)
        return await original(self, request, user_id, field_name)

    return handler
