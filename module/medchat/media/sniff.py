"""Decides a file's type from its bytes (magic numbers), never from its name or declared type.

A small, dependency-free sniffer for the types a medical chat exchanges, plus the dangerous ones
it must recognise in order to refuse them (executables, scripts, HTML/SVG, archives). Containers
are looked into where the first bytes are not enough: ZIP (Office documents vs. plain archives),
ISO base media (HEIC/AVIF images, audio-only vs. video MP4), OLE2 (legacy Office vs. installers),
Ogg (Opus/Vorbis audio vs. Theora video).
"""

from __future__ import annotations

import re
import struct
import zipfile

from medchat.media.body import ReadableFile

OCTET_STREAM = "application/octet-stream"
HEAD_SIZE = 64 * 1024
_MOOV_SCAN_LIMIT = 16 * 1024 * 1024

_SIMPLE: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"{\\rtf", "application/rtf"),
    (128, b"DICM", "application/dicom"),
    (0, b"fLaC", "audio/flac"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"\xfe\xed\xfa\xce", "application/x-mach-binary"),
    (0, b"\xfe\xed\xfa\xcf", "application/x-mach-binary"),
    (0, b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (0, b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (0, b"\xca\xfe\xba\xbe", "application/x-mach-binary"),  # also Java classes: refused either way
    (0, b"\x00asm", "application/wasm"),
    (0, b"#!", "text/x-shellscript"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"\x28\xb5\x2f\xfd", "application/zstd"),
    (257, b"ustar", "application/x-tar"),
)

_OOXML = {
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_OLE_STREAMS = (
    ("WordDocument", "application/msword"),
    ("Workbook", "application/vnd.ms-excel"),
    ("Book", "application/vnd.ms-excel"),
    ("PowerPoint Document", "application/vnd.ms-powerpoint"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
# What browsers treat as markup (WHATWG MIME sniffing): refused so a stored file cannot become a page.
_MARKUP = re.compile(
    rb"^\s*<(!doctype\s+html|html|head|body|script|iframe|frame|frameset|object|embed|style|title|a|div|table|img|br|p|h1|font|b)[\s>/]",
    re.IGNORECASE,
)
_SVG = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_XML = re.compile(rb"^\s*<\?xml", re.IGNORECASE)
_TEXT_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")


def sniff(f: ReadableFile) -> str:
    """The MIME type of the seekable file `f` (its position is left at 0); octet-stream if unknown."""
    f.seek(0)
    head = f.read(HEAD_SIZE)
    try:
        return _sniff(head, f)
    finally:
        f.seek(0)


def _sniff(head: bytes, f: ReadableFile) -> str:
    for offset, magic, mime in _SIMPLE:
        if head[offset : offset + len(magic)] == magic:
            return mime
    if head[:2] == b"BM" and len(head) >= 26 and head[6:10] == b"\0\0\0\0":
        return "image/bmp"
    if head[:3] == b"ID3" and len(head) >= 10 and head[3] in (2, 3, 4) and head[4] == 0:
        return "audio/mpeg"
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] == b"\x31\x41\x59\x26\x53\x59":
        return "application/x-bzip2"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_type(f)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _ole_type(head)
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12], OCTET_STREAM)
    if head.startswith(b"OggS"):
        return _ogg_type(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[4:8] == b"ftyp":
        return _isobmff_type(head, f)
    if head[4:8] in _QUICKTIME_ATOMS and len(head) >= 8:
        return "video/quicktime"
    if _is_mpeg_audio_frame(head):
        return "audio/mpeg"
    if len(head) >= 7 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS
    return _text_type(head)


def _zip_type(f: ReadableFile) -> str:
    """OOXML documents are ZIPs with a [Content_Types].xml; anything else is an archive."""
    try:
        with zipfile.ZipFile(f) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "application/zip"
    if "[Content_Types].xml" in names:
        if any(n.lower().endswith("vbaproject.bin") for n in names):
            return "application/vnd.ms-office.macroenabled"
        for folder, mime in _OOXML.items():
            if any(n.startswith(folder) for n in names):
                return mime
    if "META-INF/MANIFEST.MF" in names or "AndroidManifest.xml" in names:
        return "application/java-archive"
    return "application/zip"


def _ole_type(head: bytes) -> str:
    """Legacy Office files are OLE2 containers named by their main stream; MSI installers are too."""
    for name, mime in _OLE_STREAMS:
        if name.encode("utf-16-le") + b"\x00\x00" in head:
            return mime
    return "application/x-ole-storage"


def _ogg_type(head: bytes) -> str:
    if b"OpusHead" in head:
        return "audio/ogg"  # the Opus codec: voice messages
    if b"\x01vorbis" in head or b"FLAC" in head[:128] or b"Speex" in head[:128]:
        return "audio/ogg"
    return "video/ogg"


def _isobmff_type(head: bytes, f: ReadableFile) -> str:
    size = struct.unpack(">I", head[:4])[0]
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    if head[8:12] in _AVIF_BRANDS:
        return "image/avif"
    if head[8:12] in _HEIF_BRANDS or (brands & _HEIF_BRANDS and not brands & {b"isom", b"mp41", b"mp42"}):
        return "image/heic"
    if head[8:12] == b"qt  ":
        return "video/quicktime"
    if head[8:12] in (b"M4A ", b"M4B ", b"M4P "):
        return "audio/mp4"
    handlers = _track_handlers(f)
    if b"vide" not in handlers and b"soun" in handlers:
        return "audio/mp4"
    return "video/mp4"


def _track_handlers(f: ReadableFile) -> set[bytes]:
    """The handler types (`vide`, `soun`, ...) of the tracks in the top-level `moov` box."""
    f.seek(0, 2)
    end = f.tell()
    pos = 0
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(16)
        size, kind = struct.unpack(">I4s", header[:8])
        header_len = 8
        if size == 1 and len(header) == 16:
            size, header_len = struct.unpack(">Q", header[8:16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header_len:
            return set()
        if kind == b"moov":
            f.seek(pos + header_len)
            moov = f.read(min(size - header_len, _MOOV_SCAN_LIMIT))
            return {moov[i + 12 : i + 16] for i in _find_all(moov, b"hdlr")}
        pos += size
    return set()


def _find_all(data: bytes, needle: bytes) -> list[int]:
    found, i = [], data.find(needle)
    while i != -1:
        found.append(i)
        i = data.find(needle, i + 1)
    return found


def _is_mpeg_audio_frame(head: bytes) -> bool:
    """An MPEG audio frame header (MP3 without ID3 tag): 11 sync bits, valid layer/bitrate/rate."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _text_type(head: bytes) -> str:
    """Plain text (UTF-8/UTF-16 without binary control bytes); markup is named so it is refused."""
    if not head:
        return OCTET_STREAM
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16-le" if head[:2] == b"\xff\xfe" else "utf-16-be"
        even = head[2 : 2 + (len(head) - 2) // 2 * 2]
        try:
            text = even.decode(encoding).encode("utf-8")
        except UnicodeDecodeError:
            return OCTET_STREAM
    else:
        text = head.removeprefix(b"\xef\xbb\xbf")
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as e:
            # The window may cut a multi-byte character at its end; anything else is binary.
            if e.start < len(text) - 3 or len(head) < HEAD_SIZE:
                return OCTET_STREAM
    if _TEXT_CONTROL.search(text):
        return OCTET_STREAM
    if _MARKUP.match(text):
        return "text/html"
    if _SVG.search(text[:4096]):
        return "image/svg+xml"
    if _XML.match(text):
        return "application/xml"
    return "text/plain"
