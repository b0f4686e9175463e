"""config/monitoring/ for a native run: the real Prometheus pointed at a cluster on loopback.

The shipped prometheus.yml names compose's service hosts; `render_scrape_config` keeps everything
else of it (jobs, labels, rule files) and swaps each target for the address of the process its
`process` label names, so tests/test_cluster.py scrapes with the file operators deploy.
`ensure_prometheus` installs Debian's package through scripts/install-monitoring when missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from medchat_dev.devconfig import ROOT

MONITORING_DIR = ROOT / "config" / "monitoring"
PROMETHEUS_CONFIG = MONITORING_DIR / "prometheus.yml"
DASHBOARD = MONITORING_DIR / "grafana-medchat.json"
_SEARCH_PATH = "/usr/bin:/usr/sbin:/bin"


def ensure_prometheus() -> tuple[str, str]:
    """(prometheus, promtool) binaries, installed from Debian's `prometheus` package if missing."""
    if not (shutil.which("promtool", path=_SEARCH_PATH) and shutil.which("prometheus", path=_SEARCH_PATH)):
        subprocess.run([str(ROOT / "scripts" / "install-monitoring")], check=True)
    prometheus, promtool = shutil.which("prometheus", path=_SEARCH_PATH), shutil.which("promtool", path=_SEARCH_PATH)
    if prometheus is None or promtool is None:
        raise RuntimeError("scripts/install-monitoring left no prometheus / promtool on PATH")
    return prometheus, promtool


def rule_files() -> list[Path]:
    """The alert rule files prometheus.yml loads (config/monitoring/*rules*.yml)."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return [MONITORING_DIR / name for name in config.get("rule_files", [])]


def render_scrape_config(directory: Path, targets: Mapping[str, str], interval: str | None = None) -> Path:
    """prometheus.yml with each target replaced by `targets[process]` (host:port), written into
    `directory` beside copies of its rule files; `interval` overrides scrape and rule evaluation."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for job in config["scrape_configs"]:
        for group in job.get("static_configs", []):
            process = group["labels"]["process"]
            if process not in targets:
                raise KeyError(f"prometheus.yml scrapes {process!r}, which the cluster does not run")
            group["targets"] = [targets[process]]
    if interval is not None:
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    directory.mkdir(parents=True, exist_ok=True)
    for rules in rule_files():
        shutil.copy(rules, directory / rules.name)
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
