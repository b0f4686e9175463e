"""Homeservers with the module that federate on one machine: `hospital-a.test` on 127.0.0.1,
`hospital-b.test` on 127.0.0.2 (and more), each with a TLS federation listener whose certificate
comes from a throw-away CA that every server trusts.

Server names carry their federation port (`hospital-a.test:8448`), so Synapse connects to that
port directly (no `.well-known`, no SRV); the names resolve through `medchat_dev.devhosts` (a host
table inside each Synapse process), and Synapse's IP blocklist is opened for the servers'
loopback addresses only. Used by tests/test_federation.py and scripts/run-federation.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from signedjson.key import read_signing_keys
from signedjson.sign import sign_json

from harness import TEST_RATE_LIMITS, SynapseServer


@dataclass(frozen=True)
class Peer:
    """Where one homeserver is reached over federation."""

    host: str  # hospital-a.test
    address: str  # the loopback address its federation listener binds
    federation_port: int

    @property
    def server_name(self) -> str:
        return f"{self.host}:{self.federation_port}"


def free_port_on(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def peer(host: str, address: str, port: int | None = None) -> Peer:
    return Peer(host, address, port or free_port_on(address))


class ThrowawayCA:
    """A certificate authority made for one run; issues server certificates for federation."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.cert_path = directory / "ca.pem"
        key_path = directory / "ca.key"
        if self.cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise RuntimeError(f"{key_path} is not the CA's EC key")
            self._key = key
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            return
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MedChat throw-away federation CA")])
        self._cert = (
            self._builder(name, self._key.public_key(), name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        _write_key(key_path, self._key)
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: x509.Name, public_key: Any, issuer: x509.Name) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
        )

    def issue(self, host: str, address: str) -> tuple[Path, Path]:
        """(certificate, key) paths for a server reached as `host` at `address`."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        names = [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address(address))]
        cert = (
            self._builder(subject, key.public_key(), self._cert.subject)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_path, key_path = self.directory / f"{host}.pem", self.directory / f"{host}.key"
        cert_path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM) + self._cert.public_bytes(serialization.Encoding.PEM)
        )
        _write_key(key_path, key)
        return cert_path, key_path


def _write_key(path: Path, key: Any) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


class FederatedServer(SynapseServer):
    """One homeserver of a federation: client API on http://127.0.0.1:<port>, federation over TLS
    at `peer`, knowing every server in `network` by address. `allow` is the module's
    `federation_allow_list` (server names; None allows all), from which Synapse's
    `federation_domain_whitelist` is derived."""

    def __init__(
        self,
        workdir: Path,
        me: Peer,
        network: list[Peer],
        ca: ThrowawayCA,
        allow: list[str] | None,
        database_url: str | None = None,
        module_overrides: dict[str, Any] | None = None,
    ):
        cert, key = ca.issue(me.host, me.address)
        super().__init__(
            workdir,
            database_url=database_url,
            env={"MEDCHAT_SERVER_NAME": me.server_name},
            module_overrides={"federation_allow_list": allow, **(module_overrides or {})},
            extra_modules=[
                {
                    "module": "medchat_dev.devhosts.StaticHosts",
                    "config": {"hosts": {p.host: p.address for p in network}},
                }
            ],
        )
        self.peer = me
        self.server_name = me.server_name
        self._overrides = {
            **TEST_RATE_LIMITS,
            # Outbound requests may reach the federation's loopback addresses, and nothing else there.
            "ip_range_whitelist": sorted({"127.0.0.1", *(p.address for p in network)}),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                },
                {
                    "port": me.federation_port,
                    "bind_addresses": [me.address],
                    "type": "http",
                    "tls": True,
                    "x_forwarded": False,
                    "resources": [{"names": ["federation"], "compress": False}],
                },
            ],
            "tls_certificate_path": str(cert),
            "tls_private_key_path": str(key),
            "federation_verify_certificates": True,
            "federation_custom_ca_list": [str(ca.cert_path)],
        }


def signed_get(origin: FederatedServer, destination: FederatedServer, path: str) -> requests.Response:
    """A GET signed as `origin` with its own signing key (the `X-Matrix` scheme), sent straight
    to `destination`: what `origin`'s federation client would send, from the test."""
    with (origin.workdir / "signing.key").open() as f:
        key = read_signing_keys(f)[0]
    request = {"method": "GET", "uri": path, "origin": origin.server_name, "destination": destination.server_name}
    key_id = f"{key.alg}:{key.version}"
    sig = sign_json(request, origin.server_name, key)["signatures"][origin.server_name][key_id]
    header = (
        f'X-Matrix origin="{origin.server_name}",destination="{destination.server_name}",key="{key_id}",sig="{sig}"'
    )
    return requests.get(destination.base_url + path, headers={"Authorization": header}, timeout=10)


def start_all(servers: Sequence[SynapseServer]) -> None:
    """Starts the servers side by side (each start waits for its server to answer)."""
    with ThreadPoolExecutor(len(servers)) as pool:
        for future in [pool.submit(s.start) for s in servers]:
            future.result()
