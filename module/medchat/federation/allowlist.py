"""One allow-list, enforced twice: by Synapse (`federation_domain_whitelist`: no federation
traffic at all with other servers) and by the module's contact rules (`federation_allow_list`:
no invite, DM or contact request naming a user elsewhere, with a 403 that names the rule).

The two must list the same servers; the module refuses to start when they do not, so a server
can never let in traffic that its rules refuse (or the reverse). `medchat_dev.devconfig` derives
Synapse's key from the module's when a config sets only the module's.

More servers may come from a signed list file (`federation_allow_list_file`: a federation
authority publishes one list, every institution configures only its public key). Its signature
is checked when the config is read; its servers join both lists at start-up (Synapse's in
memory, via the Synapse adapter), so the two still agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from signedjson.key import decode_verify_key_bytes, get_verify_key
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from synapse.module_api.errors import ConfigError
from unpaddedbase64 import decode_base64, encode_base64

MODULE_KEY = "federation_allow_list"
SYNAPSE_KEY = "federation_domain_whitelist"
FILE_KEY = "federation_allow_list_file"
# The Matrix JSON signature scheme, under this name instead of a server's.
SIGNER = "org.medchat.allow_list"


def _describe(servers: frozenset[str] | None) -> str:
    return "unset (every server)" if servers is None else (", ".join(sorted(servers)) or "empty (no other server)")


def check_agreement(module_list: Iterable[str] | None, synapse_list: Iterable[str] | None, own_server: str) -> None:
    """Raises ConfigError naming both keys when they allow different servers (the own server,
    always allowed by both, is left out of the comparison)."""
    module = None if module_list is None else frozenset(module_list) - {own_server}
    synapse = None if synapse_list is None else frozenset(synapse_list) - {own_server}
    if module != synapse:
        raise ConfigError(
            f"MedChat: the module's `{MODULE_KEY}` ({_describe(module)}) and Synapse's "
            f"`{SYNAPSE_KEY}` ({_describe(synapse)}) must allow the same servers."
        )


# --- the signed list file ----------------------------------------------------------------------


def public_key_of(signing_key: Any) -> str:
    """The unpadded base64 ed25519 public key that `federation_allow_list_file.public_key` takes."""
    return encode_base64(get_verify_key(signing_key).encode())


def sign_allow_list(servers: Iterable[str], signing_key: Any) -> dict[str, Any]:
    """The content of a list file: `{"servers": [...], "signatures": {SIGNER: {...}}}`."""
    return sign_json({"servers": sorted(set(servers))}, SIGNER, signing_key)


def load_signed_allow_list(path: str, public_key: str) -> tuple[str, ...]:
    """The servers of a list file signed with `public_key`; ConfigError naming the file and the
    key if it cannot be read, is not signed with that key (tampered, other key) or lists no servers."""
    where = f"MedChat: `{FILE_KEY}` {path}"
    try:
        with open(path, encoding="utf-8") as f:
            signed = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where} cannot be read: {e}") from e
    try:
        key_bytes = decode_base64(public_key)
    except ValueError as e:
        raise ConfigError(f"MedChat: `{FILE_KEY}.public_key` {public_key} is not unpadded base64: {e}") from e
    signatures = signed.get("signatures") if isinstance(signed, dict) else None
    ours = signatures.get(SIGNER) if isinstance(signatures, dict) else None
    key_ids = [k for k in ours if k.startswith("ed25519:")] if isinstance(ours, dict) else []
    if not key_ids:
        raise ConfigError(
            f"{where} carries no ed25519 signature of {SIGNER}; it must be signed with the key {public_key} (scripts/sign-allow-list)."
        )
    for key_id in key_ids:
        try:
            verify_signed_json(signed, SIGNER, decode_verify_key_bytes(key_id, key_bytes))
            break
        except (SignatureVerifyException, ValueError):
            continue
    else:
        raise ConfigError(
            f"{where} is not signed by the key {public_key}: its signature does not verify (altered, or signed with another key)."
        )
    servers = signed.get("servers")
    if (
        not isinstance(servers, list)
        or not servers
        or not all(isinstance(s, str) and 0 < len(s) <= 255 for s in servers)
    ):
        raise ConfigError(f"{where}: `servers` must be a non-empty list of server names.")
    return tuple(servers)
