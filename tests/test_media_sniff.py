"""The magic-byte sniffer and the metadata stripper on their own (no server needed)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

import media_samples as samples
from medchat.media.sniff import sniff
from medchat.media.strip import ImageError, clean_image


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
    cleaned = clean_image(mime, original)
    for marker in (b"MedCam", b"MC-1 Pro", b"xmpmeta", samples.SECRET_TEXT, b"Exif\x00\x00"):
        assert marker not in cleaned.data
    with Image.open(io.BytesIO(cleaned.data)) as im:
        assert not im.getexif()
        assert not {"exif", "xmp", "comment", "Author", "XML:com.adobe.xmp"} & set(im.info)
        assert im.size == (cleaned.width, cleaned.height) == (64, 48)
        with Image.open(io.BytesIO(original)) as before:
            assert im.convert("RGB").tobytes() == before.convert("RGB").tobytes()  # lossless


def test_rotated_photo_is_reencoded_upright_without_exif() -> None:
    cleaned = clean_image("image/jpeg", samples.jpeg_with_gps(orientation=6, size=(64, 48)))
    assert (cleaned.width, cleaned.height) == (48, 64)
    assert b"MedCam" not in cleaned.data and b"Exif" not in cleaned.data


@pytest.mark.parametrize("mime", ["image/jpeg", "image/png", "image/gif", "image/webp"])
def test_truncated_or_corrupt_images_are_refused(mime: str) -> None:
    good = {"image/jpeg": samples.jpeg_with_gps, "image/png": samples.png_with_metadata,
            "image/gif": samples.gif_with_comment, "image/webp": samples.webp_with_metadata}[mime]()
    for bad in (good[: len(good) // 2], good[:-2], good[:20]):
        with pytest.raises(ImageError):
            clean_image(mime, bad)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    flipped[len(good) // 2 + 1] ^= 0x5A
    try:
        clean_image(mime, bytes(flipped))  # flipped pixels may still decode; it must not crash
    except ImageError:
        pass
