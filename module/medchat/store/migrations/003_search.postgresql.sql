-- Directory search on PostgreSQL: tsvectors kept by the database itself (generated columns),
-- each behind a GIN index that also serves prefix queries ('card':*).
--   name_vector   display name + username (the words people search for first)
--   field_vector  role + institution + specialization
--   search_vector all of them, for queries whose words span both
-- Splitting them lets a broad field query ("hospital") walk the name-order index instead of
-- ranking half the table, and keeps name queries on the small name index.
ALTER TABLE medchat_profiles ADD COLUMN name_vector tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig, coalesce(display_name, '') || ' ' || translate(split_part(substr(user_id, 2), ':', 1), '._-=/', '     '))
) STORED;

ALTER TABLE medchat_profiles ADD COLUMN field_vector tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig, role || ' ' || coalesce(institution, '') || ' ' || coalesce(specialization, ''))
) STORED;

ALTER TABLE medchat_profiles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig,
        coalesce(display_name, '') || ' ' || translate(split_part(substr(user_id, 2), ':', 1), '._-=/', '     ')
        || ' ' || role || ' ' || coalesce(institution, '') || ' ' || coalesce(specialization, ''))
) STORED;

CREATE INDEX medchat_profiles_name_search ON medchat_profiles USING GIN (name_vector);
CREATE INDEX medchat_profiles_field_search ON medchat_profiles USING GIN (field_vector);
CREATE INDEX medchat_profiles_search ON medchat_profiles USING GIN (search_vector);
