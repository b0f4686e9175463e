"""Upload bodies read in place from the file Twisted spooled them to: raw, or one multipart part.

Nothing here copies the body: a part is a window (`FileRange`) on the request's content file, which
Synapse's media store then streams to disk and object storage.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from email.message import Message
from typing import BinaryIO

_CHUNK = 1024 * 1024
_MAX_PART_HEADERS = 16 * 1024


class BodyError(ValueError):
    """The multipart body is malformed or lacks the expected field."""


class FileRange:
    """A read-only, seekable window [start, end) of a seekable binary file."""

    def __init__(self, f: BinaryIO, start: int, end: int):
        self._f, self._start, self._end = f, start, end
        self._pos = 0

    def __len__(self) -> int:
        return self._end - self._start

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self)}[whence]
        self._pos = min(max(0, base + offset), len(self))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        remaining = len(self) - self._pos
        n = remaining if n is None or n < 0 else min(n, remaining)
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data


class Spliced:
    """A read-only, seekable file made of pieces: literal bytes and [start, end) ranges of `f`.

    What the metadata stripper hands to the media store: the kept segments of an image are ranges
    of the spooled upload, read from it as the store copies them, never gathered in memory.
    """

    def __init__(self, f: BinaryIO, pieces: list[bytes | tuple[int, int]]):
        self._f = f
        self._pieces = pieces
        self._starts: list[int] = []
        total = 0
        for piece in pieces:
            self._starts.append(total)
            total += len(piece) if isinstance(piece, bytes) else piece[1] - piece[0]
        self._size, self._pos = total, 0

    def __len__(self) -> int:
        return self._size

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + offset), self._size)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else min(n, self._size - self._pos)
        out: list[bytes] = []
        while n > 0:
            i = bisect_right(self._starts, self._pos) - 1
            piece, skip = self._pieces[i], self._pos - self._starts[i]
            if isinstance(piece, bytes):
                data = piece[skip : skip + n]
            else:
                self._f.seek(piece[0] + skip)
                data = self._f.read(min(n, piece[1] - piece[0] - skip))
                if not data:
                    raise OSError("The spooled upload ended early.")
            out.append(data)
            self._pos += len(data)
            n -= len(data)
        return out[0] if len(out) == 1 else b"".join(out)


@dataclass(frozen=True)
class Part:
    content: FileRange
    filename: str | None
    content_type: str | None


def whole_body(f: BinaryIO) -> FileRange:
    f.seek(0, os.SEEK_END)
    return FileRange(f, 0, f.tell())


def multipart_field(f: BinaryIO, content_type: str, field: str) -> Part:
    """The part named `field` of a multipart/form-data body, located by scanning for the boundary."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise BodyError("The multipart Content-Type has no boundary.")
    body = whole_body(f)
    delimiters = _find_all(body, b"\r\n--" + boundary.encode("latin-1"), prefix=b"\r\n")
    for start, end in zip(delimiters, delimiters[1:]):
        headers_end = _headers_end(body, start, end)
        disposition = Message()
        for line in _read(body, start, headers_end).decode("utf-8", "replace").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip():
                disposition[name.strip()] = value.strip()
        if disposition.get_param("name", header="content-disposition") == field:
            filename = disposition.get_param("filename", header="content-disposition")
            return Part(
                FileRange(f, headers_end + 4, end - 2),  # the CRLF before the next delimiter is framing
                filename if isinstance(filename, str) else None,
                disposition.get_content_type() if "content-type" in disposition else None,
            )
    raise BodyError(f"The multipart body has no '{field}' field.")


def _find_all(body: FileRange, delimiter: bytes, prefix: bytes) -> list[int]:
    """Offsets of every `delimiter` in the body; the body is read as if `prefix` preceded it."""
    found: list[int] = []
    body.seek(0)
    carry, base = prefix, -len(prefix)
    while chunk := body.read(_CHUNK):
        window = carry + chunk
        i = window.find(delimiter)
        while i != -1:
            found.append(base + i + 2)  # points at the "--" of the delimiter line
            i = window.find(delimiter, i + 1)
        keep = len(delimiter) - 1
        base += len(window) - keep
        carry = window[-keep:]
    return found


def _headers_end(body: FileRange, start: int, end: int) -> int:
    head = _read(body, start, min(end, start + _MAX_PART_HEADERS))
    i = head.find(b"\r\n\r\n")
    if i == -1:
        raise BodyError("A multipart part has no header end.")
    return start + i


def _read(body: FileRange, start: int, end: int) -> bytes:
    body.seek(start)
    return body.read(end - start)
