-- The audit trail: append-only, each entry chained to the one before by a SHA-256 hash over the
-- entry and the previous hash, so an edited or removed row breaks the chain from there on.
CREATE TABLE medchat_audit (
    seq BIGINT NOT NULL PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL,
    origin TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX medchat_audit_actor ON medchat_audit (actor, seq);
CREATE INDEX medchat_audit_action ON medchat_audit (action, seq);
CREATE INDEX medchat_audit_target ON medchat_audit (target, seq);
