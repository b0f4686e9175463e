-- The app's notification list (GET /api/chat/notifications, built by the notifications feature).
-- Generic on purpose: each feature stores its own `type` with a JSON `payload`.
CREATE TABLE medchat_notifications (
    notification_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    is_read BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL
);

CREATE INDEX medchat_notifications_user ON medchat_notifications (user_id, created_ts);
