-- Disappearing messages: a redaction that failed is tried again later (`retry_ts`, with back-off
-- by `attempts`); the row goes only once the redaction has landed.
ALTER TABLE medchat_expiring_messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE medchat_expiring_messages ADD COLUMN retry_ts BIGINT;
