-- Disappearing messages: what to redact when. Rows survive restarts; the reaper (on the process
-- that runs background tasks) redacts each message at its time and deletes the row.
CREATE TABLE medchat_expiring_messages (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);

CREATE INDEX medchat_expiring_messages_due ON medchat_expiring_messages (expires_ts);
