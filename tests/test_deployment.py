"""docker-compose.yml and the config/ renderer, checked without Docker (not available here).

The compose file is parsed and held against config/: every process of the topology is a service
running the one image with a config file that exists, each has a health check on its own port,
the hosts and ports the configs render to with compose's environment are the services', and no
secret is written into it. tests/test_cluster.py runs the same config files natively.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from medchat_dev.devconfig import (
    CLUSTER_CONFIG,
    NGINX_TEMPLATE,
    ROOT,
    WORKERS_DIR,
    prepare,
    prepare_nginx,
    redis_config,
    substitute,
    worker_names,
)

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ONE_SHOT = {"synapse-schema", "minio-bucket"}


def _service(worker: str) -> str:
    return worker.replace("_", "-")


def _synapse_services() -> dict[str, list[str]]:
    """Service name -> command, for the Synapse processes (main and workers)."""
    return {
        name: service["command"]
        for name, service in SERVICES.items()
        if "medchat_dev.devconfig" in service.get("command", [])
        and not {"--nginx", "--schema"} & set(service["command"])
    }


def _listener_port(worker: str, env: dict[str, str]) -> int:
    rendered = yaml.safe_load(substitute((WORKERS_DIR / f"{worker}.yaml").read_text(), env))
    return rendered["worker_listeners"][0]["port"]


def _healthcheck_port(service: str) -> int:
    test = " ".join(SERVICES[service]["healthcheck"]["test"])
    return int(re.search(r"127\.0\.0\.1:(\d+)/", test).group(1))  # type: ignore[union-attr]


def _env(service: str) -> dict[str, str]:
    return {**SERVICES[service]["environment"], "MEDCHAT_DATA_DIR": "/data"}


def test_compose_names_every_service_of_the_topology() -> None:
    expected = {"postgres", "redis", "minio", "nginx", "synapse"} | {_service(w) for w in worker_names()}
    assert expected <= set(SERVICES)
    assert set(worker_names()) == {
        "client_reader1",
        "client_reader2",
        "sync1",
        "event_persister1",
        "media1",
        "background1",
    }


def test_every_synapse_process_runs_the_one_image_with_a_config_that_exists() -> None:
    processes = _synapse_services()
    assert set(processes) == {"synapse"} | {_service(w) for w in worker_names()}
    assert (ROOT / "Dockerfile").exists() and CLUSTER_CONFIG.exists()
    for name, command in processes.items():
        service = SERVICES[name]
        assert service["build"] == "." and service["image"] == SERVICES["nginx"]["image"], name
        assert "./config:/app/config:ro" in service["volumes"], name
        assert "--cluster" in command, name
        if name != "synapse":
            worker = command[command.index("--worker") + 1]
            assert (WORKERS_DIR / f"{worker}.yaml").exists(), name
            assert _service(worker) == name
            assert yaml.safe_load((WORKERS_DIR / f"{worker}.yaml").read_text())["worker_name"] == worker


def test_every_long_running_service_has_a_health_check_on_its_own_port() -> None:
    for name, service in SERVICES.items():
        if name not in ONE_SHOT:
            assert service["healthcheck"]["test"], name
    for worker in worker_names():
        assert _healthcheck_port(_service(worker)) == _listener_port(worker, _env(_service(worker))), worker
    main = yaml.safe_load(substitute(CLUSTER_CONFIG.read_text(), _env("synapse")))
    assert _healthcheck_port("synapse") == main["listeners"][0]["port"]


def test_nginx_and_instance_map_point_at_compose_services_and_their_ports() -> None:
    env = _env("nginx")
    ports = {_service(w): _listener_port(w, env) for w in worker_names()}
    main = yaml.safe_load(substitute(CLUSTER_CONFIG.read_text(), _env("synapse")))
    ports["synapse"] = main["listeners"][0]["port"]
    upstreams = re.findall(r"^\s*server\s+([^:\s]+):(\d+);", substitute(NGINX_TEMPLATE.read_text(), env), re.M)
    assert {host for host, _ in upstreams} == {"synapse", "client-reader1", "client-reader2", "sync1", "media1"}
    for host, port in upstreams:
        assert ports[host] == int(port), host
    for name, target in main["instance_map"].items():
        service = "synapse" if name == "main" else _service(name)
        assert target["host"] == service
        if name != "main":
            assert target["port"] == ports[service]


def test_no_secret_is_written_into_the_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"://[^/\s:@]+:(?!\$\{)[^@\s]+@", text), "a URL with a literal password"
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY", key):
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment"


def test_cluster_config_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        prepare(tmp_path, env={}, cluster=True)


def test_cluster_config_renders_redis_and_s3_from_the_environment(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://synapse:pw@db:5432/synapse", "REDIS_URL": "redis://:s3cret@cache:6380/2"}
    config = yaml.safe_load(prepare(tmp_path, env=env, cluster=True)[0].read_text())
    assert config["redis"] == {"enabled": True, "host": "cache", "port": 6380, "password": "s3cret", "dbid": 2}
    assert config["stream_writers"] == {"events": "event_persister1"}
    assert config["modules"][0]["module"] == "medchat.MedChatModule"  # from synapse.yaml
    assert "media_storage_providers" not in config
    assert "worker_replication_secret" in yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    assert (tmp_path / "homeserver.yaml").stat().st_mode & 0o077 == 0

    s3 = {**env, "S3_BUCKET": "media", "S3_ACCESS_KEY_ID": "id", "S3_SECRET_ACCESS_KEY": "key"}
    provider = yaml.safe_load(prepare(tmp_path, env=s3, cluster=True)[0].read_text())["media_storage_providers"][0]
    assert provider["module"] == "s3_storage_provider.S3StorageProviderBackend"
    assert provider["config"]["bucket"] == "media" and provider["config"]["endpoint_url"] == "http://minio:9000"


def test_redis_url_must_be_redis() -> None:
    assert redis_config(None) == {"enabled": True, "host": "127.0.0.1", "port": 6379}
    with pytest.raises(ValueError, match="redis://"):
        redis_config("http://cache:6379")


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _metrics_exposures(listeners: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(listener type, bind addresses) of every listener that serves metrics."""
    return [
        (listener["type"], listener.get("bind_addresses", ["0.0.0.0"]))
        for listener in listeners
        if listener["type"] == "metrics"
        or any("metrics" in resource.get("names", []) for resource in listener.get("resources", []))
    ]


def test_metrics_never_ride_on_a_public_listener_in_any_shipped_config(tmp_path: Path) -> None:
    """Binding the client listeners to every interface (MEDCHAT_BIND_ADDRESS=0.0.0.0, as compose
    does) leaves the metrics on loopback, on listeners of their own."""
    public = {"MEDCHAT_BIND_ADDRESS": "0.0.0.0", "MEDCHAT_DATA_DIR": str(tmp_path)}
    dev = yaml.safe_load(prepare(tmp_path / "dev", env=public)[0].read_text())["listeners"]
    cluster = yaml.safe_load(substitute(CLUSTER_CONFIG.read_text(), public))["listeners"]
    workers = [
        yaml.safe_load(substitute((WORKERS_DIR / f"{w}.yaml").read_text(), public))["worker_listeners"]
        for w in worker_names()
    ]
    for listeners in [dev, cluster, *workers]:
        exposures = _metrics_exposures(listeners)
        assert exposures, "every process serves metrics somewhere"
        for kind, binds in exposures:
            assert kind == "metrics", "metrics are a listener of their own, never a resource of an HTTP one"
            assert set(binds) <= LOOPBACK, binds
    assert any(set(listener.get("bind_addresses", [])) == {"0.0.0.0"} for listener in dev), "the check saw 0.0.0.0"


def test_compose_publishes_only_nginx_and_never_a_metrics_port() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published <= {"nginx", "prometheus"}
    ports = [str(port) for port in SERVICES["nginx"]["ports"]]
    assert any(port.endswith(":8443") for port in ports) and any(port.endswith(":8448") for port in ports)
    assert not any(port.endswith(":8080") for port in ports), "plain HTTP stays inside the container"
    for port in SERVICES.get("prometheus", {}).get("ports", []):
        assert str(port).startswith("127.0.0.1:"), "Prometheus's UI on the host's loopback only"


def test_nginx_terminates_tls_with_certificates_from_the_environment(tmp_path: Path) -> None:
    env = {"MEDCHAT_TLS_CERT": "/etc/tls/fullchain.pem", "MEDCHAT_TLS_KEY": "/etc/tls/privkey.pem"}
    rendered = prepare_nginx(tmp_path, env=env).read_text()
    assert "ssl_certificate /etc/tls/fullchain.pem;" in rendered
    assert "ssl_certificate_key /etc/tls/privkey.pem;" in rendered
    listens = re.findall(r"^\s*listen\s+([^;]+);", rendered, re.M)
    assert "127.0.0.1:8443 ssl" in listens and "127.0.0.1:8448 ssl" in listens
    assert "127.0.0.1:8080" in listens, "plain HTTP on loopback, for health checks"
    assert re.search(r"log_format\s+medchat_json\s+escape=json", rendered)
    assert re.search(r"^\s*access_log\s+\S+\s+medchat_json;", rendered, re.M)
    directives = "\n".join(line.split("#", 1)[0] for line in rendered.splitlines())
    assert "access_log off" not in directives and "$request_uri" not in directives and "$args" not in directives
    assert not (tmp_path / "nginx" / "tls").exists(), "no self-signed pair when one is configured"


def test_nginx_without_a_certificate_gets_a_self_signed_one(tmp_path: Path) -> None:
    rendered = prepare_nginx(tmp_path, env={}).read_text()
    cert = re.search(r"ssl_certificate (\S+);", rendered).group(1)  # type: ignore[union-attr]
    assert Path(cert).is_file() and Path(cert).parent == tmp_path / "nginx" / "tls"
    assert (tmp_path / "nginx" / "tls" / "selfsigned.key").stat().st_mode & 0o077 == 0


def test_secrets_may_come_from_mounted_files(tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("postgresql://synapse:from-a-file@db:5432/synapse\n")
    config = yaml.safe_load(prepare(tmp_path / "data", env={"DATABASE_URL_FILE": str(secret)})[0].read_text())
    assert config["database"]["args"]["password"] == "from-a-file"
    assert prepare(tmp_path / "other", env={"HOME_FILE": "/nonexistent"}), "other *_FILE variables are left alone"
