-- Credential verification: the requests users submit and verifiers decide, and an append-only log
-- of every step (submitted, approved, rejected, reset by a profile edit) with who, when and why.
CREATE TABLE medchat_verification_requests (
    request_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    level TEXT NOT NULL,
    registration_body TEXT NOT NULL,
    license_number TEXT NOT NULL,
    document_url TEXT,
    institution TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    decided_by TEXT,
    created_ts BIGINT NOT NULL,
    decided_ts BIGINT
);

CREATE INDEX medchat_verification_requests_status ON medchat_verification_requests (status, created_ts);
CREATE INDEX medchat_verification_requests_user ON medchat_verification_requests (user_id, created_ts);
-- At most one pending request per user.
CREATE UNIQUE INDEX medchat_verification_requests_one_pending ON medchat_verification_requests (user_id) WHERE status = 'pending';

CREATE TABLE medchat_verification_log (
    user_id TEXT NOT NULL,
    request_id TEXT,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    level_before TEXT NOT NULL,
    level_after TEXT NOT NULL,
    reason TEXT,
    ts BIGINT NOT NULL
);

CREATE INDEX medchat_verification_log_user ON medchat_verification_log (user_id, ts);
