"""The magic-byte sniffer and the metadata stripper on their own (no server needed)."""

from __future__ import annotations

import io
import random
import tempfile
import tracemalloc

import pytest
from PIL import Image

import media_samples as samples
from medchat.media.body import whole_body
from medchat.media.sniff import sniff
from medchat.media.strip import CleanImage, ImageError, clean_image, has_metadata


def clean(mime: str, data: bytes) -> tuple[bytes, CleanImage]:
    """`clean_image` on an in-memory upload: the cleaned bytes and the result."""
    cleaned = clean_image(mime, whole_body(io.BytesIO(data)))
    out = cleaned.content.read()
    assert len(out) == cleaned.size
    return out, cleaned


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (samples.jpeg_with_gps(), "image/jpeg"),
        (samples.png_with_metadata(), "image/png"),
        (samples.webp_with_metadata(), "image/webp"),
        (samples.gif_with_comment(), "image/gif"),
        (samples.ogg_opus(), "audio/ogg"),
        (samples.wav(), "audio/wav"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 32, "audio/mpeg"),
        (b"\xff\xfb\x90\x64" + b"\x00" * 32, "audio/mpeg"),
        (samples.mp4(b"soun", b"M4A "), "audio/mp4"),
        (samples.mp4(b"soun"), "audio/mp4"),  # an isom file with only a sound track is audio
        (samples.mp4(b"vide"), "video/mp4"),
        (samples.mp4(b"vide", b"qt  "), "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + b"\x00" * 16, "video/webm"),
        (samples.mp4(b"pict", b"heic"), "image/heic"),
        (samples.pdf(), "application/pdf"),
        (samples.docx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (samples.dicom(), "application/dicom"),
        (b"Temperature 38.2, BP 120/80\nplan: review\n", "text/plain"),
        ("Fièvre, 38,2 °C\n".encode(), "text/plain"),
        ("\ufeffUTF-16 note".encode("utf-16-le").join([b"\xff\xfe", b""]), "text/plain"),
        (b"BMI 31, reviewed", "text/plain"),  # not a bitmap despite "BM"
        # Refused by default: executables, scripts, markup, archives.
        (samples.windows_exe(), "application/x-msdownload"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 32, "application/x-executable"),
        (b"#!/bin/sh\nrm -rf /\n", "text/x-shellscript"),
        (b"  <!DOCTYPE html><html><script>alert(1)</script>", "text/html"),
        (b"<script>alert(1)</script>", "text/html"),
        (b"<?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>", "image/svg+xml"),
        (samples.plain_zip(), "application/zip"),
        (b"Rar!\x1a\x07\x01\x00" + b"\x00" * 16, "application/vnd.rar"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 16, "application/gzip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "application/x-ole-storage"),  # e.g. an MSI
        (b"\x00\x01\x02binary\x00", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniff(data: bytes, expected: str) -> None:
    assert sniff(io.BytesIO(data)) == expected


def test_sniff_legacy_word_by_stream_name() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500 + "WordDocument".encode("utf-16-le") + b"\x00\x00"
    assert sniff(io.BytesIO(ole)) == "application/msword"


@pytest.mark.parametrize(
    ("make", "mime"),
    [
        (samples.jpeg_with_gps, "image/jpeg"),
        (samples.png_with_metadata, "image/png"),
        (samples.webp_with_metadata, "image/webp"),
        (samples.gif_with_comment, "image/gif"),
    ],
)
def test_strip_removes_every_metadata_block(make, mime: str) -> None:  # type: ignore[no-untyped-def]
    original = make()
    data, cleaned = clean(mime, original)
    for marker in (b"MedCam", b"MC-1 Pro", b"xmpmeta", samples.SECRET_TEXT, b"Exif\x00\x00"):
        assert marker not in data
    assert has_metadata(mime, io.BytesIO(original)) and not has_metadata(mime, io.BytesIO(data))
    with Image.open(io.BytesIO(data)) as im:
        assert not im.getexif()
        assert not {"exif", "xmp", "comment", "Author", "XML:com.adobe.xmp"} & set(im.info)
        assert im.size == (cleaned.width, cleaned.height) == (64, 48)
        with Image.open(io.BytesIO(original)) as before:
            assert im.convert("RGB").tobytes() == before.convert("RGB").tobytes()  # lossless


def test_rotated_photo_is_reencoded_upright_without_exif() -> None:
    data, cleaned = clean("image/jpeg", samples.jpeg_with_gps(orientation=6, size=(64, 48)))
    assert (cleaned.width, cleaned.height) == (48, 64)
    assert b"MedCam" not in data and b"Exif" not in data and samples.SECRET_TEXT not in data
    assert not has_metadata("image/jpeg", io.BytesIO(data))


@pytest.mark.parametrize("mime", ["image/jpeg", "image/png", "image/gif", "image/webp"])
def test_truncated_or_corrupt_images_are_refused(mime: str) -> None:
    good = {
        "image/jpeg": samples.jpeg_with_gps,
        "image/png": samples.png_with_metadata,
        "image/gif": samples.gif_with_comment,
        "image/webp": samples.webp_with_metadata,
    }[mime]()
    for bad in (good[: len(good) // 2], good[:-2], good[:20]):
        with pytest.raises(ImageError):
            clean(mime, bad)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    flipped[len(good) // 2 + 1] ^= 0x5A
    try:
        clean(mime, bytes(flipped))  # flipped pixels may still decode; it must not crash
    except ImageError:
        pass


def _large_jpeg(progressive: bool) -> bytes:
    """About 4 MB of camera-like JPEG (noise, EXIF, a comment) with a trailer after EOI."""
    noise = Image.frombytes("RGB", (1400, 1400), random.Random(7).randbytes(1400 * 1400 * 3))
    out = io.BytesIO()
    noise.save(
        out, "JPEG", quality=97, progressive=progressive, exif=samples.camera_exif(), comment=samples.SECRET_TEXT
    )
    data = out.getvalue() + b"trailer after EOI: " + samples.SECRET_TEXT
    assert len(data) > 2 * 1024 * 1024
    return data


def test_large_progressive_jpeg_is_stripped_losslessly_across_read_windows() -> None:
    """Several MiB, several scans: markers and segments straddle the stripper's 1 MiB windows."""
    original = _large_jpeg(progressive=True)
    data, cleaned = clean("image/jpeg", original)
    assert b"MedCam" not in data and samples.SECRET_TEXT not in data and data.endswith(b"\xff\xd9")
    assert (cleaned.width, cleaned.height) == (1400, 1400)
    with Image.open(io.BytesIO(data)) as im, Image.open(io.BytesIO(original)) as before:
        assert im.tobytes() == before.tobytes()


def test_heic_becomes_a_jpeg_without_metadata() -> None:
    original = samples.heic_with_gps()
    assert sniff(io.BytesIO(original)) == "image/heic" and b"MedCam" in original
    assert has_metadata("image/heic", io.BytesIO(original))
    data, cleaned = clean("image/heic", original)
    assert (cleaned.mime, cleaned.width, cleaned.height) == ("image/jpeg", 64, 48)
    assert b"MedCam" not in data and b"xmpmeta" not in data and b"Exif" not in data
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and not im.getexif() and im.size == (64, 48)
    for bad in (original[: len(original) // 2], original[:40]):
        with pytest.raises(ImageError):
            clean("image/heic", bad)


def test_stripping_streams_from_the_spooled_file() -> None:
    """Cleaning and then copying a 4 MB image out (as the media store does) allocates about the
    read window, not copies of the image."""
    spool = tempfile.TemporaryFile()
    spool.write(_large_jpeg(progressive=False))
    tracemalloc.start()
    try:
        cleaned = clean_image("image/jpeg", whole_body(spool))
        while cleaned.content.read(64 * 1024):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * 1024 * 1024, peak
