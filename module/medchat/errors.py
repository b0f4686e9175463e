"""Every errcode the module answers with, and the errors it raises most often, in one place.

Spec errcodes are Synapse's `Codes` (re-exported here so a caller needs one import); MedChat's own
live under the `ORG_MEDCHAT_` namespace and are defined once below. Tests and the OpenAPI document
name the same strings, so renaming one is an API change.
"""

from __future__ import annotations

from synapse.api.errors import Codes, SynapseError

__all__ = ["Codes", "SynapseError"]

# Not a spec errcode, but what Synapse's own handlers answer for a conflicting request.
CONFLICT = "M_CONFLICT"

CONTACT_REFUSED = "ORG_MEDCHAT_CONTACT_REFUSED"
CONTACT_EXISTS = "ORG_MEDCHAT_CONTACT_EXISTS"
REQUEST_PENDING = "ORG_MEDCHAT_REQUEST_PENDING"
CASE_ROOM_REFUSED = "ORG_MEDCHAT_CASE_ROOM_REFUSED"
CASE_ROOM_ENCRYPTION_REFUSED = "ORG_MEDCHAT_CASE_ROOM_ENCRYPTION_REFUSED"
PHI_DETECTED = "ORG_MEDCHAT_PHI_DETECTED"
# Plaintext sent through the API into an end-to-end encrypted room: the app must encrypt it.
ENCRYPTION_REQUIRED = "ORG_MEDCHAT_ENCRYPTION_REQUIRED"
PHI_GUARD_MODE_REFUSED = "ORG_MEDCHAT_PHI_GUARD_MODE_REFUSED"
MEDIA_METADATA = "ORG_MEDCHAT_MEDIA_METADATA"
NO_INSTITUTION = "ORG_MEDCHAT_NO_INSTITUTION"
INSTITUTION_ONLY = "ORG_MEDCHAT_INSTITUTION_ONLY"
# A client's write of a profile field under MODULE_FIELD_PREFIX, which only the module writes.
MODULE_FIELD = "ORG_MEDCHAT_MODULE_FIELD"
# Another server did not answer a query the module made of it (e.g. a remote user's profile).
SERVER_UNREACHABLE = "ORG_MEDCHAT_SERVER_UNREACHABLE"

# The namespace of the extended profile fields the module publishes (mirror, attestation).
MODULE_FIELD_PREFIX = "org.medchat."


def invalid_param(message: str) -> SynapseError:
    """400 M_INVALID_PARAM: the message names the field and what is wrong with it."""
    return SynapseError(400, message, Codes.INVALID_PARAM)


def missing_param(message: str) -> SynapseError:
    return SynapseError(400, message, Codes.MISSING_PARAM)


def forbidden(message: str) -> SynapseError:
    return SynapseError(403, message, Codes.FORBIDDEN)


def not_found(message: str = "No such room, or you are not in it.") -> SynapseError:
    """404 M_NOT_FOUND. For rooms the default message: non-members learn nothing, not even that the
    room exists."""
    return SynapseError(404, message, Codes.NOT_FOUND)


def conflict(message: str, errcode: str = CONFLICT) -> SynapseError:
    return SynapseError(409, message, errcode)


def module_field(field: str) -> SynapseError:
    """403 MODULE_FIELD: a Matrix client may not write or delete one of the module's profile fields."""
    return SynapseError(
        403,
        f"The profile field {field} belongs to MedChat: it is written by the server, not by clients "
        "(change the medical profile through /api/auth/profile).",
        MODULE_FIELD,
    )
