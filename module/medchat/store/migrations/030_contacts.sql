-- The app's contact list: what Matrix has no place for. Blocking is not here: it is the owner's
-- m.ignored_user_list account data, so Element and the API agree on it.
CREATE TABLE medchat_contacts (
    owner_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    nickname TEXT,
    is_favorite BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (owner_id, contact_id)
);

CREATE INDEX medchat_contacts_contact ON medchat_contacts (contact_id);

-- Contact requests, pending or declined (accepted ones become two medchat_contacts rows).
-- The notifications feature lists the pending ones as `contact_request` notifications.
CREATE TABLE medchat_contact_requests (
    requester_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT,
    nickname TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (requester_id, target_id)
);

CREATE INDEX medchat_contact_requests_target ON medchat_contact_requests (target_id, status);
