"""Upload bodies read in place from the file Twisted spooled them to: raw, or one multipart part.

Nothing here copies the body: a part is a window (`FileRange`) on the request's content file, which
Synapse's media store then streams to disk and object storage.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import BinaryIO, Protocol

_CHUNK = 1024 * 1024
_MAX_PART_HEADERS = 16 * 1024
_MAX_BOUNDARY = 200  # RFC 2046 allows 70; some clients send longer ones
MAX_PARTS = 64


class ReadableFile(Protocol):
    """What the sniffer, the metadata stripper and Synapse's media store read from: a seekable
    binary file, whether a real one (BinaryIO), a window on one (FileRange) or a splice (Spliced)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


class BodyError(ValueError):
    """The multipart body is malformed or lacks the expected field."""


class FileRange:
    """A read-only, seekable window [start, end) of a seekable binary file."""

    def __init__(self, f: ReadableFile, start: int, end: int):
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

    def __init__(self, f: ReadableFile, pieces: list[bytes | tuple[int, int]]):
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
    """The part named `field` of a multipart/form-data body, located by scanning for the boundary.

    Parts are visited in order and the scan stops at the field, at the close delimiter or after
    `MAX_PARTS` parts, so a body of many tiny parts costs neither memory nor much time.
    """
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= _MAX_BOUNDARY:
        raise BodyError(f"The multipart Content-Type needs a boundary of 1 to {_MAX_BOUNDARY} characters.")
    marker = b"--" + boundary.encode("latin-1", "replace")
    body = whole_body(f)
    delimiters = _delimiters(body, b"\r\n" + marker, prefix=b"\r\n")
    start, parts = next(delimiters, None), 0
    # Stops when no delimiter follows, or at the close delimiter: nothing after it is a part.
    while start is not None and _read(body, start + len(marker), start + len(marker) + 2) != b"--":
        parts += 1
        if parts > MAX_PARTS:
            raise BodyError(f"The multipart body has more than {MAX_PARTS} parts before its '{field}' field.")
        end = next(delimiters, None)
        if end is None:
            raise BodyError("The multipart body ends inside a part (no closing boundary).")
        headers_end = _headers_end(body, start, end)
        if headers_end + 4 > end - 2:
            raise BodyError("A multipart part is malformed.")
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
        start = end
    raise BodyError(f"The multipart body has no '{field}' field.")


def _delimiters(body: FileRange, delimiter: bytes, prefix: bytes) -> Iterator[int]:
    """Offsets of the delimiters in the body, in order; the body is read as if `prefix` preceded it."""
    carry, base, pos = prefix, -len(prefix), 0
    while chunk := _read(body, pos, pos + _CHUNK):  # the caller moves the file between yields
        pos += len(chunk)
        window = carry + chunk
        i = window.find(delimiter)
        while i != -1:
            yield base + i + 2  # points at the "--" of the delimiter line
            i = window.find(delimiter, i + 1)
        keep = len(delimiter) - 1
        base += len(window) - keep
        carry = window[-keep:]


def _headers_end(body: FileRange, start: int, end: int) -> int:
    head = _read(body, start, min(end, start + _MAX_PART_HEADERS))
    i = head.find(b"\r\n\r\n")
    if i == -1:
        raise BodyError("A multipart part has no header end.")
    return start + i


def _read(body: FileRange, start: int, end: int) -> bytes:
    body.seek(start)
    return body.read(end - start)
