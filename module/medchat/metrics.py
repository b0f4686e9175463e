"""MedChat's own Prometheus metrics, served by Synapse's metrics endpoint (`/_synapse/metrics`).

Requests by endpoint and status, and their latency, need nothing here: every /api servlet is a
Synapse servlet, so `synapse_http_server_requests_received_total`,
`synapse_http_server_responses_total` and `synapse_http_server_response_time_seconds` carry it with
`servlet="<Servlets>.<handler>"`.

Every metric carries Synapse's `server_name` label, as Synapse's own do (its mypy plugin checks
it): one process may serve several homeservers, and their counts must not mix.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from synapse.metrics import SERVER_NAME_LABEL

WEBSOCKET_CONNECTIONS = Gauge(
    "medchat_websocket_connections", "Open /api/chat/ws sockets on this process", [SERVER_NAME_LABEL]
)
WEBSOCKET_CLOSES = Counter(
    "medchat_websocket_closes_total", "Sockets the server closed, by close code", ["code", SERVER_NAME_LABEL]
)
RULE_REFUSALS = Counter(
    "medchat_rule_refusals_total",
    "Invites, direct chats and contact requests refused, by rule",
    ["rule", SERVER_NAME_LABEL],
)
UPLOAD_REJECTIONS = Counter(
    "medchat_upload_rejections_total",
    "Uploads refused, by kind and HTTP status",
    ["kind", "status", SERVER_NAME_LABEL],
)
VERIFICATION_PENDING = Gauge(
    "medchat_verification_requests_pending", "Verification requests waiting for a verifier", [SERVER_NAME_LABEL]
)
VERIFICATION_OLDEST_PENDING_AGE = Gauge(
    "medchat_verification_oldest_pending_age_seconds",
    "Age of the oldest verification request still waiting for a verifier (0 when none waits)",
    [SERVER_NAME_LABEL],
)
AUDIT_VERIFY_FAILURES = Counter(
    "medchat_audit_verify_failures_total",
    "Runs of /api/admin/audit/verify that found the audit chain broken",
    [SERVER_NAME_LABEL],
)
EXPIRY_OVERDUE = Gauge(
    "medchat_expiring_messages_overdue",
    "Disappearing messages more than a minute past their expiry and not yet redacted (retrying)",
    [SERVER_NAME_LABEL],
)
