-- Directory search on PostgreSQL: one weighted tsvector per profile, kept by the database itself
-- (generated column), behind a GIN index that also serves prefix queries ('card':*).
-- Weights: A name, B username, C role / institution / specialization.
ALTER TABLE medchat_profiles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple'::regconfig, coalesce(display_name, '')), 'A')
    || setweight(to_tsvector('simple'::regconfig, translate(split_part(substr(user_id, 2), ':', 1), '._-=/', '     ')), 'B')
    || setweight(to_tsvector('simple'::regconfig, role || ' ' || coalesce(institution, '') || ' ' || coalesce(specialization, '')), 'C')
) STORED;

CREATE INDEX medchat_profiles_search ON medchat_profiles USING GIN (search_vector);
