"""Development only: a static host table for one Synapse process, like its own /etc/hosts.

Two homeservers on one machine need server names that resolve (`hospital-a.test:8448`) without
DNS and without editing the system's /etc/hosts. Loaded as a second Synapse module by
`scripts/run-federation` and the federation tests; names it does not list resolve as before.
Synapse's IP blocklist still applies to what the table returns (see `ip_range_whitelist`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from zope.interface import implementer

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IResolutionReceiver


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str):
        self.name = name

    def cancel(self) -> None:
        """Answered at once; nothing to cancel."""


@implementer(IHostnameResolver)
class StaticHostsResolver:
    def __init__(self, hosts: dict[str, str], fallback: IHostnameResolver):
        self._hosts = hosts
        self._fallback = fallback

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        address = self._hosts.get(hostName.lower())
        if address is None:
            return self._fallback.resolveHostName(
                resolutionReceiver, hostName, portNumber, addressTypes, transportSemantics
            )
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        kind = IPv6Address if ipaddress.ip_address(address).version == 6 else IPv4Address
        resolutionReceiver.addressResolved(kind("TCP", address, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


class StaticHosts:
    """Synapse module; config: `hosts: {hostname: ip}`."""

    def __init__(self, config: dict[str, str], api: Any):
        reactor.installNameResolver(StaticHostsResolver(config, reactor.nameResolver))  # type: ignore[attr-defined]

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, str]:
        hosts = (config or {}).get("hosts") or {}
        if not isinstance(hosts, dict):
            raise ValueError("medchat_dev.devhosts.StaticHosts: `hosts` must map host names to IP addresses")
        for address in hosts.values():
            ipaddress.ip_address(address)  # ValueError names the bad address
        return {str(name).lower(): str(address) for name, address in hosts.items()}
