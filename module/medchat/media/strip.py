"""Removes metadata from images so a clinical photo carries no location, device or author data.

Stripping works on the container, losslessly and streaming: the walk reads the spooled upload
through a 1 MiB window and the result is a list of kept byte ranges of it (`Spliced`), which the
media store copies straight from the upload file, so no copy of the image is held in memory and
the pixels are not re-encoded. It keeps only what rendering needs:

- JPEG: keeps SOI, the frame/scan segments (DQT, DHT, SOFn, DRI, SOS + entropy-coded data), APP0
  JFIF, APP2 ICC_PROFILE and APP14 Adobe (colour transform); drops every other APPn segment
  (APP1 EXIF incl. GPS and the embedded EXIF thumbnail, APP1 XMP and extended XMP, APP2 MPF with
  its secondary images, APP13 Photoshop/IPTC, maker segments), COM comments and any bytes after EOI
  (vendor trailers, appended images). A photo whose EXIF orientation is not "upright" is re-encoded
  upright instead (quality 95, ICC profile kept), since dropping the tag would show it rotated.
- PNG: keeps IHDR, PLTE, IDAT, IEND and the rendering chunks (tRNS, gAMA, cHRM, sRGB, iCCP, sBIT,
  bKGD, pHYs, hIST, cICP, mDCV, cLLI, and acTL/fcTL/fdAT for animation); drops eXIf, tEXt, zTXt,
  iTXt (XMP), tIME and every private or unknown chunk. CRCs are checked.
- GIF: keeps the image blocks, graphic control, plain text and the NETSCAPE2.0/ANIMEXTS1.0 looping
  extensions; drops comment extensions and all other application extensions (XMP).
- WebP: drops the EXIF and XMP chunks and clears their flags in VP8X; keeps ICCP, animation, alpha
  and the bitstream.

- HEIC/HEIF: converted to JPEG (quality 92, colour profile kept, nothing else carried over): EXIF,
  XMP, depth maps, auxiliary images and thumbnails do not survive, the rotation (irot/imir) is
  applied to the pixels, and every client and Synapse's thumbnailer can show the result. HEIC
  cannot be stripped in place without rewriting its item tables, and few clients outside Apple's
  display it. Decoded by pillow-heif (libheif), called directly: Pillow's global plugin registry,
  which Synapse's thumbnailer shares, is left alone.

Every container walk checks the structure (segment/chunk lengths, PNG CRCs, the end marker), so a
truncated image is refused. Images up to Synapse's default `max_image_pixels` (32 Mi pixels, the
ones its thumbnailer decodes) are also decoded by Pillow (JPEG at 1/8 scale, which still reads all
scan data), so corrupt pixel data is refused here rather than failing later in the thumbnailer or
a client. Larger images get the structural and header checks only.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, cast

import pillow_heif
from PIL import Image, ImageOps

from medchat.media.body import ReadableFile, Spliced

_PILLOW_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
_HEIF_TYPES = frozenset({"image/heic", "image/heif"})

_ORIENTATION_TAG = 0x0112
_MAX_PIXELS = 100_000_000
_DECODE_CHECK_MAX_PIXELS = 32 * 1024 * 1024
_WINDOW = 1024 * 1024
_HEIC_JPEG_QUALITY = 92


def _pillow_file(f: ReadableFile) -> IO[bytes]:
    """Pillow declares IO[bytes] but reads only through read/seek/tell, which every ReadableFile has
    (a window on the upload or a splice of it, so nothing is copied into memory for Pillow)."""
    return cast(IO[bytes], f)


class ImageError(ValueError):
    """The image is truncated, corrupt or not what its header claims."""


@dataclass(frozen=True)
class CleanImage:
    content: ReadableFile
    size: int
    mime: str
    width: int
    height: int


def clean_image(mime: str, source: ReadableFile) -> CleanImage:
    """The image in the seekable `source` without metadata, checked to decode; ImageError if unusable.

    `content` reads from `source` (kept ranges of it), so `source` must stay open while it is used.
    """
    if mime in _HEIF_TYPES:
        return _heif_to_jpeg(source)
    if mime not in _PILLOW_FORMAT:
        raise ImageError(f"{mime} images cannot be stripped of metadata")
    if mime == "image/jpeg" and _needs_rotation(source):
        data = _reencode_upright(source)
        content: ReadableFile = io.BytesIO(data)
        size = len(data)
    else:
        spliced = Spliced(source, _kept_pieces(mime, source))
        content, size = spliced, len(spliced)
    width, height = _decode_check(content, _PILLOW_FORMAT[mime])
    content.seek(0)
    return CleanImage(content, size, mime, width, height)


def has_metadata(mime: str, source: ReadableFile) -> bool:
    """Whether the image carries anything `clean_image` would remove (EXIF, XMP, comments, text
    chunks, trailers); ImageError for a type this module cannot read or a broken image."""
    if mime in _HEIF_TYPES:
        try:
            info = pillow_heif.open_heif(source).info
        except Exception as e:  # libheif reports bad data with several types
            raise ImageError(f"The image cannot be decoded: {e}") from e
        return bool(info.get("exif") or info.get("xmp") or info.get("metadata"))
    if mime not in _PILLOW_FORMAT:
        raise ImageError(f"{mime} images cannot be checked for metadata")
    source.seek(0, io.SEEK_END)
    size = source.tell()
    return len(Spliced(source, _kept_pieces(mime, source))) != size


def _kept_pieces(mime: str, source: ReadableFile) -> list[bytes | tuple[int, int]]:
    reader, out = _Reader(source), _Pieces()
    try:
        _STRIPPERS[mime](reader, out)
    except (IndexError, struct.error) as e:
        raise ImageError("The image is truncated.") from e
    return out.pieces


def _decode_check(content: ReadableFile, pillow_format: str) -> tuple[int, int]:
    """Width and height from the header; images the thumbnailer would decode are decoded too."""
    content.seek(0)
    try:
        with Image.open(_pillow_file(content), formats=[pillow_format]) as im:
            width, height = im.size
            if width * height > _MAX_PIXELS:
                raise ImageError(f"The image is too large ({width}x{height} pixels).")
            if width * height > _DECODE_CHECK_MAX_PIXELS:
                return width, height
            if pillow_format == "JPEG":
                im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
            im.load()
            return width, height
    except ImageError:
        raise
    except Exception as e:  # Pillow signals bad data with many types (OSError, SyntaxError, ...)
        raise ImageError(f"The image cannot be decoded: {e}") from e


def _needs_rotation(source: ReadableFile) -> bool:
    """Reads the EXIF orientation (Pillow parses the header segments only, not the scan)."""
    source.seek(0)
    try:
        with Image.open(_pillow_file(source), formats=["JPEG"]) as im:
            return im.getexif().get(_ORIENTATION_TAG, 1) not in (1, None)
    except Exception as e:
        raise ImageError(f"The image cannot be decoded: {e}") from e


def _reencode_upright(source: ReadableFile) -> bytes:
    source.seek(0)
    try:
        with Image.open(_pillow_file(source), formats=["JPEG"]) as im:
            icc = im.info.get("icc_profile")
            upright = ImageOps.exif_transpose(im)
            upright.info.clear()  # Pillow would write a carried-over comment (COM) again
            out = io.BytesIO()
            upright.save(out, "JPEG", quality=95, icc_profile=icc)  # no exif= : nothing carried over
            return out.getvalue()
    except Exception as e:
        raise ImageError(f"The image cannot be decoded: {e}") from e


def _heif_to_jpeg(source: ReadableFile) -> CleanImage:
    source.seek(0)
    try:
        heif = pillow_heif.open_heif(source, convert_hdr_to_8bit=True)
        width, height = heif.size
        if width * height > _MAX_PIXELS:
            raise ImageError(f"The image is too large ({width}x{height} pixels).")
        icc = heif.info.get("icc_profile")
        im = heif.to_pillow()
        im.info.clear()  # EXIF, XMP, thumbnails, depth: only the pixels and the colour profile go on
        out = io.BytesIO()
        im.convert("RGB").save(out, "JPEG", quality=_HEIC_JPEG_QUALITY, icc_profile=icc)
    except ImageError:
        raise
    except Exception as e:  # libheif reports bad data with several types
        raise ImageError(f"The image cannot be decoded: {e}") from e
    size = out.tell()
    out.seek(0)
    return CleanImage(out, size, "image/jpeg", width, height)


# --- bounded-memory access to the upload ----------------------------------------------------------


class _Reader:
    """Random access to a seekable file through one window of `_WINDOW` bytes."""

    def __init__(self, f: ReadableFile):
        f.seek(0, io.SEEK_END)
        self.size = f.tell()
        self._f, self._start, self._buf = f, 0, b""

    def _load(self, pos: int, n: int = _WINDOW) -> None:
        self._f.seek(pos)
        self._start, self._buf = pos, self._f.read(max(n, _WINDOW))

    def byte(self, pos: int) -> int:
        i = pos - self._start
        if not 0 <= i < len(self._buf):
            self._load(pos)
            i = 0
        if i >= len(self._buf):
            raise ImageError("The image is truncated.")
        return self._buf[i]

    def at(self, pos: int, n: int) -> bytes:
        """Exactly `n` bytes at `pos` (small reads: headers, lengths)."""
        if pos < self._start or pos + n > self._start + len(self._buf):
            self._load(pos, n)
        data = self._buf[pos - self._start : pos - self._start + n]
        if len(data) != n:
            raise ImageError("The image is truncated.")
        return data

    def windows(self, start: int, end: int) -> Iterator[memoryview]:
        """[start, end) as successive views of the window."""
        if end > self.size:
            raise ImageError("The image is truncated.")
        pos = start
        while pos < end:
            if not self._start <= pos < self._start + len(self._buf):
                self._load(pos)
            i = pos - self._start
            view = memoryview(self._buf)[i : i + end - pos]
            if not view:
                raise ImageError("The image is truncated.")
            yield view
            pos += len(view)

    def find(self, pattern: re.Pattern[bytes], pos: int) -> int | None:
        """Where `pattern` (at most 2 bytes long) first matches at or after `pos`."""
        while pos < self.size:
            if not self._start <= pos < self._start + len(self._buf) - 1:
                self._load(pos)
            match = pattern.search(self._buf, pos - self._start)
            if match:
                return self._start + match.start()
            end = self._start + len(self._buf)
            if end >= self.size or len(self._buf) < 2:
                return None
            pos = end - 1  # a match may straddle the window's end
        return None


class _Pieces:
    """The output of a walk: kept ranges of the source (merged when adjacent) and new bytes."""

    def __init__(self) -> None:
        self.pieces: list[bytes | tuple[int, int]] = []

    def keep(self, start: int, end: int) -> None:
        last = self.pieces[-1] if self.pieces else None
        if isinstance(last, tuple) and last[1] == start:
            self.pieces[-1] = (last[0], end)
        elif end > start:
            self.pieces.append((start, end))

    def add(self, data: bytes) -> None:
        self.pieces.append(data)


# --- JPEG -----------------------------------------------------------------------------------------

_JPEG_KEEP_APP = {0xE0: (b"JFIF\x00", b"JFXX\x00"), 0xE2: (b"ICC_PROFILE\x00",), 0xEE: (b"Adobe",)}
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # ends entropy-coded data (not stuffing/RSTn)


def _strip_jpeg(r: _Reader, out: _Pieces) -> None:
    out.keep(0, 2)
    pos = 2
    while True:
        if r.byte(pos) != 0xFF:
            raise ImageError("The JPEG structure is corrupt.")
        while r.byte(pos) == 0xFF:
            pos += 1
        marker = r.byte(pos)
        pos += 1
        if marker == 0xD9:
            out.keep(pos - 2, pos)
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.keep(pos - 2, pos)
            continue
        length = int.from_bytes(r.at(pos, 2), "big")
        if length < 2 or pos + length > r.size:
            raise ImageError("The image is truncated.")
        is_metadata = 0xE0 <= marker <= 0xEF or marker == 0xFE
        if not is_metadata or r.at(pos + 2, min(12, length - 2)).startswith(_JPEG_KEEP_APP.get(marker, ())):
            out.keep(pos - 2, pos + length)
        pos += length
        if marker == 0xDA:
            end = r.find(_NEXT_MARKER, pos)
            if end is None:
                raise ImageError("The image is truncated.")
            out.keep(pos, end)
            pos = end


# --- PNG ------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = frozenset(
    c.encode()
    for c in "IHDR PLTE IDAT IEND tRNS gAMA cHRM sRGB iCCP sBIT bKGD pHYs hIST cICP mDCV cLLI acTL fcTL fdAT".split()
)


def _strip_png(r: _Reader, out: _Pieces) -> None:
    out.keep(0, 8)
    pos = 8
    while True:
        length, kind = struct.unpack(">I4s", r.at(pos, 8))
        end = pos + 12 + length
        if end > r.size:
            raise ImageError("The image is truncated.")
        crc = 0
        for view in r.windows(pos + 4, end - 4):
            crc = zlib.crc32(view, crc)
        if crc != struct.unpack(">I", r.at(end - 4, 4))[0]:
            raise ImageError(f"The PNG chunk {kind!r} is corrupt (CRC mismatch).")
        if kind in _PNG_KEEP:
            out.keep(pos, end)
        pos = end
        if kind == b"IEND":
            return


# --- GIF ------------------------------------------------------------------------------------------

_GIF_KEEP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _skip_sub_blocks(r: _Reader, pos: int) -> int:
    while True:
        size = r.byte(pos)
        pos += 1
        if size == 0:
            return pos
        pos += size


def _strip_gif(r: _Reader, out: _Pieces) -> None:
    flags = r.byte(10)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    out.keep(0, pos)
    while True:
        block = r.byte(pos)
        if block == 0x3B:
            out.keep(pos, pos + 1)
            return
        if block == 0x21:
            label = r.byte(pos + 1)
            end = _skip_sub_blocks(r, pos + 2)
            keep = label in (0xF9, 0x01) or (label == 0xFF and r.at(pos + 3, 11) in _GIF_KEEP_APPS)
        elif block == 0x2C:
            local = r.byte(pos + 9)
            start = pos + 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            end = _skip_sub_blocks(r, start + 1)
            keep = True
        else:
            raise ImageError("The GIF structure is corrupt.")
        if end > r.size:
            raise ImageError("The image is truncated.")
        if keep:
            out.keep(pos, end)
        pos = end


# --- WebP -----------------------------------------------------------------------------------------

_VP8X_METADATA_FLAGS = 0x08 | 0x04  # EXIF, XMP


def _strip_webp(r: _Reader, out: _Pieces) -> None:
    riff_end = 8 + struct.unpack("<I", r.at(4, 4))[0]
    if riff_end > r.size:
        raise ImageError("The image is truncated.")
    body = _Pieces()
    pos = 12
    while pos < riff_end:
        kind, size = struct.unpack("<4sI", r.at(pos, 8))
        end = pos + 8 + size + (size & 1)
        if end > riff_end:
            raise ImageError("The image is truncated.")
        if kind == b"VP8X":
            chunk = bytearray(r.at(pos, end - pos))
            chunk[8] &= ~_VP8X_METADATA_FLAGS & 0xFF
            body.add(bytes(chunk))
        elif kind not in (b"EXIF", b"XMP "):
            body.keep(pos, end)
        pos = end
    length = sum(len(p) if isinstance(p, bytes) else p[1] - p[0] for p in body.pieces)
    out.add(b"RIFF" + struct.pack("<I", 4 + length) + b"WEBP")
    out.pieces += body.pieces


_STRIPPERS: dict[str, Callable[[_Reader, _Pieces], None]] = {
    "image/jpeg": _strip_jpeg,
    "image/png": _strip_png,
    "image/gif": _strip_gif,
    "image/webp": _strip_webp,
}
