"""Module metrics on Synapse's Prometheus endpoint, next to Synapse's per-servlet request metrics."""

from __future__ import annotations

import re

import aiohttp
import requests

from harness import Api, SynapseServer, run


def metrics(server: SynapseServer) -> str:
    """The server's Prometheus page, from its own metrics listener (not the client one)."""
    response = requests.get(server.metrics_url, timeout=10)
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one series of `name` whose labels include `labels`; 0 when it has not
    appeared yet. Every MedChat series carries the server's name, as Synapse's own do."""
    for match in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        assert "server_name" in found, f"{name} has no server_name label: {match.group(0)}"
        if labels.items() <= found.items():
            return float(match.group(2))
    return 0.0


def test_module_and_endpoint_metrics(api: Api, server: SynapseServer) -> None:
    user = api.register()
    before = metrics(server)
    rejected_before = sample(before, "medchat_upload_rejections_total", kind="image", status="415")
    assert (
        api.call(
            "POST",
            "/api/chat/upload/image",
            token=user["access_token"],
            data=b"%PDF-1.4 not an image",
            headers={"Content-Type": "image/png"},
        ).status_code
        == 415
    )

    async def with_open_socket() -> str:
        async with aiohttp.ClientSession() as session:
            url = server.base_url.replace("http", "ws", 1) + "/api/chat/ws"
            async with session.ws_connect(url, params={"access_token": user["access_token"]}) as ws:
                await ws.receive_json(timeout=10)
                return metrics(server)

    during = run(with_open_socket())
    assert sample(during, "medchat_websocket_connections") >= 1
    assert sample(during, "medchat_upload_rejections_total", kind="image", status="415") == rejected_before + 1
    # Per-endpoint counts, status codes and latency come from Synapse's own servlet metrics.
    assert re.search(
        r'^synapse_http_server_requests_received_total\{method="POST",.*servlet="AuthServlets.register"\} [1-9]',
        during,
        re.M,
    )
    assert re.search(
        r'^synapse_http_server_response_time_seconds_count\{code="415",.*servlet="UploadServlets.upload".*\} [1-9]',
        during,
        re.M,
    )
    assert re.search(r'^medchat_verification_requests_pending\{server_name="[^"]+"\} \S+$', during, re.M)


def test_api_refusals_are_counted_by_rule(api: Api, server: SynapseServer) -> None:
    """A contact request the shipped policy refuses (a student, an unverified clinician) counts as
    the Matrix-side refusals do."""
    rule = "students-no-unverified-clinicians"
    before = sample(metrics(server), "medchat_rule_refusals_total", rule=rule)
    student, clinician = api.register(role="MBBS Student"), api.register(role="Consultant")
    refused = api.call(
        "POST", "/api/chat/contacts", token=student["access_token"], json={"user_id": clinician["user_id"]}
    )
    assert refused.status_code == 403, refused.text
    assert sample(metrics(server), "medchat_rule_refusals_total", rule=rule) == before + 1
