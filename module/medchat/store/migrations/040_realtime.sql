-- Delivery: Matrix has read receipts but no delivery receipt. One high-water mark per user and
-- room (the stream ordering of the newest event a device of the user received), not a row per
-- message per user.
CREATE TABLE medchat_delivery (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE INDEX medchat_delivery_room ON medchat_delivery (room_id);

-- Notifications the user removed from their list (the notifications themselves are Synapse's
-- push actions; only the dismissal is ours).
CREATE TABLE medchat_dismissed_notifications (
    user_id TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    dismissed_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, notification_id)
);
