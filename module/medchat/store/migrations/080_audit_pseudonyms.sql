-- The audit hash now covers personal fields (actor, target, origin, strings in details) only as
-- keyed pseudonyms, so erasing a user can replace their clear values without breaking the chain.
-- `scheme` says which hash an entry carries; existing entries are re-hashed from scheme 1 to 2
-- by the Python step of this migration (medchat.store.audit.reseal_legacy_txn), in the same
-- start-up transaction, after it has checked the old chain is intact.
ALTER TABLE medchat_audit ADD COLUMN scheme INTEGER NOT NULL DEFAULT 1;
