-- The directory: display name and avatar are copied from Synapse's `profiles` (kept in step by the
-- module's on_profile_update callback) so that listing and ranked search read one table; `hidden`
-- takes a user out of every directory; `verification_level` is written only by medchat.verification.
ALTER TABLE medchat_profiles ADD COLUMN display_name TEXT;
ALTER TABLE medchat_profiles ADD COLUMN avatar_url TEXT;
ALTER TABLE medchat_profiles ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE medchat_profiles ADD COLUMN verification_level TEXT NOT NULL DEFAULT 'unverified';

UPDATE medchat_profiles SET
    display_name = (SELECT displayname FROM profiles WHERE profiles.full_user_id = medchat_profiles.user_id),
    avatar_url = (SELECT avatar_url FROM profiles WHERE profiles.full_user_id = medchat_profiles.user_id);

-- Keyset pagination of GET /api/chat/users walks this order.
CREATE INDEX medchat_profiles_sort ON medchat_profiles (lower(coalesce(display_name, user_id)), user_id);
CREATE INDEX medchat_profiles_specialization ON medchat_profiles (specialization);
