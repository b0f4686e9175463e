"""Backs up and restores what a MedChat server cannot be rebuilt without (docs/backup.md).

`scripts/backup DEST` writes, from a data directory's rendered homeserver.yaml:
  database.pgdump   PostgreSQL, `pg_dump -Fc` (one consistent snapshot while the server runs), or
  homeserver.db     SQLite, copied with SQLite's online backup API (safe while Synapse writes);
  media_store/      the local media store, copied after the database so every file it names is in;
  signing.key       the server's signing key: other servers pin it, a new one breaks federation;
  secrets.yaml      the macaroon key (it keys the audit pseudonyms: without the same key
                    /api/admin/audit/verify fails) and the other shared secrets;
  manifest.json     what was backed up, from which versions, with each file's SHA-256.
Media in an S3 bucket (media_storage_providers) is not copied: the manifest names the bucket, which
is backed up with the bucket's own tools (docs/backup.md).

`scripts/restore SRC` puts them into a fresh data directory and an empty database (DATABASE_URL,
or SQLite in the data directory) and refuses to overwrite an existing signing key or secrets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from medchat_dev.devconfig import ROOT, database_config

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pg_env(args: dict[str, Any]) -> dict[str, str]:
    """libpq's environment for Synapse's psycopg2 `database.args` (keeps the password off argv)."""
    env = dict(os.environ)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("database", "PGDATABASE")):
        if args.get(key) is not None:
            env[var] = str(args[key])
    if args.get("password"):
        env["PGPASSWORD"] = str(args["password"])
    return env


def _client_major(tool: str) -> int:
    """The major version of pg_dump / pg_restore on PATH ("pg_dump (PostgreSQL) 15.20" -> 15)."""
    found = shutil.which(tool)
    if found is None:
        raise SystemExit(f"{tool} is not installed (Debian: postgresql-client, the server's major version)")
    output = subprocess.run([found, "--version"], capture_output=True, text=True, check=True).stdout
    found_version = re.search(r"\(PostgreSQL\)\s+(\d+)", output)
    if found_version is None:
        raise SystemExit(f"cannot read the version of {tool}: {output!r}")
    return int(found_version.group(1))


def _server_major(env: dict[str, str]) -> int:
    conn = _connect(env)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version_num")
            return int(cur.fetchone()[0]) // 10000
    finally:
        conn.close()


def _connect(env: dict[str, str]) -> Any:
    """A psycopg2 connection to the database the libpq environment `env` names."""
    import psycopg2

    names = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGDATABASE": "dbname", "PGPASSWORD": "password"}
    params: dict[str, Any] = {kw: env[var] for var, kw in names.items() if var in env}
    return psycopg2.connect(connect_timeout=10, **params)


def backup(data_dir: Path, dest: Path) -> dict[str, Any]:
    """Writes the backup of data_dir's server into dest (new or empty); returns the manifest."""
    config = yaml.safe_load((data_dir / "homeserver.yaml").read_text())
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} is not empty: back up into a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o700)  # it holds the signing key and the secrets
    manifest: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "server_name": config["server_name"],
        "versions": _versions(),
    }
    database = config["database"]
    if database["name"] == "psycopg2":
        env = _pg_env(database["args"])
        client, server = _client_major("pg_dump"), _server_major(env)
        if client < server:
            raise SystemExit(f"pg_dump {client} cannot dump a PostgreSQL {server} server: install its client")
        subprocess.run(["pg_dump", "-Fc", "--no-owner", "-f", str(dest / "database.pgdump")], env=env, check=True)
        manifest["database"] = {"engine": "postgresql", "file": "database.pgdump", "pg_dump": client, "server": server}
    else:
        source = sqlite3.connect(database["args"]["database"])
        target = sqlite3.connect(dest / "homeserver.db")
        with target:
            source.backup(target)
        source.close()
        target.close()
        manifest["database"] = {"engine": "sqlite", "file": "homeserver.db"}
    media = Path(config.get("media_store_path", data_dir / "media_store"))
    if media.is_dir():
        shutil.copytree(media, dest / "media_store", symlinks=True)
    manifest["media_store"] = media.is_dir()
    manifest["media_buckets"] = [
        provider["config"].get("bucket")
        for provider in config.get("media_storage_providers") or []
        if "s3" in provider.get("module", "").lower()
    ]
    for name, source_path in (
        ("signing.key", Path(config["signing_key_path"])),
        ("secrets.yaml", data_dir / "secrets.yaml"),
    ):
        shutil.copy2(source_path, dest / name)
        (dest / name).chmod(0o600)
    manifest["files"] = {
        path.relative_to(dest).as_posix(): _sha256(path) for path in sorted(dest.rglob("*")) if path.is_file()
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _versions() -> dict[str, str]:
    import synapse

    from medchat.version import VERSION

    return {"synapse": synapse.__version__, "medchat": VERSION}


def restore(src: Path, data_dir: Path, database_url: str | None, force: bool = False) -> dict[str, Any]:
    """Restores the backup in src into data_dir and the (empty) database at database_url."""
    manifest = json.loads((src / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        if _sha256(src / name) != digest:
            raise SystemExit(f"{src / name} does not match its checksum: the backup is damaged")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("signing.key", "secrets.yaml"):
        if (data_dir / name).exists() and not force:
            raise SystemExit(f"{data_dir / name} exists: restore into a fresh data directory (or --force)")
    engine = manifest["database"]["engine"]
    target = database_config(database_url, data_dir)
    if (target["name"] == "psycopg2") != (engine == "postgresql"):
        raise SystemExit(
            f"the backup is of a {engine} database; set DATABASE_URL accordingly (to move between engines,"
            " restore on the same engine, then use Synapse's synapse_port_db)"
        )
    if engine == "postgresql":
        env = _pg_env(target["args"])
        _require_empty(env)
        client = _client_major("pg_restore")
        if client < manifest["database"]["pg_dump"]:
            raise SystemExit(f"pg_restore {client} cannot read a dump of pg_dump {manifest['database']['pg_dump']}")
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", "-d", env["PGDATABASE"], str(src / "database.pgdump")],
            env=env,
            check=True,
        )
    else:
        destination = Path(target["args"]["database"])
        if destination.exists() and not force:
            raise SystemExit(f"{destination} exists: restore into a fresh data directory (or --force)")
        source = sqlite3.connect(src / "homeserver.db")
        copy = sqlite3.connect(destination)
        with copy:
            source.backup(copy)
        source.close()
        copy.close()
    if (src / "media_store").is_dir():
        shutil.copytree(src / "media_store", data_dir / "media_store", symlinks=True, dirs_exist_ok=True)
    for name in ("signing.key", "secrets.yaml"):
        shutil.copy2(src / name, data_dir / name)
        (data_dir / name).chmod(0o600)
    return manifest


def _require_empty(env: dict[str, str]) -> None:
    """Refuses a database that already has tables: a restore goes into a fresh one."""
    conn = _connect(env)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            if cur.fetchone()[0]:
                raise SystemExit(f"database {env.get('PGDATABASE')} is not empty: restore into a new database")
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Back up or restore a MedChat server (docs/backup.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    save = commands.add_parser("backup", help="write a backup of the server into DEST")
    save.add_argument("dest", type=Path)
    load = commands.add_parser("restore", help="restore the backup in SRC into a fresh data dir and database")
    load.add_argument("src", type=Path)
    load.add_argument("--force", action="store_true", help="overwrite a signing key / secrets / SQLite file")
    for command in (save, load):
        command.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MEDCHAT_DATA_DIR", ROOT / "data")))
    args = parser.parse_args()
    if args.command == "backup":
        manifest = backup(args.data_dir.resolve(), args.dest)
        print(f"medchat: backed up {manifest['server_name']} into {args.dest}", file=sys.stderr)
        if manifest["media_buckets"]:
            print(f"medchat: media in S3 bucket(s) {manifest['media_buckets']}: back them up too", file=sys.stderr)
    else:
        url = os.environ.get("DATABASE_URL") or None
        if url is not None and urlparse(url).scheme not in ("postgres", "postgresql"):
            raise SystemExit("DATABASE_URL must be a postgresql:// URL")
        manifest = restore(args.src, args.data_dir.resolve(), url, force=args.force)
        print(
            f"medchat: restored {manifest['server_name']} ({manifest['created']}) into {args.data_dir}", file=sys.stderr
        )


if __name__ == "__main__":
    main()
