-- The medical profile: what Matrix has no place for. Display name, avatar and e-mail stay in
-- Synapse (profiles, user_threepids); this row holds the rest, keyed by the Matrix user id.
CREATE TABLE medchat_profiles (
    user_id TEXT NOT NULL PRIMARY KEY,
    role TEXT NOT NULL,
    institution TEXT,
    specialization TEXT,
    bio TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);

CREATE INDEX medchat_profiles_role ON medchat_profiles (role);
CREATE INDEX medchat_profiles_institution ON medchat_profiles (institution);
