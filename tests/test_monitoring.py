"""config/monitoring/ checked by the real tools and against the code: no cluster needed.

`promtool` (Debian's prometheus package, installed by scripts/install-monitoring when missing)
must accept the scrape config and the alert rules; the scrape config must name every process of
the topology on its configured metrics port; the dashboard must chart every medchat_* series the
module defines, and the alerts must cover what docs/metrics.md promises. tests/test_cluster.py
runs that Prometheus against a live cluster.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import Counter
from prometheus_client.metrics import MetricWrapperBase

import medchat.metrics
from medchat_dev.devconfig import CLUSTER_CONFIG, WORKERS_DIR, substitute, worker_names
from medchat_dev.monitoring import DASHBOARD, PROMETHEUS_CONFIG, ensure_prometheus, rule_files


def medchat_series() -> set[str]:
    """The series names medchat/metrics.py exports (a Counter `x` is exposed as `x_total`)."""
    names = set()
    for value in vars(medchat.metrics).values():
        if isinstance(value, MetricWrapperBase):
            names.add(value._name + ("_total" if isinstance(value, Counter) else ""))
    return names


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for path in rule_files() for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_prometheus()[1]


def test_promtool_accepts_the_scrape_config_and_its_rules(promtool: str) -> None:
    checked = subprocess.run([promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert rule_files() and all(path.name.endswith(".yml") and "rules" in path.name for path in rule_files())
    rules = subprocess.run([promtool, "check", "rules", *map(str, rule_files())], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Any) -> None:
    """The check above can fail: a rule with a bad expression is refused."""
    broken = tmp_path / "broken-rules.yml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "rate(up[5m]"}]}]}))
    assert subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True).returncode != 0


def _metrics_port(listeners: list[dict[str, Any]]) -> int:
    return next(listener["port"] for listener in listeners if listener["type"] == "metrics")


def test_every_process_is_scraped_on_its_metrics_port() -> None:
    """prometheus.yml's targets are the compose services and the metrics ports the configs set."""
    env = {"MEDCHAT_DATA_DIR": "/data"}
    main = yaml.safe_load(substitute(CLUSTER_CONFIG.read_text(), env))["listeners"]
    ports = {"main": _metrics_port(main)}
    for worker in worker_names():
        listeners = yaml.safe_load(substitute((WORKERS_DIR / f"{worker}.yaml").read_text(), env))["worker_listeners"]
        ports[worker] = _metrics_port(listeners)
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        group["labels"]["process"]: group["targets"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
    }
    assert set(targets) == set(ports)
    for process, [target] in targets.items():
        host = "synapse" if process == "main" else process.replace("_", "-")
        assert target == f"{host}:{ports[process]}", process


def test_the_dashboard_charts_every_medchat_series() -> None:
    expressions = dashboard_expressions()
    assert len(medchat_series()) >= 8
    for series in medchat_series():
        assert any(series in expr for expr in expressions), f"no panel charts {series}"
    for key in ["synapse_http_server_response_time_seconds_bucket", "synapse_storage_schedule_time_bucket", "up{"]:
        assert any(key in expr for expr in expressions), key
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids are unique"


def test_the_alerts_cover_what_operators_must_hear_about() -> None:
    expressions = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    needed = {
        "5xx": r'code=~"5.."',
        "send latency": "MessageServlets.send",
        "room-list latency": "RoomServlets.list_rooms",
        "WebSocket closes": "medchat_websocket_closes_total",
        "verification queue age": "medchat_verification_oldest_pending_age_seconds",
        "overdue disappearing messages": "medchat_expiring_messages_overdue",
        "audit verify failures": "medchat_audit_verify_failures_total",
        "event-persister lag": "synapse_event_persisted_position",
        "database pool": "synapse_storage_schedule_time_bucket",
    }
    for what, needle in needed.items():
        assert any(needle in expr for expr in expressions.values()), f"no alert on {what}"
    assert all(rule["labels"]["severity"] in ("warning", "critical") for rule in alert_rules())


def _alert_test(
    rule_file: str, series: dict[str, str], alert: str, at: str, labels: dict[str, str], summary: str
) -> dict[str, Any]:
    """One `promtool test rules` file: the input series, and `alert` expected firing at `at` with
    these labels and summary (none expected when `labels` is empty)."""
    expected = [{"exp_labels": labels, "exp_annotations": {"summary": summary}}] if labels else []
    return {
        "rule_files": [rule_file],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}],
            }
        ],
    }


@pytest.mark.parametrize(
    ("alert", "series", "at", "labels", "summary"),
    [
        (
            "MedChatDisappearingMessagesOverdue",
            {'medchat_expiring_messages_overdue{server_name="s",process="background1"}': "3x30"},
            "20m",
            {"severity": "critical"},
            "3 disappearing messages are overdue for deletion",
        ),
        (
            "MedChatDisappearingMessagesOverdue",
            {'medchat_expiring_messages_overdue{server_name="s",process="background1"}': "0x30"},
            "20m",
            {},
            "",
        ),
        (
            "MedChatAuditChainBroken",
            {'medchat_audit_verify_failures_total{server_name="s",process="main"}': "0 0 1 1 1"},
            "4m",
            {"severity": "critical"},
            "The audit chain failed verification",
        ),
        (
            "MedChatWebSocketInternalErrors",
            {'medchat_websocket_closes_total{code="1011",server_name="s",process="sync1"}': "0 0 2 2"},
            "3m",
            {"severity": "critical", "process": "sync1"},
            "sync1 closed 2 WebSockets with 1011 (internal error) in 10 minutes",
        ),
        (
            "MedChatProcessDown",
            {'up{job="medchat",process="media1",instance="media1:9105"}': "0x10"},
            "5m",
            {"severity": "critical", "job": "medchat", "process": "media1", "instance": "media1:9105"},
            "MedChat process media1 is not answering its metrics scrape",
        ),
        (
            "MedChatVerificationQueueStale",
            {'medchat_verification_oldest_pending_age_seconds{server_name="s",process="main"}': "200000x60"},
            "45m",
            {"severity": "warning"},
            "The oldest verification request has waited 2d 7h 33m 20s",
        ),
    ],
)
def test_alerts_fire_on_the_series_they_watch_and_only_then(
    promtool: str, tmp_path: Any, alert: str, series: dict[str, str], at: str, labels: dict[str, str], summary: str
) -> None:
    """`promtool test rules`: the alert fires (with these labels) on the bad series, not on a calm one."""
    [rules] = [path for path in rule_files() if alert in path.read_text()]
    test_file = tmp_path / "alert.test.yml"
    test_file.write_text(yaml.safe_dump(_alert_test(str(rules), series, alert, at, labels, summary)))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
