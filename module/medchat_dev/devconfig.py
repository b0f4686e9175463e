"""Renders synapse.yaml into a runnable homeserver config for one local process.

Shared by scripts/run and the test harness, so both start Synapse from the same file:
`${NAME}` / `${NAME:-default}` come from the environment, `database:` from a DATABASE_URL, and the
secrets and signing key are generated once into the data directory and kept.

With `--cluster` the same renderer builds the worker topology (config/homeserver.yaml layered over
synapse.yaml, one config/workers/NAME.yaml per worker, config/nginx.conf) for docker-compose and
scripts/run-cluster; `redis:` then comes from REDIS_URL.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "synapse.yaml"
CLUSTER_CONFIG = ROOT / "config" / "homeserver.yaml"
WORKERS_DIR = ROOT / "config" / "workers"
NGINX_TEMPLATE = ROOT / "config" / "nginx.conf"
MEDIA_S3_CONFIG = ROOT / "config" / "media-s3.yaml"
LOG_JSON_CONFIG = ROOT / "config" / "log-json.yaml"
_SECRETS = ("registration_shared_secret", "macaroon_secret_key", "form_secret", "worker_replication_secret")
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def substitute(text: str, env: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise KeyError(f"synapse.yaml needs the environment variable {name}")
        return default

    return _PLACEHOLDER.sub(value, text)


def database_config(url: str | None, data_dir: Path) -> dict[str, Any]:
    """Synapse's `database:` section: PostgreSQL from a postgresql:// URL, else SQLite in data_dir."""
    if not url:
        return {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}}
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {parsed.scheme}://")
    args: dict[str, Any] = {
        "user": unquote(parsed.username or "postgres"),
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "database": parsed.path.lstrip("/") or "synapse",
        "cp_min": 5,
        "cp_max": 10,
    }
    if parsed.password:
        args["password"] = unquote(parsed.password)
    return {"name": "psycopg2", "args": args}


def redis_config(url: str | None) -> dict[str, Any]:
    """Synapse's `redis:` section from a redis://[user:password@]host:port[/db] URL."""
    parsed = urlparse(url or "redis://127.0.0.1:6379")
    if parsed.scheme != "redis":
        raise ValueError(f"REDIS_URL must be a redis:// URL, not {parsed.scheme}://")
    config: dict[str, Any] = {"enabled": True, "host": parsed.hostname or "127.0.0.1", "port": parsed.port or 6379}
    if parsed.username:
        config["username"] = unquote(parsed.username)
    if parsed.password:
        config["password"] = unquote(parsed.password)
    if parsed.path.strip("/"):
        config["dbid"] = int(parsed.path.strip("/"))
    return config


def ensure_secrets(data_dir: Path, server_name: str) -> Path:
    """Writes data_dir/secrets.yaml and the signing key on first use; later calls keep them."""
    from signedjson.key import generate_signing_key, write_signing_keys

    data_dir.mkdir(parents=True, exist_ok=True)
    key_path = data_dir / "signing.key"
    if not key_path.exists():
        with key_path.open("w") as f:
            write_signing_keys(f, [generate_signing_key("a_" + secrets.token_hex(2))])
        key_path.chmod(0o600)
    secrets_path = data_dir / "secrets.yaml"
    values = yaml.safe_load(secrets_path.read_text()) if secrets_path.exists() else {}
    missing = [name for name in _SECRETS if name not in values]
    if missing:  # a data dir from before a secret was added gets only the new one
        values.update({name: secrets.token_urlsafe(32) for name in missing})
        _write(secrets_path, f"# Generated for {server_name}; keep private.\n" + yaml.safe_dump(values), mode=0o600)
    return secrets_path


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Replaces `path` in one step, so a process starting beside this one never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def prepare(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    module_overrides: Mapping[str, Any] | None = None,
    template: Path = TEMPLATE,
    cluster: bool = False,
    extra_modules: list[dict[str, Any]] | None = None,
) -> list[Path]:
    """Renders the config into data_dir; returns the config files to pass to Synapse, in order.

    `overrides` are merged into the Synapse config, `module_overrides` into the MedChat module's;
    `extra_modules` are appended to `modules:`. `cluster` layers config/homeserver.yaml (workers,
    Redis) over the template; it needs PostgreSQL. config/media-s3.yaml (media in S3) is layered
    in when S3_BUCKET is set.
    """
    data_dir = data_dir.resolve()
    env = _render_env(data_dir, env)
    config = yaml.safe_load(substitute(template.read_text(), env))
    config["database"] = database_config(env.get("DATABASE_URL"), data_dir)
    if cluster:
        if config["database"]["name"] != "psycopg2":
            raise ValueError("the worker topology needs PostgreSQL: set DATABASE_URL=postgresql://...")
        config = deep_merge(config, yaml.safe_load(substitute(CLUSTER_CONFIG.read_text(), env)))
        config["redis"] = redis_config(env.get("REDIS_URL"))
    if env.get("S3_BUCKET"):
        config = deep_merge(config, yaml.safe_load(substitute(MEDIA_S3_CONFIG.read_text(), env)))
    if env.get("MEDCHAT_LOG_FORMAT", "text") not in ("text", "json"):
        raise ValueError("MEDCHAT_LOG_FORMAT is text (Synapse's default) or json (config/log-json.yaml)")
    if env.get("MEDCHAT_LOG_FORMAT") == "json":
        config["log_config"] = str(LOG_JSON_CONFIG)
    config = deep_merge(config, overrides or {})
    for module in config.get("modules", []):
        if module.get("module") == "medchat.MedChatModule":
            module["config"] = deep_merge(module.get("config") or {}, module_overrides or {})
            derive_federation_whitelist(config, module["config"])
    config["modules"] = [*config.get("modules", []), *(extra_modules or [])]
    secrets_path = ensure_secrets(data_dir, config["server_name"])
    config_path = data_dir / "homeserver.yaml"
    # 0600: it carries the database, Redis and S3 credentials from the environment.
    _write(
        config_path,
        "# Rendered from synapse.yaml; edit that file, not this one.\n" + yaml.safe_dump(config, sort_keys=False),
        mode=0o600,
    )
    return [config_path, secrets_path]


# Variables that may instead name a file holding their value (NAME_FILE=/run/secrets/...), as
# mounted secrets are: the configs' own variables, never arbitrary *_FILE ones of the environment.
_FILE_SECRET_PREFIXES = ("MEDCHAT_", "S3_", "DATABASE_URL", "REDIS_URL")


def _render_env(data_dir: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment the templates are filled from: NAME_FILE read into NAME where NAME is unset
    (secrets mounted as files, e.g. compose or Kubernetes secrets), plus MEDCHAT_DATA_DIR."""
    rendered = dict(os.environ if env is None else env)
    for name, path in list(rendered.items()):
        plain = name.removesuffix("_FILE")
        if name.endswith("_FILE") and plain.startswith(_FILE_SECRET_PREFIXES) and plain not in rendered:
            rendered[plain] = Path(path).read_text().strip()
    return {**rendered, "MEDCHAT_DATA_DIR": str(data_dir.resolve())}


def worker_names() -> list[str]:
    """The workers of the topology: one config/workers/NAME.yaml each."""
    return sorted(path.stem for path in WORKERS_DIR.glob("*.yaml"))


def prepare_worker(data_dir: Path, name: str, env: Mapping[str, str] | None = None) -> Path:
    """Renders config/workers/NAME.yaml into data_dir/workers/; Synapse reads it after the shared files."""
    template = WORKERS_DIR / f"{name}.yaml"
    if not template.exists():
        raise ValueError(f"no worker named {name!r}; known: {', '.join(worker_names())}")
    path = data_dir.resolve() / "workers" / f"{name}.yaml"
    _write(
        path,
        f"# Rendered from config/workers/{name}.yaml.\n" + substitute(template.read_text(), _render_env(data_dir, env)),
    )
    return path


def prepare_nginx(data_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """Renders config/nginx.conf into data_dir/nginx/, with the scratch folders nginx writes to.

    TLS: the certificate and key are MEDCHAT_TLS_CERT / MEDCHAT_TLS_KEY (compose requires both);
    without them a self-signed pair for localhost is made in data_dir/nginx/tls/ (native cluster)."""
    nginx_dir = data_dir.resolve() / "nginx"
    for scratch in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / scratch).mkdir(parents=True, exist_ok=True)
        (nginx_dir / scratch).chmod(0o1777)  # nginx's worker processes drop root
    rendered = _render_env(data_dir, env)
    if not (rendered.get("MEDCHAT_TLS_CERT") and rendered.get("MEDCHAT_TLS_KEY")):
        from medchat_dev.tls import self_signed_pair

        cert, key = self_signed_pair(nginx_dir / "tls")
        print(f"medchat: no MEDCHAT_TLS_CERT/MEDCHAT_TLS_KEY; nginx uses the self-signed {cert}", file=sys.stderr)
        rendered.update(MEDCHAT_TLS_CERT=str(cert), MEDCHAT_TLS_KEY=str(key))
    path = nginx_dir / "nginx.conf"
    _write(path, substitute(NGINX_TEMPLATE.read_text(), rendered))
    return path


def nginx_command(config_path: Path) -> list[str]:
    return ["nginx", "-c", str(config_path), "-p", str(config_path.parent)]


def derive_federation_whitelist(config: dict[str, Any], module_config: Mapping[str, Any]) -> None:
    """Synapse's `federation_domain_whitelist` from the module's `federation_allow_list`, unless
    the config sets it (the module refuses to start if the two disagree). With a signed list file
    the whitelist is set even without the list: the module adds the file's servers at start-up,
    once it has checked the signature."""
    allow_list = module_config.get("federation_allow_list")
    if (
        allow_list is not None or module_config.get("federation_allow_list_file")
    ) and "federation_domain_whitelist" not in config:
        config["federation_domain_whitelist"] = list(allow_list or ())


def synapse_command(config_paths: list[Path], worker: bool = False) -> list[str]:
    command = [sys.executable, "-m", "synapse.app.generic_worker" if worker else "synapse.app.homeserver"]
    for path in config_paths:
        command += ["--config-path", str(path)]
    return command


def schema_command(config_path: Path) -> list[str]:
    """Synapse's own schema upgrade, without starting a server or loading modules.

    Run before the processes of a cluster start together: workers refuse an unprepared database,
    and the module's migrations are then raced for (and serialised by their advisory lock).
    """
    return [sys.executable, "-m", "synapse._scripts.update_synapse_database", "--database-config", str(config_path)]


def main() -> None:
    parser = argparse.ArgumentParser(description="Render synapse.yaml into DATA_DIR and start Synapse with it.")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--cluster", action="store_true", help="the worker topology of config/ (PostgreSQL, Redis)")
    role = parser.add_mutually_exclusive_group()
    role.add_argument(
        "--worker", metavar="NAME", help=f"start this worker instead of the main process: {', '.join(worker_names())}"
    )
    role.add_argument("--nginx", action="store_true", help="render config/nginx.conf and start nginx in the foreground")
    role.add_argument("--schema", action="store_true", help="bring Synapse's database schema up to date and exit")
    args = parser.parse_args()
    if args.schema:
        command = schema_command(prepare(args.data_dir, cluster=args.cluster)[0])
    elif args.nginx:
        command = nginx_command(prepare_nginx(args.data_dir))
    elif args.worker:
        shared = prepare(args.data_dir, cluster=True)
        command = synapse_command([*shared, prepare_worker(args.data_dir, args.worker)], worker=True)
    else:
        command = synapse_command(prepare(args.data_dir, cluster=args.cluster))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
