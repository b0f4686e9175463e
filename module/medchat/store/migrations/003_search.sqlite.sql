-- Directory search on SQLite: an FTS5 index (contentless; the rows stay in medchat_profiles) kept
-- in step by triggers. Columns: name, username, role, institution, specialization.
-- Each trigger is one line: migrations split on ";" at line ends.
CREATE VIRTUAL TABLE medchat_profiles_fts USING fts5(name, username, role, institution, specialization, content='', tokenize='unicode61');

CREATE TRIGGER medchat_profiles_fts_insert AFTER INSERT ON medchat_profiles BEGIN INSERT INTO medchat_profiles_fts (rowid, name, username, role, institution, specialization) VALUES (new.rowid, coalesce(new.display_name, ''), substr(new.user_id, 2, instr(new.user_id, ':') - 2), new.role, coalesce(new.institution, ''), coalesce(new.specialization, '')); END;

CREATE TRIGGER medchat_profiles_fts_delete AFTER DELETE ON medchat_profiles BEGIN INSERT INTO medchat_profiles_fts (medchat_profiles_fts, rowid, name, username, role, institution, specialization) VALUES ('delete', old.rowid, coalesce(old.display_name, ''), substr(old.user_id, 2, instr(old.user_id, ':') - 2), old.role, coalesce(old.institution, ''), coalesce(old.specialization, '')); END;

CREATE TRIGGER medchat_profiles_fts_update AFTER UPDATE OF display_name, role, institution, specialization ON medchat_profiles BEGIN INSERT INTO medchat_profiles_fts (medchat_profiles_fts, rowid, name, username, role, institution, specialization) VALUES ('delete', old.rowid, coalesce(old.display_name, ''), substr(old.user_id, 2, instr(old.user_id, ':') - 2), old.role, coalesce(old.institution, ''), coalesce(old.specialization, '')); INSERT INTO medchat_profiles_fts (rowid, name, username, role, institution, specialization) VALUES (new.rowid, coalesce(new.display_name, ''), substr(new.user_id, 2, instr(new.user_id, ':') - 2), new.role, coalesce(new.institution, ''), coalesce(new.specialization, '')); END;

INSERT INTO medchat_profiles_fts (rowid, name, username, role, institution, specialization)
SELECT rowid, coalesce(display_name, ''), substr(user_id, 2, instr(user_id, ':') - 2), role, coalesce(institution, ''), coalesce(specialization, '') FROM medchat_profiles;
