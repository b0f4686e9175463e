"""Renders synapse.yaml into a runnable homeserver config for one local process.

Shared by scripts/run and the test harness, so both start Synapse from the same file:
`${NAME}` / `${NAME:-default}` come from the environment, `database:` from a DATABASE_URL, and the
secrets and signing key are generated once into the data directory and kept.
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
    if not secrets_path.exists():
        values = {
            name: secrets.token_urlsafe(32)
            for name in ("registration_shared_secret", "macaroon_secret_key", "form_secret")
        }
        secrets_path.write_text(f"# Generated for {server_name}; keep private.\n" + yaml.safe_dump(values))
        secrets_path.chmod(0o600)
    return secrets_path


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
    extra_modules: list[dict[str, Any]] | None = None,
) -> list[Path]:
    """Renders the config into data_dir; returns the config files to pass to Synapse, in order.

    `overrides` are merged into the Synapse config, `module_overrides` into the MedChat module's;
    `extra_modules` are appended to `modules:`.
    """
    data_dir = data_dir.resolve()
    env = {**(os.environ if env is None else env), "MEDCHAT_DATA_DIR": str(data_dir)}
    config = yaml.safe_load(substitute(template.read_text(), env))
    config["database"] = database_config(env.get("DATABASE_URL"), data_dir)
    config = deep_merge(config, overrides or {})
    for module in config.get("modules", []):
        if module.get("module") == "medchat.MedChatModule":
            module["config"] = deep_merge(module.get("config") or {}, module_overrides or {})
            derive_federation_whitelist(config, module["config"])
    config["modules"] = [*config.get("modules", []), *(extra_modules or [])]
    secrets_path = ensure_secrets(data_dir, config["server_name"])
    config_path = data_dir / "homeserver.yaml"
    config_path.write_text("# Rendered from synapse.yaml; edit that file, not this one.\n" + yaml.safe_dump(config, sort_keys=False))
    return [config_path, secrets_path]


def derive_federation_whitelist(config: dict[str, Any], module_config: Mapping[str, Any]) -> None:
    """Synapse's `federation_domain_whitelist` from the module's `federation_allow_list`, unless
    the config sets it (the module refuses to start if the two disagree)."""
    allow_list = module_config.get("federation_allow_list")
    if allow_list is not None and "federation_domain_whitelist" not in config:
        config["federation_domain_whitelist"] = list(allow_list)


def synapse_command(config_paths: list[Path]) -> list[str]:
    command = [sys.executable, "-m", "synapse.app.homeserver"]
    for path in config_paths:
        command += ["--config-path", str(path)]
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description="Render synapse.yaml into DATA_DIR and start Synapse with it.")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--extra-config", type=Path, action="append", default=[], help="more Synapse config files, e.g. config/media-storage.yaml")
    args = parser.parse_args()
    command = synapse_command(prepare(args.data_dir) + args.extra_config)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
