"""scripts/backup and scripts/restore, end to end on PostgreSQL (the production engine).

A server with messages, a contact, a verification, an upload and audit entries is backed up while
it runs, its database and data directory are then out of reach, and the backup is restored into a
fresh database and a fresh data directory: a server started on those must serve all of it, and
its audit chain must still verify (the macaroon key in secrets.yaml keys the pseudonyms).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import media_samples
from harness import (
    TEST_MODULE_CONFIG,
    TEST_RATE_LIMITS,
    Api,
    PostgresDatabase,
    SynapseServer,
    licence_verified,
    postgres_admin_url,
    register_admin,
)
from medchat_dev.devconfig import ROOT
from test_contacts import befriend, contact_ids
from test_messages import send
from test_rooms import create_room, room_path

pytestmark = pytest.mark.skipif(
    postgres_admin_url() is None, reason="backups are tested on PostgreSQL (MEDCHAT_TEST_POSTGRES)"
)


def _script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True, env=env, timeout=300)


def _state(api: Api, users: dict[str, Any], room: str, upload: dict[str, Any], admin: dict[str, Any]) -> dict[str, Any]:
    """Everything the restore must keep, as the API shows it."""
    alice, bob, doctor = users["alice"], users["bob"], users["doctor"]
    messages = api.call("GET", room_path(room, "/messages?limit=50"), token=bob["access_token"]).json()["results"]
    verification = api.call("GET", "/api/chat/verification/me", token=doctor["access_token"]).json()
    download = media_samples.download(api, alice, upload["media_url"])
    audit = api.call("GET", "/api/admin/audit", token=admin["access_token"]).json()
    verify = api.call("GET", "/api/admin/audit/verify", token=admin["access_token"])
    assert verify.status_code == 200, verify.text
    return {
        "messages": [(m["id"], m["content"], m["sender"]["id"]) for m in messages],
        "contacts": contact_ids(api, alice),
        "verification": (verification["verification_level"], len(verification["history"])),
        "upload": (download.status_code, download.content),
        "audit": [(entry["seq"], entry["action"], entry["hash"]) for entry in audit["results"]],
        "audit_verify": verify.json(),
    }


def test_a_backup_restores_into_a_fresh_database_and_data_dir(tmp_path: Path) -> None:
    admin_url = postgres_admin_url() or ""
    original_db, restored_db = PostgresDatabase(admin_url), PostgresDatabase(admin_url)
    original = SynapseServer(
        tmp_path / "original",
        database_url=original_db.url,
        overrides=TEST_RATE_LIMITS,
        module_overrides=TEST_MODULE_CONFIG,
    )
    restored: SynapseServer | None = None
    try:
        original.start()
        api = Api(original.base_url)
        alice, bob = api.register(), api.register()
        befriend(api, alice, bob)
        doctor = licence_verified(api, original)
        room = create_room(api, alice["access_token"], type="group", name="Ward round", participants=[bob["user_id"]])
        api.call(
            "POST", room_path(room["id"], "/participants"), token=bob["access_token"], json={"user_id": bob["user_id"]}
        )
        for i in range(4):
            send(api, alice if i % 2 == 0 else bob, room["id"], content=f"before the backup {i}")
        upload = media_samples.upload(api, alice, "file", media_samples.pdf(), "application/pdf", filename="notes.pdf")
        assert upload.status_code == 201, upload.text
        assert api.call("PUT", "/api/auth/profile", token=alice["access_token"], json={"role": "GP"}).status_code == 200
        admin = register_admin(original)
        users = {"alice": alice, "bob": bob, "doctor": doctor}
        before = _state(api, users, room["id"], upload.json(), admin)
        assert before["audit_verify"]["ok"] is True and before["audit"], before
        assert len(before["messages"]) >= 4 and bob["user_id"] in before["contacts"]

        backup_dir = tmp_path / "backup"
        made = _script("backup", str(backup_dir), "--data-dir", str(original.workdir))
        assert made.returncode == 0, made.stderr
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        assert manifest["database"]["engine"] == "postgresql"
        assert {"database.pgdump", "signing.key", "secrets.yaml"} <= set(manifest["files"])
        assert any(name.startswith("media_store/") for name in manifest["files"]), "the upload's file"
        assert (backup_dir / "secrets.yaml").stat().st_mode & 0o077 == 0
        original.stop()

        fresh_dir = tmp_path / "restored"
        env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": restored_db.url}
        done = _script("restore", str(backup_dir), "--data-dir", str(fresh_dir), env=env)
        assert done.returncode == 0, done.stderr
        again = _script("restore", str(backup_dir), "--data-dir", str(tmp_path / "other"), env=env)
        assert again.returncode != 0 and "not empty" in again.stderr, "a restore never lands on a used database"
        assert (fresh_dir / "signing.key").read_bytes() == (original.workdir / "signing.key").read_bytes()

        restored = SynapseServer(
            fresh_dir, database_url=restored_db.url, overrides=TEST_RATE_LIMITS, module_overrides=TEST_MODULE_CONFIG
        )
        restored.start()
        after = _state(Api(restored.base_url), users, room["id"], upload.json(), admin)
        assert after == before
    finally:
        original.stop()
        if restored is not None:
            restored.stop()
        original_db.drop()
        restored_db.drop()


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / "secrets.yaml").write_text("macaroon_secret_key: changed\n")
    manifest = {"files": {"secrets.yaml": "0" * 64}, "database": {"engine": "sqlite"}}
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))
    done = _script("restore", str(backup_dir), "--data-dir", str(tmp_path / "data"))
    assert done.returncode != 0 and "checksum" in done.stderr
    assert not (tmp_path / "data" / "secrets.yaml").exists()
