"""One allow-list, enforced twice: by Synapse (`federation_domain_whitelist`: no federation
traffic at all with other servers) and by the module's contact rules (`federation_allow_list`:
no invite, DM or contact request naming a user elsewhere, with a 403 that names the rule).

The two must list the same servers; the module refuses to start when they do not, so a server
can never let in traffic that its rules refuse (or the reverse). `medchat.devconfig` derives
Synapse's key from the module's when a config sets only the module's.
"""

from __future__ import annotations

from collections.abc import Iterable

from synapse.module_api.errors import ConfigError

MODULE_KEY = "federation_allow_list"
SYNAPSE_KEY = "federation_domain_whitelist"


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
