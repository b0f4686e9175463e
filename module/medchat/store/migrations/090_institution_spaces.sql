-- Each institution's Matrix space (created on first use by the module's service account). The
-- primary key makes a second, concurrent creation lose: its space is abandoned, this row wins.
CREATE TABLE medchat_institution_spaces (
    institution TEXT NOT NULL PRIMARY KEY,
    space_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
