"""Removes metadata from images so a clinical photo carries no location, device or author data.

Stripping works on the container, losslessly (the pixels are not re-encoded, so there is no quality
loss and it costs one pass over the bytes), keeping only what rendering needs:

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
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

_PILLOW_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
STRIPPABLE = frozenset(_PILLOW_FORMAT)

_ORIENTATION_TAG = 0x0112
_MAX_PIXELS = 100_000_000
_DECODE_CHECK_MAX_PIXELS = 32 * 1024 * 1024


class ImageError(ValueError):
    """The image is truncated, corrupt or not what its header claims."""


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    width: int
    height: int


def clean_image(mime: str, data: bytes) -> CleanImage:
    """`data` without metadata, checked to decode; raises ImageError for anything unusable."""
    if mime not in _PILLOW_FORMAT:
        raise ImageError(f"{mime} images cannot be stripped of metadata")
    try:
        stripped = _STRIPPERS[mime](data)
    except (IndexError, struct.error) as e:
        raise ImageError("The image is truncated.") from e
    if mime == "image/jpeg" and _needs_rotation(data):
        stripped = _reencode_upright(data)
    width, height = _decode_check(stripped, _PILLOW_FORMAT[mime])
    return CleanImage(stripped, width, height)


def carries_metadata(mime: str, data: bytes) -> bool:
    """Whether `data` holds anything `clean_image` would drop (EXIF and GPS, XMP, comments, text
    chunks, trailers): an image is metadata-free exactly when stripping leaves it unchanged, as
    it does an image uploaded through the API. Raises ImageError for a type that cannot be
    stripped (so cannot be vouched for) or a truncated image."""
    if mime not in _STRIPPERS:
        raise ImageError(f"{mime} images cannot be checked for metadata")
    try:
        return _STRIPPERS[mime](data) != data
    except (IndexError, struct.error) as e:
        raise ImageError("The image is truncated.") from e


def _decode_check(data: bytes, pillow_format: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data), formats=[pillow_format]) as im:
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


def _needs_rotation(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
            return im.getexif().get(_ORIENTATION_TAG, 1) not in (1, None)
    except Exception as e:
        raise ImageError(f"The image cannot be decoded: {e}") from e


def _reencode_upright(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
            icc = im.info.get("icc_profile")
            upright = ImageOps.exif_transpose(im)
            out = io.BytesIO()
            upright.save(out, "JPEG", quality=95, icc_profile=icc)
            # Pillow carries some metadata over by itself (the COM comment, XMP): strip the result.
            return _strip_jpeg(out.getvalue())
    except Exception as e:
        raise ImageError(f"The image cannot be decoded: {e}") from e


# --- JPEG -----------------------------------------------------------------------------------------

_JPEG_KEEP_APP = {0xE0: (b"JFIF\x00", b"JFXX\x00"), 0xE2: (b"ICC_PROFILE\x00",), 0xEE: (b"Adobe",)}
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # ends entropy-coded data (not stuffing/RSTn)


def _strip_jpeg(data: bytes) -> bytes:
    view = memoryview(data)
    out: list[bytes | memoryview] = [b"\xff\xd8"]
    pos = 2
    while True:
        if data[pos] != 0xFF:
            raise ImageError("The JPEG structure is corrupt.")
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(bytes((0xFF, marker)))
            continue
        length = int.from_bytes(view[pos : pos + 2], "big")
        if length < 2 or pos + length > len(data):
            raise ImageError("The image is truncated.")
        segment = view[pos : pos + length]
        is_metadata = 0xE0 <= marker <= 0xEF or marker == 0xFE
        if not is_metadata or bytes(segment[2:14]).startswith(_JPEG_KEEP_APP.get(marker, ())):
            out += [bytes((0xFF, marker)), segment]
        pos += length
        if marker == 0xDA:
            end = _NEXT_MARKER.search(data, pos)
            if end is None:
                raise ImageError("The image is truncated.")
            out.append(view[pos : end.start()])
            pos = end.start()


# --- PNG ------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = frozenset(
    c.encode()
    for c in "IHDR PLTE IDAT IEND tRNS gAMA cHRM sRGB iCCP sBIT bKGD pHYs hIST cICP mDCV cLLI acTL fcTL fdAT".split()
)


def _strip_png(data: bytes) -> bytes:
    view = memoryview(data)
    out: list[bytes | memoryview] = [_PNG_SIGNATURE]
    pos = 8
    while True:
        if pos + 12 > len(data):
            raise ImageError("The image is truncated.")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise ImageError("The image is truncated.")
        if zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise ImageError(f"The PNG chunk {kind!r} is corrupt (CRC mismatch).")
        if kind in _PNG_KEEP:
            out.append(view[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)


# --- GIF ------------------------------------------------------------------------------------------

_GIF_KEEP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        size = data[pos]
        pos += 1
        if size == 0:
            return pos
        pos += size


def _strip_gif(data: bytes) -> bytes:
    view = memoryview(data)
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    out: list[bytes | memoryview] = [view[:pos]]
    while True:
        block = data[pos]
        if block == 0x3B:
            out.append(b";")
            return b"".join(out)
        if block == 0x21:
            label = data[pos + 1]
            end = _skip_sub_blocks(data, pos + 2)
            keep = label in (0xF9, 0x01) or (label == 0xFF and bytes(view[pos + 3 : pos + 14]) in _GIF_KEEP_APPS)
        elif block == 0x2C:
            local = data[pos + 9]
            start = pos + 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            end = _skip_sub_blocks(data, start + 1)
            keep = True
        else:
            raise ImageError("The GIF structure is corrupt.")
        if end > len(data):
            raise ImageError("The image is truncated.")
        if keep:
            out.append(view[pos:end])
        pos = end


# --- WebP -----------------------------------------------------------------------------------------

_VP8X_METADATA_FLAGS = 0x08 | 0x04  # EXIF, XMP


def _strip_webp(data: bytes) -> bytes:
    view = memoryview(data)
    riff_end = 8 + struct.unpack_from("<I", data, 4)[0]
    if riff_end > len(data):
        raise ImageError("The image is truncated.")
    chunks: list[bytes | memoryview] = []
    pos = 12
    while pos < riff_end:
        kind, size = struct.unpack_from("<4sI", data, pos)
        end = pos + 8 + size + (size & 1)
        if end > riff_end:
            raise ImageError("The image is truncated.")
        if kind == b"VP8X":
            chunk = bytearray(view[pos:end])
            chunk[8] &= ~_VP8X_METADATA_FLAGS & 0xFF
            chunks.append(bytes(chunk))
        elif kind not in (b"EXIF", b"XMP "):
            chunks.append(view[pos:end])
        pos = end
    body = b"".join(chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


_STRIPPERS: dict[str, Callable[[bytes], bytes]] = {
    "image/jpeg": _strip_jpeg,
    "image/png": _strip_png,
    "image/gif": _strip_gif,
    "image/webp": _strip_webp,
}
