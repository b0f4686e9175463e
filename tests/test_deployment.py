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
