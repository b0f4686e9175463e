"""Media in S3 (synapse-s3-storage-provider) against a real S3 server: SeaweedFS on loopback.

Its own Synapse (module-scoped) stores media in a bucket; the main suite's server stays local-only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import media_samples as samples
from harness import TEST_RATE_LIMITS, Api, SynapseServer, expect_error, fresh_database
from media_samples import download, upload
from seaweed import BUCKET, SeaweedS3


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    store = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    store.client().create_bucket(Bucket=BUCKET)
    yield store
    store.stop()


def _server(
    workdir: Path, s3: SeaweedS3, secret_key: str | None = None, database_url: str | None = None
) -> SynapseServer:
    overrides = {**TEST_RATE_LIMITS, "media_storage_providers": [s3.provider_config(secret_key)]}
    return SynapseServer(workdir, database_url=database_url, overrides=overrides)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory, s3: SeaweedS3) -> Iterator[SynapseServer]:
    with fresh_database() as database_url:
        hs = _server(tmp_path_factory.mktemp("synapse-s3"), s3, database_url=database_url)
        hs.start()
        yield hs
        hs.stop()


@pytest.fixture(scope="module")
def s3_api(s3_server: SynapseServer) -> Api:
    return Api(s3_server.base_url)


@pytest.fixture(scope="module")
def carol(s3_api: Api) -> dict[str, Any]:
    return s3_api.register()


def content_key(media_id: str) -> str:
    return f"local_content/{media_id[:2]}/{media_id[2:4]}/{media_id[4:]}"


def bucket_keys(s3: SeaweedS3, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_upload_lands_in_the_bucket_and_is_served_from_it(
    s3: SeaweedS3, s3_server: SynapseServer, s3_api: Api, carol: dict[str, Any]
) -> None:
    data = samples.pdf()
    body = upload(s3_api, carol, "file", data, "application/pdf", "referral.pdf").json()
    stored = s3.client().get_object(Bucket=BUCKET, Key=content_key(body["file_id"]))
    assert stored["Body"].read() == data

    local = s3_server.workdir / "media_store" / content_key(body["file_id"])
    assert local.exists()
    os.remove(local)  # only the bucket has it now
    served = download(s3_api, carol, body["media_url"])
    assert served.status_code == 200 and served.content == data


def test_delete_removes_the_objects(s3: SeaweedS3, s3_api: Api, carol: dict[str, Any]) -> None:
    body = upload(s3_api, carol, "image", samples.jpeg_with_gps(size=(800, 600)), "image/jpeg").json()
    media_id = body["file_id"]
    cleaned = s3.client().get_object(Bucket=BUCKET, Key=content_key(media_id))["Body"].read()
    assert b"MedCam" not in cleaned and cleaned[:2] == b"\xff\xd8"  # the bucket holds the stripped file
    thumbnails = f"local_thumbnails/{media_id[:2]}/{media_id[2:4]}/{media_id[4:]}/"
    assert bucket_keys(s3, thumbnails)  # Synapse's thumbnails went to the bucket too

    assert s3_api.call("DELETE", f"/api/chat/upload/{media_id}", token=carol["access_token"]).status_code == 200
    with pytest.raises(ClientError) as missing:
        s3.client().head_object(Bucket=BUCKET, Key=content_key(media_id))
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    assert bucket_keys(s3, thumbnails) == []
    expect_error(download(s3_api, carol, body["media_url"]), 404, "M_NOT_FOUND")


def test_wrong_secret_is_refused(s3: SeaweedS3, tmp_path: Path) -> None:
    with pytest.raises(ClientError) as refused:
        s3.client(secret_key="not-the-secret").list_objects_v2(Bucket=BUCKET)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    hs = _server(tmp_path, s3, secret_key="not-the-secret")  # SQLite: a second, short-lived server
    hs.start()
    try:
        api = Api(hs.base_url)
        user = api.register()
        before = bucket_keys(s3, "local_content/")
        expect_error(upload(api, user, "file", samples.pdf(), "application/pdf"), 502, "M_UNKNOWN")
        assert bucket_keys(s3, "local_content/") == before  # nothing was written
        assert not [p for p in (tmp_path / "media_store").rglob("*") if p.is_file()]  # nor kept locally
    finally:
        hs.stop()
