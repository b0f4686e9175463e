"""The upload guard: patches of SynapseRequest's body reading, so an oversized upload is refused
from its headers and a multipart upload reaches the module unparsed.

These replace three methods of Synapse's request class. They were written for, and tested on, the
Synapse minor releases in `WRITTEN_FOR` (the range pyproject.toml declares; docs/upgrade.md);
`guard_uploads` refuses to patch any other, so an upgrade reviews this file (and widens the pin)
before the server starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from io import BytesIO
from typing import IO, NamedTuple, cast
from urllib.parse import unquote

import synapse
from synapse.api.errors import SynapseError
from synapse.http.site import SynapseRequest

logger = logging.getLogger(__name__)

# The minor releases whose SynapseRequest (synapse/http/site.py) this was checked against: the same
# gotLength / handleContentChunk / requestReceived, and each passes `scripts/test-synapse`.
WRITTEN_FOR: tuple[str, ...] = ("1.162.", "1.163.")


def guard_uploads(
    path_prefix: bytes, oversize: Callable[[str, int], SynapseError | None]
) -> Callable[[SynapseRequest], str | None]:
    """Guards the POSTs under `path_prefix` (`{prefix}{kind}`) while Twisted reads them.

    - Size: `oversize(kind, length)` is asked as soon as the headers are in (Content-Length)
      and again for every chunk received (chunked bodies); an error it returns is answered at
      once (e.g. 413 M_TOO_LARGE as JSON) and the connection closed, so an oversized body is
      neither read nor spooled. For multipart bodies `length` excludes up to 64 KiB of framing
      (boundaries, part headers); the part itself is held to the exact limit later.
    - Forms: SynapseRequest drops every multipart POST (GHSA-rfq8-j7rh-8hf2) because Twisted
      would parse the whole body into memory, as it does for url-encoded forms. For the upload
      paths such a Content-Type is set aside before Twisted sees it (so nothing is parsed,
      and `request.args` holds only the query string); the module reads a multipart part
      from the spooled body file itself.

    Returns the getter for an upload request's original Content-Type.
    """
    global _upload_guard
    if not synapse.__version__.startswith(WRITTEN_FOR):
        releases = ", ".join(f"{minor}x" for minor in WRITTEN_FOR)
        raise RuntimeError(
            f"MedChat's upload guard was written for Synapse {releases}, not {synapse.__version__}:"
            " review module/medchat/synapse/upload_guard.py, then widen the pin in pyproject.toml"
        )
    _upload_guard = _UploadGuard(path_prefix, oversize)
    if not getattr(SynapseRequest, "_medchat_upload_guard", False):
        # Patching methods of a class is what mypy refuses by design (method-assign); the
        # replacements take a SynapseRequest where Twisted's declarations say Request (assignment).
        SynapseRequest.gotLength = _guarded_got_length(SynapseRequest.gotLength)  # type: ignore[method-assign,assignment]
        SynapseRequest.handleContentChunk = _guarded_content_chunk(SynapseRequest.handleContentChunk)  # type: ignore[method-assign,assignment]
        SynapseRequest.requestReceived = _guarded_request_received(SynapseRequest.requestReceived)  # type: ignore[method-assign,assignment]
        SynapseRequest._medchat_upload_guard = True  # type: ignore[attr-defined]  # the patched-once mark
    return lambda request: getattr(request, "medchat_content_type", None)


_MULTIPART_FRAMING = 64 * 1024

# Bodies Twisted parses into `request.args` in memory (and Synapse drops multipart outright); an
# upload sent as a form (curl --data-binary sends application/x-www-form-urlencoded) is a file.
_PARSED_FORMS = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class _UploadGuard(NamedTuple):
    path_prefix: bytes
    oversize: Callable[[str, int], SynapseError | None]


_upload_guard: _UploadGuard | None = None


def _upload_kind(request: SynapseRequest) -> str | None:
    """The `{kind}` of a POST under the guarded prefix, from the request line Twisted has parsed
    (the request object itself learns method and path only once the whole body is in)."""
    channel = request.channel
    if _upload_guard is None or getattr(channel, "_command", None) != b"POST":
        return None
    path = getattr(channel, "_path", b"").split(b"?", 1)[0]
    if not path.startswith(_upload_guard.path_prefix):
        return None
    kind = unquote(path[len(_upload_guard.path_prefix) :].decode("latin-1"))
    return kind if kind and "/" not in kind else None


def _refuse_upload(request: SynapseRequest, error: SynapseError) -> None:
    """Answers `error` as JSON straight onto the connection and closes it without reading on.

    Written to the transport, not through `Request.write`: the request has no method or path yet.
    """
    request.medchat_refused = True  # type: ignore[attr-defined]
    request.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after the answer
    logger.info("MedChat: refused an upload from %s before reading its body: %s", request.getClientAddress(), error.msg)
    body = json.dumps(error.error_dict(None)).encode()
    status = HTTPStatus(error.code)
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
    )
    transport = request.channel.transport
    if transport is not None:  # None only once the connection is gone: nobody to answer
        transport.write(head.encode("ascii") + body)
    request.channel.loseConnection()


def _check_upload_size(request: SynapseRequest, length: int) -> bool:
    """False (and the request answered) if `length` body bytes are too many for its upload kind."""
    kind, framing = request.medchat_upload  # type: ignore[attr-defined]
    assert _upload_guard is not None
    error = _upload_guard.oversize(kind, max(0, length - framing))
    if error is not None:
        _refuse_upload(request, error)
    return error is None


def _guarded_got_length(
    original: Callable[[SynapseRequest, int | None], None],
) -> Callable[[SynapseRequest, int | None], None]:
    def got_length(self: SynapseRequest, length: int | None) -> None:
        kind = _upload_kind(self)
        if kind is not None:
            ctype = self.requestHeaders.getRawHeaders(b"content-type")
            multipart = ctype is not None and b"multipart/form-data" in ctype[0].lower()
            self.medchat_upload = (kind, _MULTIPART_FRAMING if multipart else 0)  # type: ignore[attr-defined]
            if length is not None and not _check_upload_size(self, length):
                # Twisted's and Synapse's later calls expect a content file (Twisted declares the
                # attribute as None: it is set here, in place of gotLength).
                self.content = BytesIO()  # type: ignore[assignment]
                return
        original(self, length)

    return got_length


def _guarded_content_chunk(
    original: Callable[[SynapseRequest, bytes], None],
) -> Callable[[SynapseRequest, bytes], None]:
    def handle_content_chunk(self: SynapseRequest, data: bytes) -> None:
        if getattr(self, "medchat_refused", False):
            return  # what the client sent before the connection closed
        if getattr(self, "medchat_upload", None) and not _check_upload_size(
            self, cast(IO[bytes], self.content).tell() + len(data)
        ):
            return
        original(self, data)

    return handle_content_chunk


def _guarded_request_received(
    original: Callable[[SynapseRequest, bytes, bytes, bytes], None],
) -> Callable[[SynapseRequest, bytes, bytes, bytes], None]:
    def request_received(self: SynapseRequest, command: bytes, path: bytes, version: bytes) -> None:
        if getattr(self, "medchat_refused", False):
            return
        if getattr(self, "medchat_upload", None):
            ctype = self.requestHeaders.getRawHeaders(b"content-type")
            if ctype:
                self.medchat_content_type = ctype[0].decode("latin-1")  # type: ignore[attr-defined]
                if any(form in ctype[0].lower() for form in _PARSED_FORMS):
                    self.requestHeaders.setRawHeaders(b"content-type", [b"application/octet-stream"])
        original(self, command, path, version)

    return request_received
