"""Sample files for the media tests, generated in code (no binary fixtures in the repository),
and the two HTTP calls they all make."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator
from typing import Any

import requests
from PIL import Image, PngImagePlugin

from harness import Api

GPS_LATITUDE = (51.0, 30.0, 26.37)
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="51,30.44N"/></x:xmpmeta>'
SECRET_TEXT = b"Patient Jane Roe, ward 7"


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A small image with some structure, so encoders produce real scan data."""
    im = Image.new("RGB", size, (200, 30, 30))
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            im.putpixel((x, y), (x * 3 % 256, y * 5 % 256, 90))
    return im


def camera_exif(orientation: int = 1) -> Image.Exif:
    """EXIF as a phone writes it: device, time, orientation and a GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "MedCam"  # Make
    exif[0x0110] = "MC-1 Pro"  # Model
    exif[0x0132] = "2024:05:01 10:00:00"  # DateTime
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", GPS_LATITUDE, "W", (0.0, 7.0, 39.0)
    return exif


def jpeg_with_gps(orientation: int = 1, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    photo(size).save(out, "JPEG", exif=camera_exif(orientation), xmp=XMP, comment=SECRET_TEXT, quality=90)
    return out.getvalue()


def png_with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", SECRET_TEXT.decode())
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    out = io.BytesIO()
    photo().save(out, "PNG", pnginfo=info, exif=camera_exif())
    return out.getvalue()


def webp_with_metadata() -> bytes:
    out = io.BytesIO()
    photo().save(out, "WEBP", exif=camera_exif(), xmp=XMP)
    return out.getvalue()


def heic_with_gps(size: tuple[int, int] = (64, 48)) -> bytes:
    """An iPhone-like HEIC (written by libheif through pillow-heif) with camera EXIF and XMP."""
    import pillow_heif

    out = io.BytesIO()
    pillow_heif.from_pillow(photo(size)).save(out, quality=90, exif=camera_exif().tobytes(), xmp=XMP)
    return out.getvalue()


def gif_with_comment() -> bytes:
    out = io.BytesIO()
    photo().convert("P").save(out, "GIF", comment=SECRET_TEXT)
    return out.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4(handler: bytes, brand: bytes = b"isom") -> bytes:
    """A minimal ISO-BMFF file whose only track has the given handler (b"vide" or b"soun")."""
    hdlr = _box(b"hdlr", b"\x00" * 8 + handler + b"\x00" * 13)
    moov = _box(b"moov", _box(b"trak", _box(b"mdia", hdlr)))
    return _box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"mp41") + moov + _box(b"mdat", b"\x00" * 64)


def ogg_opus() -> bytes:
    return (
        b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00" + b"\x00" * 64
    )


def wav() -> bytes:
    data = b"\x00\x00" * 800
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("notes.txt", "hello")
    return out.getvalue()


def dicom() -> bytes:
    return b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 32


def windows_exe() -> bytes:
    return b"MZ\x90\x00" + b"\x00" * 56 + b"PE\x00\x00" + b"\x00" * 64


def upload(
    api: Api,
    user: dict[str, Any],
    kind: str,
    data: bytes | Iterator[bytes],  # an iterator is sent chunked, with no Content-Length
    content_type: str = "application/octet-stream",
    filename: str | None = None,
) -> requests.Response:
    path = f"/api/chat/upload/{kind}" + (f"?filename={filename}" if filename else "")
    return api.call("POST", path, token=user["access_token"], data=data, headers={"Content-Type": content_type})


def download(api: Api, user: dict[str, Any], media_url: str) -> requests.Response:
    server_name, media_id = media_url.removeprefix("mxc://").split("/")
    return api.call("GET", f"/_matrix/client/v1/media/download/{server_name}/{media_id}", token=user["access_token"])
